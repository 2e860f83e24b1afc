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

/// The most bytes an IDX file may hold (decompressed): MNIST's largest file holds 47 MB.
pub const MAX_IDX_BYTES: u64 = 1 << 32;
/// Deflate cannot expand data by more than about 1032 : 1.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// Reads an IDX file of unsigned bytes, raw or gzip-compressed (detected from its first bytes).
/// A compressed file is inflated only as far as its header says the data reach, and only if the
/// compressed bytes can hold that much: a small file cannot make this allocate much.
pub fn read_idx(path: impl AsRef<Path>) -> Result<Idx> {
    let path = path.as_ref();
    let bad = |expected, message| Error::Format {
        path: path.into(),
        expected,
        message,
    };
    let raw = crate::io::read_bounded(path, MAX_IDX_BYTES)?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return parse_idx(&raw).map_err(|m| bad("IDX", m));
    }
    let broken =
        |e: std::io::Error| bad("gzip-compressed IDX", format!("gzip stream is broken: {e}"));
    let mut gz = flate2::read::GzDecoder::new(raw.as_slice());
    let mut bytes = vec![0u8; 4];
    gz.read_exact(&mut bytes).map_err(broken)?;
    let rest = header_len(&bytes).map_err(|m| bad("IDX", m))? - 4;
    bytes.resize(4 + rest, 0);
    gz.read_exact(&mut bytes[4..]).map_err(broken)?;
    let (dims, body) = header(&bytes).map_err(|m| bad("IDX", m))?;
    let holds = (raw.len() as u64)
        .saturating_mul(MAX_DEFLATE_RATIO)
        .min(MAX_IDX_BYTES);
    if body as u64 > holds {
        return Err(bad(
            "gzip-compressed IDX",
            format!(
                "sizes {dims:?} need {body} data bytes; {} compressed bytes can hold at most {holds}",
                raw.len()
            ),
        ));
    }
    // One byte more than the header implies reveals data longer than it says.
    gz.take(body as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(broken)?;
    parse_idx(&bytes).map_err(|m| bad("IDX", m))
}

/// The header's length, from its first four bytes (magic number, type, dimensions).
fn header_len(bytes: &[u8]) -> std::result::Result<usize, String> {
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
    match magic[3] {
        0 => Err("0 dimensions; expected at least 1".into()),
        ndims => Ok(4 + 4 * usize::from(ndims)),
    }
}

/// The sizes in the header at the start of `bytes` and the number of data bytes they need.
fn header(bytes: &[u8]) -> std::result::Result<(Vec<usize>, usize), String> {
    let end = header_len(bytes)?;
    let sizes = bytes
        .get(4..end)
        .ok_or_else(|| format!("header of {} dimensions is cut short", (end - 4) / 4))?;
    let dims: Vec<usize> = sizes
        .chunks_exact(4)
        .map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize)
        .collect();
    let body = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("sizes {dims:?} overflow"))?;
    Ok((dims, body))
}

fn parse_idx(bytes: &[u8]) -> std::result::Result<Idx, String> {
    let (dims, expected) = header(bytes)?;
    let start = header_len(bytes)?;
    let found = bytes.len() - start;
    if found != expected {
        return Err(format!(
            "sizes {dims:?} need {expected} data bytes, found {found}"
        ));
    }
    Ok(Idx {
        dims,
        data: bytes[start..].to_vec(),
    })
}
