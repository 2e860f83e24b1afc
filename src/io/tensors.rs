//! Model files: [safetensors](https://huggingface.co/docs/safetensors) (an 8-byte header length,
//! a JSON header naming each tensor's type, shape and byte range, then the tensors' bytes),
//! readable from any language. Every tensor is row-major (NumPy's order) and f32, except the
//! random-stream states of checkpoints: u64, one row of four words (xoshiro256++) per stream. The header's
//! `__metadata__` holds strings:
//!
//! | key | value |
//! |---|---|
//! | `format` | `boltzmann-model` |
//! | `format_version` | `2` (version 1 stored random-stream states as JSON; it is still read) |
//! | `crate_version` | the version of `boltzmann` that wrote the file |
//! | `crc32` | CRC-32 (IEEE, as `zlib.crc32`) of the tensors' bytes, in the order of their names, 8 hex digits |
//! | … | what the model adds (for machines `machine` and `layers`, see [`Dbm::save`](crate::Dbm::save); for checkpoints `kind` and `state`, see `train::Checkpoint`) |
//!
//! Files are written atomically ([`write_atomic`](super::write_atomic)) and read whole, up to
//! [`MAX_MODEL_BYTES`](super::MAX_MODEL_BYTES); every size is checked against the bytes present
//! before anything is allocated.

use crate::error::{Error, Result};
use nalgebra::DMatrix;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Serialize, de::DeserializeOwned};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The `format` of every model file.
pub const MODEL_FORMAT: &str = "boltzmann-model";
/// The format version written by this build, and the newest it reads.
pub const MODEL_FORMAT_VERSION: u32 = 2;

/// A tensor: its shape, then its values in row-major order.
type Tensor = (Vec<usize>, Vec<f32>);
/// A tensor of 64-bit words (random-stream states): its shape, then its words row-major.
type Words = (Vec<usize>, Vec<u64>);

/// The tensors of a model file by name, and its metadata.
pub(crate) struct TensorFile {
    pub tensors: BTreeMap<String, Tensor>,
    pub words: BTreeMap<String, Words>,
    pub metadata: HashMap<String, String>,
}

/// The CRC-32 of the tensors' bytes (little-endian f32) in the order of their names.
fn crc32<'a>(tensors: impl Iterator<Item = &'a [u8]>) -> u32 {
    let mut h = crc32fast::Hasher::new();
    tensors.for_each(|t| h.update(t));
    h.finalize()
}

/// Writes `tensors` (name, shape, row-major values), `words` (the same for u64 tensors) and
/// `metadata` as a model file at `path`.
pub(crate) fn write(
    path: &Path,
    metadata: Vec<(String, String)>,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    words: Vec<(String, Vec<usize>, Vec<u64>)>,
) -> Result<()> {
    let floats = tensors.into_iter().map(|(name, shape, values)| {
        let b = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        (name, (Dtype::F32, shape, b))
    });
    let words = words.into_iter().map(|(name, shape, values)| {
        let b = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        (name, (Dtype::U64, shape, b))
    });
    let bytes: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> = floats.chain(words).collect();
    let mut info: HashMap<String, String> = metadata.into_iter().collect();
    info.insert("format".into(), MODEL_FORMAT.into());
    info.insert("format_version".into(), MODEL_FORMAT_VERSION.to_string());
    info.insert("crate_version".into(), env!("CARGO_PKG_VERSION").into());
    let crc = crc32(bytes.values().map(|(_, _, b)| b.as_slice()));
    info.insert("crc32".into(), format!("{crc:08x}"));
    let views = bytes
        .iter()
        .map(|(name, (dtype, shape, b))| {
            let view = TensorView::new(*dtype, shape.clone(), b)
                .map_err(|e| Error::invalid("model tensors", e.to_string()))?;
            Ok((name.clone(), view))
        })
        .collect::<Result<Vec<_>>>()?;
    let out = safetensors::serialize(views, Some(info))
        .map_err(|e| Error::invalid("model file", e.to_string()))?;
    super::write_atomic(path, &out)
}

