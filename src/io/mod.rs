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

pub(crate) mod checked;
mod npz;
pub mod tensors;

pub(crate) use npz::take as take_npz;
pub use npz::{MAX_NPY_HEADER, MAX_NPZ_ARRAYS, MAX_NPZ_BYTES, NpzArray, read_npz, write_npz};

use crate::error::{Error, Result};
use serde::{Serialize, de::DeserializeOwned};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// Writes `bytes` to `path` atomically: a temporary file of a name no other save uses (this
/// process's id and a counter) in the same directory, synced, renamed over the target, and the
/// directory synced so that the rename survives a crash. Temporaries left by earlier saves of
/// the same target whose process is gone are removed first; a failed save removes its own and
/// leaves the previous file as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    static SAVES: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid("file name", format!("{}: names no file", path.display())))?
        .to_string_lossy()
        .into_owned();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    remove_stale_temporaries(&dir, &name);
    let pid = std::process::id();
    let (tmp, mut file) = loop {
        let n = SAVES.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{pid}-{n}.tmp"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(path, e)),
        }
    };
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            drop(file);
            std::fs::rename(&tmp, path)
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    sync_dir(&dir).map_err(|e| Error::io(&dir, e))
}

/// Makes a rename in `dir` durable (a no-op where directories cannot be opened).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    if cfg!(unix) {
        std::fs::File::open(dir)?.sync_all()
    } else {
        Ok(())
    }
}

/// Removes `.NAME.PID-N.tmp` files in `dir` whose process no longer runs (where `/proc` tells):
/// what a save interrupted by a kill or a crash left behind.
fn remove_stale_temporaries(dir: &Path, name: &str) {
    let proc = Path::new("/proc/self");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    if !proc.exists() {
        return;
    }
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        // `PID-N.tmp`, or `tmp-PID` as saves before version 0.1 named them.
        let pid = match (rest.strip_suffix(".tmp"), rest.strip_prefix("tmp-")) {
            (Some(own), _) => own
                .split_once('-')
                .filter(|(_, n)| n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|(p, _)| p.parse::<u32>().ok()),
            (None, Some(old)) => old.parse::<u32>().ok(),
            (None, None) => None,
        };
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The most bytes a model or checkpoint file may hold.
pub const MAX_MODEL_BYTES: u64 = 1 << 34;

/// Reads the file at `path` whole if it holds at most `max` bytes (reading stops there, so that
/// a device or a growing file cannot make this read forever).
pub(crate) fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > max {
        return Err(Error::Format {
            path: path.into(),
            expected: "readable",
            message: format!("more than {max} bytes; files are read up to that size"),
        });
    }
    Ok(bytes)
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
    let bytes = read_bounded(path, MAX_MODEL_BYTES)?;
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
