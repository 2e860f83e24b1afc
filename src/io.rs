//! Model files and NumPy `.npz` import/export.
//!
//! A model file is a header followed by a bincode payload (little-endian throughout):
//!
//! | bytes | content |
//! |---|---|
//! | 8 | magic `BOLTZMN\x1a` |
//! | 4 | format version (u32), currently 1 |
//! | 2 + k | model kind (u16 length, UTF-8), e.g. `rbm/bernoulli/bernoulli` |
//! | 2 + 8·d | shapes (u16 count, u64 each), e.g. `[784, 500]` |
//! | 8 | payload length (u64) |
//! | 8 | FNV-1a 64 checksum of the payload |
//! | … | payload: the model, serde + bincode 2 (standard configuration) |
//!
//! Files are written to a temporary file beside the target and renamed into place, so a crash
//! never leaves a half-written model under the target name.

use crate::error::{Error, Result};
use serde::{Serialize, de::DeserializeOwned};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

/// The first bytes of every model file.
pub const MAGIC: [u8; 8] = *b"BOLTZMN\x1a";
/// The format version written by this build, and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// A model that can be stored in a model file.
pub trait Model: Serialize + DeserializeOwned {
    /// The kind written in the header, e.g. `rbm/bernoulli/bernoulli`.
    fn kind() -> String;
    /// Layer sizes, written in the header so tools can read them without decoding the payload.
    fn shapes(&self) -> Vec<u64>;
    /// Checks the decoded model (shapes agree, values finite).
    fn check(&self) -> Result<()>;
}

/// FNV-1a, 64 bits: detects any single flipped byte, needs no dependency.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, synced, then
/// renamed over the target.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Saves a model to `path` (atomically).
pub fn save<M: Model>(model: &M, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    model.check()?;
    let payload = bincode::serde::encode_to_vec(model, bincode::config::standard())
        .map_err(|e| Error::invalid("model", format!("cannot be encoded: {e}")))?;
    let kind = M::kind();
    let shapes = model.shapes();
    let mut out = Vec::with_capacity(payload.len() + 64);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(kind.len() as u16).to_le_bytes());
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(&(shapes.len() as u16).to_le_bytes());
    shapes
        .iter()
        .for_each(|s| out.extend_from_slice(&s.to_le_bytes()));
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&fnv1a(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    write_atomic(path, &out)
}

/// A cursor over the file's bytes that reports truncation with the file's size.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.saturating_add(n);
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or_else(|| Error::Truncated {
                path: self.path.into(),
                expected: end as u64,
                found: self.bytes.len() as u64,
            })?;
        self.at = end;
        Ok(slice)
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().unwrap_or_default(),
        ))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }
}

