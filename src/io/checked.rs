//! Serde adapters for the matrices and random streams of model and checkpoint files. nalgebra's
//! own decoder compares `rows × cols` with the values present using an unchecked product, so a
//! file could claim sizes whose product wraps around to the values it holds; these refuse that.

use crate::kernels::{ChainRng, stream_from_words, stream_words};
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

/// Random streams: within a state file a reference to a u64 tensor with a row of four words per
/// stream ([`crate::io::tensors`]); elsewhere, and in files of format version 1, the streams'
/// own serde layout.
pub(crate) mod streams {
    use super::*;
    use crate::io::tensors::{fetch_words, reading_state, stash_words};

    /// The stored form: a tensor reference, or (format version 1) the streams inline.
    #[derive(Deserialize)]
    #[serde(untagged)]
    pub(super) enum Stored<T> {
        Tensor(TensorRef),
        Inline(T),
    }

    /// The streams of the tensor `r` refers to.
    pub(super) fn fetch(r: TensorRef) -> Result<Vec<ChainRng>, String> {
        if r.cols != 4 {
            return Err(format!(
                "random streams `{}` have {} words each; xoshiro256++ has 4",
                r.tensor, r.cols
            ));
        }
        let words =
            fetch_words(&r.tensor, r.rows).unwrap_or(Err("no state is being read".into()))?;
        let rows = words.chunks_exact(4);
        Ok(rows
            .map(|w| stream_from_words([w[0], w[1], w[2], w[3]]))
            .collect())
    }

    pub fn serialize<S: Serializer>(streams: &[ChainRng], s: S) -> Result<S::Ok, S::Error> {
        let words = streams.iter().flat_map(stream_words).collect();
        match stash_words(streams.len(), words) {
            Some(tensor) => TensorRef {
                tensor,
                rows: streams.len(),
                cols: 4,
            }
            .serialize(s),
            None => s.collect_seq(streams),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ChainRng>, D::Error> {
        if !reading_state() {
            return Deserialize::deserialize(d);
        }
        match Stored::deserialize(d)? {
            Stored::Inline(streams) => Ok(streams),
            Stored::Tensor(r) => fetch(r).map_err(D::Error::custom),
        }
    }
}

/// One random stream, stored as a set of one ([`streams`]).
pub(crate) mod stream {
    use super::streams::{Stored, fetch};
    use super::*;
    use crate::io::tensors::reading_state;

    pub fn serialize<S: Serializer>(rng: &ChainRng, s: S) -> Result<S::Ok, S::Error> {
        streams::serialize(std::slice::from_ref(rng), s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ChainRng, D::Error> {
        if !reading_state() {
            return Deserialize::deserialize(d);
        }
        match Stored::deserialize(d)? {
            Stored::Inline(rng) => Ok(rng),
            Stored::Tensor(r) => match fetch(r).map_err(D::Error::custom)?.as_slice() {
                [rng] => Ok(rng.clone()),
                _ => Err(D::Error::custom("expected exactly one random stream")),
            },
        }
    }
}
