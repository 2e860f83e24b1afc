//! Sampling from any machine: blocked Gibbs sampling of persistent chains with clamping
//! ([`gibbs`]), parallel tempering ([`tempering`]), and the mixing diagnostics of chains and of
//! importance weights ([`diagnostics`]).

pub mod diagnostics;
pub mod gibbs;
pub mod tempering;