/// Reads the model file at `path`: checks the safetensors layout, the format, its version and
/// the checksum; every tensor must be f32 or u64.
pub(crate) fn read(path: &Path) -> Result<TensorFile> {
    let bytes = super::read_bounded(path, super::MAX_MODEL_BYTES)?;
    let format = |message: String| Error::Format {
        path: path.into(),
        expected: "boltzmann model (safetensors)",
        message,
    };
    if bytes.starts_with(&super::MAGIC) {
        return Err(format(
            "it is a model file of the earlier binary format (`BOLTZMN` magic), which this \
             version no longer reads: load it with the version that wrote it and export it with \
             `save_npz`, then import the `.npz` with `load_npz` and save it again"
                .into(),
        ));
    }
    let file = SafeTensors::deserialize(&bytes).map_err(|e| format(e.to_string()))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| format(e.to_string()))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let get = |key: &str| {
        metadata
            .get(key)
            .ok_or_else(|| format(format!("its metadata has no `{key}`")))
    };
    if get("format")? != MODEL_FORMAT {
        return Err(format(format!(
            "its format is `{}`, expected `{MODEL_FORMAT}`",
            get("format")?
        )));
    }
    match get("format_version")?.parse::<u32>() {
        Ok(v) if (1..=MODEL_FORMAT_VERSION).contains(&v) => {}
        Ok(found) => {
            return Err(Error::Version {
                path: path.into(),
                found,
                supported: MODEL_FORMAT_VERSION,
            });
        }
        Err(_) => return Err(format("its format_version is not a number".into())),
    }
    let mut names = file.names();
    names.sort_unstable();
    let views = names
        .iter()
        .map(|&n| file.tensor(n).map_err(|e| format(e.to_string())))
        .collect::<Result<Vec<_>>>()?;
    let stored = u32::from_str_radix(get("crc32")?, 16)
        .map_err(|_| format("its crc32 is not 8 hex digits".into()))?;
    let computed = crc32(views.iter().map(|v| v.data()));
    if stored != computed {
        return Err(Error::Checksum {
            path: path.into(),
            stored: stored.into(),
            computed: computed.into(),
        });
    }
    let (mut tensors, mut words) = (BTreeMap::new(), BTreeMap::new());
    for (name, view) in names.iter().zip(&views) {
        let (name, shape, data) = (name.to_string(), view.shape().to_vec(), view.data());
        match view.dtype() {
            Dtype::F32 => {
                let values = data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().expect("chunks of four bytes")));
                tensors.insert(name, (shape, values.collect()));
            }
            Dtype::U64 => {
                let values = data
                    .chunks_exact(8)
                    .map(|b| u64::from_le_bytes(b.try_into().expect("chunks of eight bytes")));
                words.insert(name, (shape, values.collect()));
            }
            other => {
                return Err(format(format!(
                    "tensor `{name}` is {other:?}; every tensor must be F32 (or U64 for random streams)"
                )));
            }
        }
    }
    Ok(TensorFile {
        tensors,
        words,
        metadata,
    })
}

impl TensorFile {
    /// The metadata value of `key`, or a format error naming the file.
    pub(crate) fn get(&self, path: &Path, key: &str) -> Result<&str> {
        self.metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| Error::Format {
                path: path.into(),
                expected: "boltzmann model (safetensors)",
                message: format!("its metadata has no `{key}`"),
            })
    }

    /// Removes and returns tensor `name`, which must have `shape`.
    pub(crate) fn take(&mut self, path: &Path, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let format = |message: String| Error::Format {
            path: path.into(),
            expected: "boltzmann model (safetensors)",
            message,
        };
        match self.tensors.remove(name) {
            Some((s, values)) if s == shape => Ok(values),
            Some((s, _)) => Err(format(format!(
                "tensor `{name}` has shape {s:?}, expected {shape:?}"
            ))),
            None => Err(format(format!("it has no tensor `{name}`"))),
        }
    }
}

/// The tensors of a state: matrices and random streams.
#[derive(Default)]
struct State {
    matrices: BTreeMap<String, Tensor>,
    words: BTreeMap<String, Words>,
}

