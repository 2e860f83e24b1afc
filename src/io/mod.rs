//! Model and checkpoint files ([`tensors`]: safetensors with documented metadata), atomic
//! saves, and NumPy `.npz` import/export.

pub(crate) mod checked;
#[cfg(feature = "npz")]
mod npz;
pub mod tensors;

#[cfg(feature = "npz")]
pub(crate) use npz::take as take_npz;
#[cfg(feature = "npz")]
pub use npz::{MAX_NPY_HEADER, MAX_NPZ_ARRAYS, MAX_NPZ_BYTES, NpzArray, read_npz, write_npz};

use crate::error::{Error, Result};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The first bytes of the model files of earlier versions (a header and a binary payload),
/// which loaders recognise to say how to convert them.
pub const MAGIC: [u8; 8] = *b"BOLTZMN\x1a";

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
