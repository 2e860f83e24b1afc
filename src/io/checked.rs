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

/// One matrix, in nalgebra's layout (values, rows, columns).
pub(crate) mod matrix {
    use super::*;

    pub fn serialize<S: Serializer>(m: &DMatrix<f32>, s: S) -> Result<S::Ok, S::Error> {
        m.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DMatrix<f32>, D::Error> {
        let (data, rows, cols): (Vec<f32>, usize, usize) = Deserialize::deserialize(d)?;
        assemble(data, rows, cols).map_err(D::Error::custom)
    }
}

/// A sequence of matrices.
pub(crate) mod matrices {
    use super::*;

    struct Checked(DMatrix<f32>);

    impl<'de> Deserialize<'de> for Checked {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            matrix::deserialize(d).map(Checked)
        }
    }

    pub fn serialize<S: Serializer>(m: &[DMatrix<f32>], s: S) -> Result<S::Ok, S::Error> {
        m.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DMatrix<f32>>, D::Error> {
        let checked: Vec<Checked> = Deserialize::deserialize(d)?;
        Ok(checked.into_iter().map(|c| c.0).collect())
    }
}

/// Text stored as its UTF-8 bytes: a sequence, which decoders read value by value, where a
/// string's claimed length would be allocated at once.
pub(crate) mod text {
    use super::*;

    pub fn serialize<S: Serializer>(t: &str, s: S) -> Result<S::Ok, S::Error> {
        t.as_bytes().to_vec().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let bytes: Vec<u8> = Deserialize::deserialize(d)?;
        String::from_utf8(bytes).map_err(D::Error::custom)
    }
}
