//! Datasets: the IDX format, MNIST, binarisation, and tiny synthetic sets for exact tests.
//!
//! A dataset is a `DMatrix<f32>` with one column per example.

mod idx;
mod mnist;

pub use idx::{Idx, MAX_IDX_BYTES, read_idx};
pub use mnist::Mnist;

use crate::error::{Error, Result};
use crate::kernels::{fill_uniform, stream};
use nalgebra::DMatrix;

/// `1` where a value exceeds `threshold`, else `0`.
pub fn binarize_threshold(data: &DMatrix<f32>, threshold: f32) -> DMatrix<f32> {
    data.map(|x| f32::from(x > threshold))
}

/// Each value `p ∈ [0, 1]` becomes `1` with probability `p`: the stochastic binarisation of
/// Salakhutdinov & Murray (2008). The draw is fixed by `seed`.
pub fn binarize_stochastic(data: &DMatrix<f32>, seed: u64) -> Result<DMatrix<f32>> {
    let mut out = data.clone();
    binarize_in_place(out.as_mut_slice(), seed)?;
    Ok(out)
}

/// In-place stochastic binarisation of grey levels in [0, 1].
pub(crate) fn binarize_in_place(x: &mut [f32], seed: u64) -> Result<()> {
    if let Some(i) = crate::error::first_failing(x, |p| (0.0..=1.0).contains(&p)) {
        return Err(Error::invalid(
            "data for binarisation",
            format!("value {} at index {i}; expected values in [0, 1]", x[i]),
        ));
    }
    let mut rng = stream(seed, 0);
    let mut u = [0f32; 256];
    for chunk in x.chunks_mut(u.len()) {
        let u = &mut u[..chunk.len()];
        fill_uniform(&mut rng, u);
        for (p, u) in chunk.iter_mut().zip(u.iter()) {
            *p = f32::from(*u < *p);
        }
    }
    Ok(())
}

/// All distinct bars-and-stripes images of `side × side` pixels (row-major), one per column:
/// every image has each row all-on or all-off (bars), or each column so (stripes). There are
/// `2·2^side − 2` of them (all-off and all-on are counted once).
pub fn bars_and_stripes(side: usize) -> Result<DMatrix<f32>> {
    if side == 0 || side > 8 {
        return Err(Error::invalid(
            "bars-and-stripes side",
            format!("{side}; expected 1 to 8"),
        ));
    }
    let n = side * side;
    let mut images: Vec<Vec<f32>> = Vec::new();
    for pattern in 0u32..(1 << side) {
        let on = |k: usize| f32::from(pattern >> k & 1 == 1);
        let rows: Vec<f32> = (0..n).map(|p| on(p / side)).collect();
        let cols: Vec<f32> = (0..n).map(|p| on(p % side)).collect();
        for image in [rows, cols] {
            if !images.contains(&image) {
                images.push(image);
            }
        }
    }
    Ok(DMatrix::from_fn(n, images.len(), |i, c| images[c][i]))
}

/// Reads the 2-D array `name` (`examples × units`, any of float32, float64, uint8) of an `.npz`
/// file as a dataset with one example per column, e.g. `train` and `test` of the binarised MNIST
/// of Salakhutdinov & Murray.
#[cfg(feature = "npz")]
pub fn load_npz_examples(path: impl AsRef<std::path::Path>, name: &str) -> Result<DMatrix<f32>> {
    let path = path.as_ref();
    let mut arrays = crate::io::read_npz(path)?;
    let array = crate::io::take_npz(&mut arrays, path, name, "dataset .npz", name)?;
    // Row-major rows are the examples: exactly the columns of a column-major matrix.
    let data = array.into_columns("dataset array (examples × units)")?;
    crate::error::check_finite("dataset", data.as_slice())?;
    Ok(data)
}
