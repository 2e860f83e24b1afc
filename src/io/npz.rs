//! NumPy `.npz` archives (a zip of `.npy` arrays), read and written without trusting any size a
//! file declares: every shape, header length and decompressed size is checked with checked
//! arithmetic against the bytes the file holds and against a cap before anything is allocated.

use super::write_atomic;
use crate::error::{Error, Result};
use nalgebra::{DMatrix, DVector};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

/// The most bytes all arrays of one `.npz` may hold once decompressed (1 GiB: MNIST as float64
/// takes 440 MB). Archives that declare or inflate to more are refused.
pub const MAX_NPZ_BYTES: u64 = 1 << 30;
/// The longest `.npy` header read (NumPy itself refuses headers over 10,000 bytes by default).
pub const MAX_NPY_HEADER: usize = 65_536;
/// The most arrays one `.npz` may hold.
pub const MAX_NPZ_ARRAYS: usize = 1024;
/// NumPy's limit on dimensions.
const MAX_NDIM: usize = 64;
/// Deflate cannot expand data by more than about 1032 : 1; a larger declared ratio is a lie.
const MAX_DEFLATE_RATIO: u64 = 1032;
const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";

/// One array of an `.npz` file, as f32 in C (row-major) order. Its shape always agrees with its
/// data: the product of the sizes is the number of values.
#[derive(Clone, Debug, PartialEq)]
pub struct NpzArray {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl NpzArray {
    /// An array of `shape` holding `data` in C order; the sizes must multiply to `data.len()`.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        match element_count(&shape) {
            Some(n) if n == data.len() => Ok(NpzArray { shape, data }),
            _ => Err(Error::shape(
                "array",
                format!("{} values for shape {shape:?}", data.len()),
                format!("{} values", data.len()),
            )),
        }
    }

    /// Sizes, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values in C order.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The values of a 1-D array as a vector.
    pub fn into_vector(self, what: &'static str) -> Result<DVector<f32>> {
        match self.shape.as_slice() {
            [_] => Ok(DVector::from_vec(self.data)),
            s => Err(Error::shape(what, "1 dimension", format!("{s:?}"))),
        }
    }

    /// A 2-D array `rows × cols` as the matrix it is.
    pub fn into_matrix(self, what: &'static str) -> Result<DMatrix<f32>> {
        match *self.shape.as_slice() {
            // The product was checked when the array was made.
            [rows, cols] => Ok(DMatrix::from_row_slice(rows, cols, &self.data)),
            ref s => Err(Error::shape(what, "2 dimensions", format!("{s:?}"))),
        }
    }

    /// A 2-D array `rows × cols` as a `cols × rows` matrix whose columns are its rows (the
    /// examples of a dataset stored one per row), without copying.
    pub fn into_columns(self, what: &'static str) -> Result<DMatrix<f32>> {
        match *self.shape.as_slice() {
            [rows, cols] => Ok(DMatrix::from_vec(cols, rows, self.data)),
            ref s => Err(Error::shape(what, "2 dimensions", format!("{s:?}"))),
        }
    }
}

/// The number of values of `shape`, or `None` if the product overflows.
fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &s| n.checked_mul(s))
}

/// Takes the array `name` out of the arrays of the `.npz` at `path`, or says which are expected.
pub(crate) fn take(
    arrays: &mut HashMap<String, NpzArray>,
    path: &Path,
    name: &str,
    expected: &'static str,
    all: &str,
) -> Result<NpzArray> {
    arrays.remove(name).ok_or_else(|| Error::Format {
        path: path.into(),
        expected,
        message: format!("no array `{name}`; expected {all}"),
    })
}

