//! The IDX format of MNIST: a magic number `0 0 type ndims`, `ndims` big-endian u32 sizes, then
//! the data. Only unsigned bytes (type 0x08) are read. Files may be gzip-compressed.

use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

/// An IDX array of unsigned bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Idx {
    /// Sizes, outermost first (e.g. `[60000, 28, 28]`).
    pub dims: Vec<usize>,
    /// The values in row-major order.
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes, raw or gzip-compressed (detected from its first bytes).
pub fn read_idx(path: impl AsRef<Path>) -> Result<Idx> {
    let path = path.as_ref();
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| Error::Format {
                path: path.into(),
                expected: "gzip-compressed IDX",
                message: format!("gzip stream is broken: {e}"),
            })?;
        out
    } else {
        raw
    };
    parse_idx(&bytes).map_err(|message| Error::Format {
        path: path.into(),
        expected: "IDX",
        message,
    })
}

fn parse_idx(bytes: &[u8]) -> std::result::Result<Idx, String> {
    let magic = bytes
        .get(..4)
        .ok_or_else(|| format!("{} bytes; the header needs at least 4", bytes.len()))?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(format!(
            "magic number starts {:02x} {:02x}; expected 00 00",
            magic[0], magic[1]
        ));
    }
    if magic[2] != 0x08 {
        return Err(format!(
            "data type code 0x{:02x}; only unsigned bytes (0x08) are supported",
            magic[2]
        ));
    }
    let ndims = usize::from(magic[3]);
    if ndims == 0 {
        return Err("0 dimensions; expected at least 1".into());
    }
    let header = 4 + 4 * ndims;
    let sizes = bytes
        .get(4..header)
        .ok_or_else(|| format!("header of {ndims} dimensions is cut short"))?;
    let dims: Vec<usize> = sizes
        .chunks_exact(4)
        .map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or("sizes overflow")?;
    let found = bytes.len() - header;
    if found != expected {
        return Err(format!(
            "sizes {dims:?} need {expected} data bytes, found {found}"
        ));
    }
    Ok(Idx {
        dims,
        data: bytes[header..].to_vec(),
    })
}
