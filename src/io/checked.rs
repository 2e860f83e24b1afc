//! Serde adapters for the matrices of model and checkpoint files. nalgebra's own decoder
//! compares `rows × cols` with the values present using an unchecked product, so a file could
//! claim sizes whose product wraps around to the values it holds; these refuse that.

use nalgebra::DMatrix;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A matrix from its values (column-major) and sizes, if they agree without overflow.
fn assemble(data: Vec<f32>, rows: usize, cols: usize) -> Result<DMatrix<f32>, String> {
    match rows.checked_mul(cols) {
        Some(n) if n == data.len() => Ok(DMatrix::from_vec(rows, cols, data)),
        _ => Err(format!(
            "a {rows}×{cols} matrix cannot hold the {} values stored",
            data.len()
        )),
    }
}

/// A matrix of a state file: the name of the tensor that holds it, and its sizes.
#[derive(Serialize, Deserialize)]
struct TensorRef {
    tensor: String,
    rows: usize,
    cols: usize,
}

/// One matrix: within a state file a reference to its tensor ([`crate::io::tensors`]),
/// elsewhere nalgebra's layout (values, rows, columns).
pub(crate) mod matrix {
    use super::*;
    use crate::io::tensors::{fetch, reading_state, stash};

    pub fn serialize<S: Serializer>(m: &DMatrix<f32>, s: S) -> Result<S::Ok, S::Error> {
        match stash(m) {
            Some(tensor) => TensorRef {
                tensor,
                rows: m.nrows(),
                cols: m.ncols(),
            }
            .serialize(s),
            None => m.serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DMatrix<f32>, D::Error> {
        if reading_state() {
            let r = TensorRef::deserialize(d)?;
            return fetch(&r.tensor, r.rows, r.cols)
                .unwrap_or_else(|| Err("no state is being read".into()))
                .map_err(D::Error::custom);
        }
        let (data, rows, cols): (Vec<f32>, usize, usize) = Deserialize::deserialize(d)?;
        assemble(data, rows, cols).map_err(D::Error::custom)
    }
}

/// A sequence of matrices.
pub(crate) mod matrices {
    use super::*;

    struct Checked(DMatrix<f32>);

    struct Each<'a>(&'a DMatrix<f32>);

    impl Serialize for Each<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            matrix::serialize(self.0, s)
        }
    }

    impl<'de> Deserialize<'de> for Checked {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            matrix::deserialize(d).map(Checked)
        }
    }

    pub fn serialize<S: Serializer>(m: &[DMatrix<f32>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter().map(Each))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DMatrix<f32>>, D::Error> {
        let checked: Vec<Checked> = Deserialize::deserialize(d)?;
        Ok(checked.into_iter().map(|c| c.0).collect())
    }
}
