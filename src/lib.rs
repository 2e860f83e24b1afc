pub mod error;
pub mod gibbs;
pub mod kernels;
pub mod layer;
pub mod rbm;

pub use error::{Error, Result};
pub use gibbs::Chains;
pub use layer::{Bernoulli, Gaussian, Layer, Softmax};
pub use rbm::Rbm;
pub mod partition;
pub mod data;
pub mod io;
pub mod train;
pub mod image;
