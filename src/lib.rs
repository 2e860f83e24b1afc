//! # boltzmann
//!
//! Restricted and deep Boltzmann machines you can train, sample and *quantitatively evaluate*:
//! blocked Gibbs sampling and parallel tempering, CD-k, persistent and fast persistent CD,
//! centering, greedy pretraining and mean-field training of DBMs, classification RBMs, exact partition functions for small models and annealed importance sampling for large
//! ones, with Bernoulli, Gaussian and softmax units written once against one [`Layer`] trait.
//!
//! ```
//! use boltzmann::data::bars_and_stripes;
//! use boltzmann::partition::log_likelihood_exact;
//! use boltzmann::train::{train, NegativePhase, Steps, TrainConfig};
//! use boltzmann::{Bernoulli, Chains, Rbm};
//!
//! # fn main() -> boltzmann::Result<()> {
//! // The 14 bars-and-stripes images of 3×3 pixels, one per column.
//! let data = bars_and_stripes(3)?;
//! let mut rbm: Rbm<Bernoulli, Bernoulli> = Rbm::init(9, 8, 7)?;
//! let config = TrainConfig {
//!     epochs: 50,
//!     batch_size: 14,
//!     negative: NegativePhase::Pcd { k: Steps::Constant(1), chains: 50 },
//!     ..TrainConfig::default()
//! };
//! train(&mut rbm, &data, None, &config, |m| {
//!     // Small models report their exact log-likelihood every epoch.
//!     assert!(m.train_log_likelihood.is_some());
//! })?;
//!
//! // The model is small enough to evaluate exactly: ln Z by enumeration.
//! let ll = log_likelihood_exact(&rbm, &data)?;
//! println!("average log-likelihood {:.3} ± {:.3} nats", ll.mean, ll.stderr);
//!
//! // Draw samples with 100 Gibbs chains.
//! let mut chains = Chains::random(&rbm, 100, 1)?;
//! chains.sweep(&rbm, 200)?;
//! assert_eq!(chains.visible().shape(), (9, 100));
//! # Ok(())
//! # }
//! ```
//!
//! ## Conventions
//!
//! - A batch is a `DMatrix<f32>` with **one column per example or chain** (`units × n`).
//! - Parameters and products are `f32`; log-sum-exps, `ln Z` and log-likelihoods are `f64`.
//! - Every stochastic routine takes a seed; parallel work draws from one stream per fixed block
//!   of chains, so results are bit-identical for any `RAYON_NUM_THREADS`.
//! - Every fallible call returns [`Result`] with the crate's one [`Error`] type.
//!
//! ## Modules
//!
//! - [`layer`]: the [`Layer`] trait and [`Bernoulli`], [`Gaussian`], [`Softmax`] units.
//! - [`dbm`]: [`Dbm`], the one layered machine (any number of hidden layers): energies, free
//!   energies with odd or even layers summed out, conditionals, mean-field and the variational
//!   bound. Everything that samples, estimates or trains takes it.
//! - [`rbm`]: [`Rbm`], its one-hidden-layer case (it dereferences to the [`Dbm`]): the RBM's
//!   free energy with the hidden layer summed out and its conditionals by name.
//! - [`gibbs`]: [`Chains`]: persistent chains, blocked Gibbs sweeps, clamping, for any
//!   [`Machine`] (RBMs and DBMs).
//! - [`train`]: one training engine for every machine: CD-k, PCD, fast PCD and parallel
//!   tempering as negative phases, an exact or mean-field positive phase, momentum, weight decay,
//!   schedules, sparsity, centering, max-norm, monitoring and checkpoints that resume
//!   bit-identically; greedy DBM pretraining.
//! - [`tempering`]: parallel tempering for any machine, with swap rates and ladder tuning.
//! - [`centering`]: centered RBMs and their conversion to plain ones.
//! - [`classify`]: the classification RBM, the machine with inputs and labels side by side:
//!   exact `p(y | x)`; its objectives train through [`train`].
//! - [`partition`]: exact `ln Z`, `ln p*(v)` and samples by enumeration, AIS and reverse AIS,
//!   `evaluate`, trajectory AIS, log-likelihoods and exact conditional log-likelihoods of missing
//!   units, for any machine.
//! - [`diagnostics`]: autocorrelation times and effective sample sizes of chains and of
//!   importance weights.
//! - [`data`]: IDX files, MNIST, binarisation, bars-and-stripes.
//! - [`io`]: model and checkpoint files (safetensors with documented metadata), atomic saves,
//!   and NumPy `.npz`.
//! - [`image`] (feature `png`, on by default): PNG grids of samples and filters, curves.
//! - [`random`]: the seeded random streams (the hot products, transposes, tables and
//!   non-linearities of the crate's kernels are internal).

pub mod data;
pub mod error;
#[cfg(feature = "png")]
pub mod image;
pub mod io;
mod kernels;
mod models;
pub mod partition;
mod sampling;
/// The random streams every stochastic routine draws from: one xoshiro256++ stream per (seed,
/// index), so that work split into fixed blocks gives the same bits on any number of threads.
pub mod random {
    pub use crate::kernels::{CHAIN_BLOCK, ChainRng, fill_normal, fill_uniform, stream, uniform};
}
pub mod train;
/// The machine the kernels run on: its name and SIMD features, and which instruction set the
/// kernels use ([`cpu::Kernel`], chosen at run time; `$BOLTZMANN_KERNEL` or [`cpu::set_kernel`]
/// pick another). Every kernel gives the same bits, so the choice changes speed only.
pub mod cpu {
    pub use crate::kernels::{
        Caches, Kernel, caches, cpu_features, cpu_name, describe, set_kernel, table_budget,
    };
}

pub use models::{centering, classify, dbm, layer, rbm};
pub use sampling::{diagnostics, gibbs, tempering};

pub use dbm::Dbm;
pub use error::{Error, Flow, Result};
pub use gibbs::{Chains, Machine};
pub use layer::{Bernoulli, Beside, FromBias, Gaussian, Layer, Softmax};
/// The linear algebra of the API (`DMatrix`, `DVector`), re-exported so that users need not pin
/// its version.
pub use nalgebra;
pub use rbm::Rbm;

/// The README's code, compiled as a doctest so that it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