/// Loads a model from `path`, checking magic bytes, version, kind, length, checksum and the
/// decoded model itself.
pub fn load<M: Model>(path: impl AsRef<Path>) -> Result<M> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let format = |message: String| Error::Format {
        path: path.into(),
        expected: "boltzmann model",
        message,
    };
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        let n = bytes.len().min(MAGIC.len());
        return Err(format(format!(
            "starts with {:02x?}; expected magic bytes {:02x?}",
            &bytes[..n],
            MAGIC
        )));
    }
    let mut r = Reader {
        bytes: &bytes,
        at: MAGIC.len(),
        path,
    };
    let version = r.u32()?;
    if version == 0 || version > FORMAT_VERSION {
        return Err(Error::Version {
            path: path.into(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let kind_len = usize::from(r.u16()?);
    let kind = String::from_utf8_lossy(r.take(kind_len)?).into_owned();
    if kind != M::kind() {
        return Err(Error::Kind {
            path: path.into(),
            found: kind,
            expected: M::kind(),
        });
    }
    let count = usize::from(r.u16()?);
    let shapes = (0..count).map(|_| r.u64()).collect::<Result<Vec<_>>>()?;
    let len = r.u64()?;
    let stored = r.u64()?;
    let payload = r.take(usize::try_from(len).unwrap_or(usize::MAX))?;
    if r.at != bytes.len() {
        return Err(format(format!(
            "{} bytes after the payload; expected none",
            bytes.len() - r.at
        )));
    }
    let computed = fnv1a(payload);
    if computed != stored {
        return Err(Error::Checksum {
            path: path.into(),
            stored,
            computed,
        });
    }
    let (model, used): (M, usize) =
        bincode::serde::decode_from_slice(payload, bincode::config::standard())
            .map_err(|e| format(format!("payload cannot be decoded: {e}")))?;
    if used != payload.len() {
        return Err(format("payload has trailing bytes".into()));
    }
    model.check()?;
    if model.shapes() != shapes {
        return Err(format(format!(
            "header shapes {shapes:?} differ from the model's {:?}",
            model.shapes()
        )));
    }
    Ok(model)
}

/// One array of an `.npz` file, as f32 in C (row-major) order.
#[derive(Clone, Debug, PartialEq)]
pub struct NpzArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Writes arrays (name, shape, data in C order) to an `.npz` file that `numpy.load` reads.
pub fn write_npz(path: impl AsRef<Path>, arrays: &[(&str, Vec<u64>, Vec<f32>)]) -> Result<()> {
    use npyz::WriterBuilder;
    let path = path.as_ref();
    let io = |e: std::io::Error| Error::io(path, e);
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, shape, data) in arrays {
        let mut npy = Vec::new();
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(shape)
            .writer(&mut npy)
            .begin_nd()
            .map_err(io)?;
        w.extend(data.iter().copied()).map_err(io)?;
        w.finish().map_err(io)?;
        zip.start_file(format!("{name}.npy"), options)
            .map_err(|e| io(e.into()))?;
        zip.write_all(&npy).map_err(io)?;
    }
    let bytes = zip.finish().map_err(|e| io(e.into()))?.into_inner();
    write_atomic(path, &bytes)
}

/// Reads every array of an `.npz` file, converting float32, float64 and uint8 to f32 in C order.
pub fn read_npz(path: impl AsRef<Path>) -> Result<HashMap<String, NpzArray>> {
    let path = path.as_ref();
    let format = |message: String| Error::Format {
        path: path.into(),
        expected: "NumPy .npz",
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format(e.to_string()))?;
    let mut arrays = HashMap::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| format(e.to_string()))?;
        let name = entry.name().map_err(|e| format(e.to_string()))?;
        let name = name.trim_end_matches(".npy").to_string();
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(path, e))?;
        let array = parse_npy(&bytes).map_err(|e| format(format!("array `{name}`: {e}")))?;
        arrays.insert(name, array);
    }
    Ok(arrays)
}

fn parse_npy(bytes: &[u8]) -> std::io::Result<NpzArray> {
    let npy = npyz::NpyFile::new(bytes)?;
    let shape: Vec<usize> = npy.shape().iter().map(|&s| s as usize).collect();
    let order = npy.order();
    let type_str = match npy.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        other => other.descr(),
    };
    let data: Vec<f32> = match type_str.as_str() {
        "<f4" => npy.into_vec::<f32>()?,
        "<f8" => npy
            .into_vec::<f64>()?
            .into_iter()
            .map(|x| x as f32)
            .collect(),
        "|u1" => npy.into_vec::<u8>()?.into_iter().map(f32::from).collect(),
        other => {
            return Err(std::io::Error::other(format!(
                "dtype {other}; expected float32, float64 or uint8"
            )));
        }
    };
    let data = match (order, shape.as_slice()) {
        (npyz::Order::Fortran, &[rows, cols]) => {
            // Column-major on disk: transpose into C order.
            (0..rows * cols)
                .map(|k| data[(k % cols) * rows + k / cols])
                .collect()
        }
        (npyz::Order::Fortran, s) if s.len() > 2 => {
            return Err(std::io::Error::other(
                "Fortran-ordered arrays of more than 2 dimensions are not supported",
            ));
        }
        _ => data,
    };
    Ok(NpzArray { shape, data })
}