/// The bytes of a `.npy` file (format 1.0) of float32 values in C order.
fn npy_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims = match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // Magic, version and length take 10 bytes; NumPy aligns the data to 64 bytes.
    let padded = (10 + header.len() + 1).div_ceil(64) * 64 - 10 - 1;
    header.extend(std::iter::repeat_n(' ', padded - header.len()));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * data.len());
    out.extend_from_slice(NPY_MAGIC);
    out.extend_from_slice(&[1, 0]);
    // Shapes of up to 64 dimensions keep the header far below 65,536 bytes.
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    data.iter()
        .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    out
}

/// Writes arrays (name, shape, data in C order) to an `.npz` file that `numpy.load` reads,
/// atomically.
pub fn write_npz(path: impl AsRef<Path>, arrays: &[(&str, Vec<u64>, Vec<f32>)]) -> Result<()> {
    let path = path.as_ref();
    let io = |e: std::io::Error| Error::io(path, e);
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, shape, data) in arrays {
        let shape: Vec<usize> = shape
            .iter()
            .map(|&s| usize::try_from(s).unwrap_or(usize::MAX))
            .collect();
        if shape.len() > MAX_NDIM || element_count(&shape) != Some(data.len()) {
            return Err(Error::shape(
                "array to write",
                format!("{} values in at most {MAX_NDIM} dimensions", data.len()),
                format!("shape {shape:?}"),
            ));
        }
        zip.start_file(format!("{name}.npy"), options)
            .map_err(|e| io(e.into()))?;
        zip.write_all(&npy_bytes(&shape, data)).map_err(io)?;
    }
    let bytes = zip.finish().map_err(|e| io(e.into()))?.into_inner();
    write_atomic(path, &bytes)
}

/// Reads every array of an `.npz` file, converting float32, float64, bool and the integer types
/// (either byte order; integers beyond 2^24 round to the nearest f32) to f32 in C order.
///
/// Nothing is allocated from a size the file declares before it is checked: the total
/// decompressed size against [`MAX_NPZ_BYTES`] and against what the compressed bytes can hold,
/// each `.npy` header against [`MAX_NPY_HEADER`], and each shape (with checked products)
/// against the bytes of its array.
pub fn read_npz(path: impl AsRef<Path>) -> Result<HashMap<String, NpzArray>> {
    let path = path.as_ref();
    let format = |message: String| Error::Format {
        path: path.into(),
        expected: "NumPy .npz",
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut zip =
        zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| format(e.to_string()))?;
    if zip.len() > MAX_NPZ_ARRAYS {
        return Err(format(format!(
            "{} entries; at most {MAX_NPZ_ARRAYS} are read",
            zip.len()
        )));
    }
    let mut budget = MAX_NPZ_BYTES;
    let mut arrays = HashMap::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| format(e.to_string()))?;
        let name = entry.name().map_err(|e| format(e.to_string()))?;
        let name = name.trim_end_matches(".npy").to_string();
        let declared = entry.size();
        let packed = entry.compressed_size();
        let holds = match entry.compression() {
            zip::CompressionMethod::Stored => packed,
            _ => packed.saturating_mul(MAX_DEFLATE_RATIO).saturating_add(64),
        };
        if declared > budget || declared > holds || packed > file_len {
            return Err(format(format!(
                "array `{name}` declares {declared} bytes ({packed} compressed, in a file of \
                 {file_len}); the compressed bytes can hold at most {holds}, and all arrays \
                 together at most {MAX_NPZ_BYTES}"
            )));
        }
        budget -= declared;
        // Read no more than declared (one byte more reveals an entry longer than it says).
        let mut bytes = Vec::new();
        (&mut entry)
            .take(declared + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format(format!("array `{name}`: {e}")))?;
        if bytes.len() as u64 != declared {
            return Err(format(format!(
                "array `{name}` holds {} bytes; its entry declares {declared}",
                bytes.len()
            )));
        }
        let array = parse_npy(&bytes).map_err(|e| format(format!("array `{name}`: {e}")))?;
        if arrays.insert(name.clone(), array).is_some() {
            return Err(format(format!("array `{name}` appears twice")));
        }
    }
    Ok(arrays)
}