thread_local! {
    /// While a state is written: the matrices and streams met so far, each to become a tensor.
    static SINK: RefCell<Option<State>> = const { RefCell::new(None) };
    /// While a state is read: the file's tensors, taken as the matrices and streams ask for them.
    static SOURCE: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// While a state is written ([`write_state`]): stores `m` as a tensor of shape [columns, rows]
/// (its column-major values, row-major) and returns the tensor's name (`m0000`, `m0001`, …);
/// otherwise `None`.
pub(crate) fn stash(m: &DMatrix<f32>) -> Option<String> {
    SINK.with_borrow_mut(|sink| {
        let sink = sink.as_mut()?;
        let name = format!("m{:04}", sink.matrices.len());
        let tensor = (vec![m.ncols(), m.nrows()], m.as_slice().to_vec());
        sink.matrices.insert(name.clone(), tensor);
        Some(name)
    })
}

/// While a state is written: stores `rows` random-stream states of four words each (`words`,
/// row after row) as a u64 tensor and returns its name (`s0000`, …); otherwise `None`.
pub(crate) fn stash_words(rows: usize, words: Vec<u64>) -> Option<String> {
    SINK.with_borrow_mut(|sink| {
        let sink = sink.as_mut()?;
        let name = format!("s{:04}", sink.words.len());
        sink.words.insert(name.clone(), (vec![rows, 4], words));
        Some(name)
    })
}

/// Whether a state is being read on this thread.
pub(crate) fn reading_state() -> bool {
    SOURCE.with_borrow(Option::is_some)
}

/// Takes tensor `name` of `shape`, which holds `what`, from `tensors`.
fn take_shaped<T>(
    tensors: &mut BTreeMap<String, (Vec<usize>, Vec<T>)>,
    name: &str,
    shape: [usize; 2],
    what: &str,
) -> Result<Vec<T>, String> {
    match tensors.remove(name) {
        Some((s, values)) if s == shape => Ok(values),
        Some((s, _)) => Err(format!(
            "tensor `{name}` has shape {s:?}, but {what} is stored there"
        )),
        None => Err(format!(
            "no tensor `{name}` of its type (or it is used twice)"
        )),
    }
}

/// While a state is read ([`read_state`]): the matrix stored as tensor `name`, which must be
/// `rows × cols`; `None` when no state is being read.
pub(crate) fn fetch(name: &str, rows: usize, cols: usize) -> Option<Result<DMatrix<f32>, String>> {
    SOURCE.with_borrow_mut(|source| {
        let source = source.as_mut()?;
        let what = format!("a {rows}×{cols} matrix");
        let values = take_shaped(&mut source.matrices, name, [cols, rows], &what);
        Some(values.map(|v| DMatrix::from_vec(rows, cols, v)))
    })
}

/// While a state is read: the `rows` stream states (four words each) of u64 tensor `name`.
pub(crate) fn fetch_words(name: &str, rows: usize) -> Option<Result<Vec<u64>, String>> {
    let what = format!("a set of {rows} random streams");
    SOURCE.with_borrow_mut(|source| {
        let words = &mut source.as_mut()?.words;
        Some(take_shaped(words, name, [rows, 4], &what))
    })
}

/// Clears a thread-local slot when dropped, also when serde panics or fails midway.
struct Clear(&'static std::thread::LocalKey<RefCell<Option<State>>>);

impl Drop for Clear {
    fn drop(&mut self) {
        self.0.with_borrow_mut(|x| *x = None);
    }
}

/// Writes `state` as a model file: its matrices as f32 tensors `m0000`, `m0001`, … (each of
/// shape [columns, rows]: the column-major values), its random streams as u64 tensors `s0000`,
/// … (a row of four xoshiro256++ words per stream) and everything else as JSON in the metadata
/// key `state`, in which each matrix is `{"tensor": name, "rows": r, "cols": c}` and each set of
/// streams `{"tensor": name, "rows": streams, "cols": 4}`; `kind` goes to the metadata key `kind`.
pub(crate) fn write_state<T: Serialize>(path: &Path, kind: &str, state: &T) -> Result<()> {
    SINK.with_borrow_mut(|s| *s = Some(State::default()));
    let clear = Clear(&SINK);
    let json = serde_json::to_string(state)
        .map_err(|e| Error::invalid("state", format!("cannot be written: {e}")))?;
    let tensors = SINK.with_borrow_mut(|s| s.take()).unwrap_or_default();
    drop(clear);
    let metadata = vec![("kind".into(), kind.into()), ("state".into(), json)];
    let matrices = tensors.matrices.into_iter().map(|(n, (s, v))| (n, s, v));
    let words = tensors.words.into_iter().map(|(n, (s, v))| (n, s, v));
    write(path, metadata, matrices.collect(), words.collect())
}

/// Reads a state written by [`write_state`] with this `kind`; every tensor must be used.
pub(crate) fn read_state<T: DeserializeOwned>(path: &Path, kind: &str) -> Result<T> {
    let file = read(path)?;
    let format = |message: String| Error::Format {
        path: path.into(),
        expected: "boltzmann model (safetensors)",
        message,
    };
    let found = file.get(path, "kind")?;
    if found != kind {
        return Err(Error::Kind {
            path: path.into(),
            found: found.into(),
            expected: kind.into(),
        });
    }
    let json = file.get(path, "state")?;
    SOURCE.with_borrow_mut(|s| {
        *s = Some(State {
            matrices: file.tensors.clone(),
            words: file.words.clone(),
        })
    });
    let _clear = Clear(&SOURCE);
    let state =
        serde_json::from_str(json).map_err(|e| format(format!("its state cannot be read: {e}")))?;
    let left = SOURCE.with_borrow(|s| {
        let s = s.as_ref()?;
        s.matrices.keys().chain(s.words.keys()).next().cloned()
    });
    match left {
        Some(name) => Err(format(format!(
            "tensor `{name}` belongs to nothing in the state"
        ))),
        None => Ok(state),
    }
}