/// The element types read from `.npy` files.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Dtype {
    F32 {
        little: bool,
    },
    F64 {
        little: bool,
    },
    U8,
    Bool,
    /// Integers of `bytes` bytes other than uint8 (class labels are often int64).
    Int {
        bytes: usize,
        signed: bool,
        little: bool,
    },
}

impl Dtype {
    fn parse(descr: &str) -> std::result::Result<Self, String> {
        let (order, kind) = descr.split_at_checked(1).unwrap_or(("", descr));
        let little = match order {
            "<" | "|" | "=" => true,
            ">" => false,
            _ => return Err(format!("dtype `{descr}`; expected e.g. '<f4'")),
        };
        match kind {
            "f4" => Ok(Dtype::F32 { little }),
            "f8" => Ok(Dtype::F64 { little }),
            "u1" => Ok(Dtype::U8),
            "b1" => Ok(Dtype::Bool),
            "i1" | "i2" | "i4" | "i8" | "u2" | "u4" | "u8" => Ok(Dtype::Int {
                bytes: usize::from(kind.as_bytes()[1] - b'0'),
                signed: kind.starts_with('i'),
                little,
            }),
            _ => Err(format!(
                "dtype `{descr}`; expected float32, float64, an integer type or bool"
            )),
        }
    }

    fn size(self) -> usize {
        match self {
            Dtype::F32 { .. } => 4,
            Dtype::F64 { .. } => 8,
            Dtype::U8 | Dtype::Bool => 1,
            Dtype::Int { bytes, .. } => bytes,
        }
    }

    fn convert(self, bytes: &[u8]) -> std::result::Result<Vec<f32>, String> {
        let values = bytes.chunks_exact(self.size());
        Ok(match self {
            Dtype::F32 { little } => values
                .map(|b| {
                    let b = [b[0], b[1], b[2], b[3]];
                    if little {
                        f32::from_le_bytes(b)
                    } else {
                        f32::from_be_bytes(b)
                    }
                })
                .collect(),
            Dtype::F64 { little } => values
                .map(|b| {
                    let b = [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
                    (if little {
                        f64::from_le_bytes(b)
                    } else {
                        f64::from_be_bytes(b)
                    }) as f32
                })
                .collect(),
            Dtype::U8 => bytes.iter().map(|&b| f32::from(b)).collect(),
            Dtype::Int {
                bytes: n,
                signed,
                little,
            } => values
                .map(|b| {
                    // The value in the low `n` bytes of a little-endian u64, sign-extended.
                    let mut word = [0u8; 8];
                    word[..n].copy_from_slice(b);
                    if !little {
                        word[..n].reverse();
                    }
                    let shift = 64 - 8 * n as u32;
                    let raw = u64::from_le_bytes(word) << shift;
                    if signed {
                        ((raw as i64) >> shift) as f32
                    } else {
                        (raw >> shift) as f32
                    }
                })
                .collect(),
            Dtype::Bool => {
                if let Some(b) = bytes.iter().find(|&&b| b > 1) {
                    return Err(format!("bool value {b}; expected 0 or 1"));
                }
                bytes.iter().map(|&b| f32::from(b)).collect()
            }
        })
    }
}

/// Parses one `.npy` file held whole in `bytes`.
pub(crate) fn parse_npy(bytes: &[u8]) -> std::result::Result<NpzArray, String> {
    if bytes.get(..6) != Some(NPY_MAGIC) {
        return Err("not a .npy array (no \\x93NUMPY magic)".into());
    }
    let (len, start) = match (bytes.get(6), bytes.get(7)) {
        (Some(1), Some(_)) => (
            bytes
                .get(8..10)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize),
            10,
        ),
        (Some(2 | 3), Some(_)) => (
            bytes
                .get(8..12)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize),
            12,
        ),
        (major, _) => return Err(format!("format version {major:?}; expected 1, 2 or 3")),
    };
    let len = len.ok_or("the header is cut short")?;
    if len > MAX_NPY_HEADER {
        return Err(format!(
            "header of {len} bytes; at most {MAX_NPY_HEADER} are read"
        ));
    }
    let header = bytes
        .get(start..start + len)
        .ok_or_else(|| format!("header of {len} bytes in an array of {}", bytes.len()))?;
    let header = std::str::from_utf8(header).map_err(|_| "the header is not UTF-8")?;
    let (descr, fortran, shape) = parse_header(header)?;
    let dtype = Dtype::parse(&descr)?;
    if shape.len() > MAX_NDIM {
        return Err(format!("{} dimensions; at most {MAX_NDIM}", shape.len()));
    }
    let body = &bytes[start + len..];
    let needed = element_count(&shape).and_then(|n| n.checked_mul(dtype.size()));
    if needed != Some(body.len()) {
        return Err(format!(
            "shape {shape:?} of {descr} needs {} data bytes, the array holds {}",
            needed.map_or("more than 2^64".into(), |n| n.to_string()),
            body.len()
        ));
    }
    let data = dtype.convert(body)?;
    let data = match (fortran, shape.as_slice()) {
        // Column-major on disk: transpose into C order.
        (true, &[rows, cols]) => (0..data.len())
            .map(|k| data[(k % cols) * rows + k / cols])
            .collect(),
        (true, s) if s.len() > 2 => {
            return Err(
                "Fortran-ordered arrays of more than 2 dimensions are not supported".into(),
            );
        }
        _ => data,
    };
    Ok(NpzArray { shape, data })
}

/// The `descr`, `fortran_order` and `shape` of a `.npy` header, a Python dict literal such as
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
fn parse_header(text: &str) -> std::result::Result<(String, bool, Vec<usize>), String> {
    let mut p = Literal {
        s: text.trim_end().as_bytes(),
        at: 0,
    };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    p.expect(b'{')?;
    while !p.eat(b'}') {
        let key = p.string()?;
        p.expect(b':')?;
        match key.as_str() {
            "descr" => descr = Some(p.string()?),
            "fortran_order" => fortran = Some(p.boolean()?),
            "shape" => shape = Some(p.tuple()?),
            other => {
                return Err(format!(
                    "header key `{other}`; expected descr, fortran_order, shape"
                ));
            }
        }
        if !p.eat(b',') {
            p.expect(b'}')?;
            break;
        }
    }
    p.space();
    if p.at != p.s.len() {
        return Err("text after the header dict".into());
    }
    match (descr, fortran, shape) {
        (Some(d), Some(f), Some(s)) => Ok((d, f, s)),
        _ => Err("the header lacks descr, fortran_order or shape".into()),
    }
}

/// A cursor over the few Python literals of a `.npy` header.
struct Literal<'a> {
    s: &'a [u8],
    at: usize,
}

impl Literal<'_> {
    fn space(&mut self) {
        while self.s.get(self.at).is_some_and(|c| c.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.space();
        let hit = self.s.get(self.at) == Some(&c);
        self.at += usize::from(hit);
        hit
    }

    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!(
                "header: expected `{}` at byte {}",
                char::from(c),
                self.at
            ))
        }
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        self.space();
        let quote = match self.s.get(self.at) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("header: expected a string at byte {}", self.at)),
        };
        let start = self.at + 1;
        let len = self.s[start..]
            .iter()
            .position(|&c| c == quote)
            .ok_or("header: unterminated string")?;
        self.at = start + len + 1;
        String::from_utf8(self.s[start..start + len].to_vec())
            .map_err(|_| "header: string is not UTF-8".into())
    }

    fn boolean(&mut self) -> std::result::Result<bool, String> {
        self.space();
        for (word, value) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.s[self.at..].starts_with(word) {
                self.at += word.len();
                return Ok(value);
            }
        }
        Err(format!(
            "header: expected True or False at byte {}",
            self.at
        ))
    }

    fn tuple(&mut self) -> std::result::Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut sizes = Vec::new();
        while !self.eat(b')') {
            self.space();
            let digits = self.s[self.at..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if digits == 0 || sizes.len() == MAX_NDIM {
                return Err(format!(
                    "header: expected a size at byte {} (at most {MAX_NDIM})",
                    self.at
                ));
            }
            let text = std::str::from_utf8(&self.s[self.at..self.at + digits]).unwrap_or("");
            let size = text
                .parse::<usize>()
                .map_err(|_| format!("header: size {text} is too large"))?;
            sizes.push(size);
            self.at += digits;
            // Python 2 wrote long integers with an `L`.
            self.eat(b'L');
            if !self.eat(b',') {
                self.expect(b')')?;
                break;
            }
        }
        Ok(sizes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_as_numpy_writes_them() {
        let cases = [
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }",
                ("<f4", false, vec![3, 4]),
            ),
            (
                "{'descr': '|u1', 'fortran_order': True, 'shape': (7,), }",
                ("|u1", true, vec![7]),
            ),
            (
                "{\"descr\":\">f8\",\"shape\":(),\"fortran_order\":False}",
                (">f8", false, vec![]),
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (2L, 3L)}   ",
                ("<f8", false, vec![2, 3]),
            ),
        ];
        for (text, (d, f, s)) in cases {
            assert_eq!(parse_header(text), Ok((d.to_string(), f, s)), "{text}");
        }
        for bad in [
            "",
            "{",
            "{'descr': '<f4'}",
            "{'descr': '<f4', 'fortran_order': Nope, 'shape': (1,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} x",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}",
            "{'descr: '<f4'",
        ] {
            assert!(parse_header(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn written_arrays_parse_back() {
        for shape in [vec![], vec![5], vec![2, 3], vec![2, 0, 4]] {
            let n = element_count(&shape).unwrap();
            let data: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 1.0).collect();
            let bytes = npy_bytes(&shape, &data);
            assert_eq!((bytes.len() - 4 * n) % 64, 0);
            let back = parse_npy(&bytes).unwrap();
            assert_eq!(back, NpzArray { shape, data });
        }
    }

    /// A shape whose product wraps around to the bytes present is refused (it made the loaders
    /// write out of bounds through a dependency that multiplied unchecked).
    #[test]
    fn wrapping_shapes_are_refused() {
        let mut bytes = npy_bytes(&[2], &[1.0, 2.0]);
        let header =
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 6148914691236517206), }";
        let mut npy = b"\x93NUMPY\x01\x00".to_vec();
        npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
        npy.extend_from_slice(header.as_bytes());
        npy.extend_from_slice(&bytes.split_off(bytes.len() - 8));
        let err = parse_npy(&npy).unwrap_err();
        assert!(err.contains("more than 2^64"), "{err}");
    }

    /// Integer arrays (labels are often int64) of either byte order become their values.
    #[test]
    fn integer_arrays_are_read_as_their_values() {
        let npy = |descr: &str, n: usize, data: &[u8]| {
            let header =
                format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({n},), }}");
            let mut npy = b"\x93NUMPY\x01\x00".to_vec();
            npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
            npy.extend_from_slice(header.as_bytes());
            npy.extend_from_slice(data);
            parse_npy(&npy).unwrap().data
        };
        let i64s: Vec<u8> = [-3i64, 7, 9].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(npy("<i8", 3, &i64s), [-3.0, 7.0, 9.0]);
        assert_eq!(npy(">u2", 2, &[1, 2, 255, 255]), [258.0, 65535.0]);
        assert_eq!(npy("|i1", 2, &[255, 5]), [-1.0, 5.0]);
        let i32s: Vec<u8> = [-70_000i32, 1]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        assert_eq!(npy(">i4", 2, &i32s), [-70_000.0, 1.0]);
        assert_eq!(npy("<u8", 1, &u64::MAX.to_le_bytes()), [u64::MAX as f32]);
    }
}
