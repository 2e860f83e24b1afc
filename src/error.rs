//! The one error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong in `boltzmann`. Each message says what was wrong and what was
/// expected, so that it can be shown to a user as it is.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Two arrays that must agree in size do not.
    #[error("shape mismatch in {what}: expected {expected}, found {found}")]
    Shape {
        what: &'static str,
        expected: String,
        found: String,
    },
    /// A value (data, parameter or setting) is outside what is allowed.
    #[error("invalid {what}: {message}")]
    Invalid { what: &'static str, message: String },
    /// Data or parameters contain NaN or infinity.
    #[error("{what} contains a non-finite value at index {index}; all values must be finite")]
    NonFinite { what: &'static str, index: usize },
    /// A dataset with no examples where at least one is needed.
    #[error("{what} is empty; at least one example is needed")]
    Empty { what: &'static str },
    /// Training produced NaN or infinite parameters; the model was left as it was before that epoch.
    #[error(
        "training diverged in epoch {epoch}: {what} became non-finite; lower the learning rate (model left as after epoch {last_good})",
        last_good = epoch.saturating_sub(1)
    )]
    Diverged { epoch: usize, what: &'static str },
    /// The layer cannot be enumerated (continuous units, or too many states).
    #[error("cannot enumerate {what}: {message}")]
    NotEnumerable { what: &'static str, message: String },
    /// A file that is not what it should be (foreign magic bytes, wrong type code, bad header).
    #[error("{path}: not a {expected} file ({message})")]
    Format {
        path: PathBuf,
        expected: &'static str,
        message: String,
    },
    /// A model file written by a newer (or unknown) format version.
    #[error(
        "{path}: model file format version {found} is not supported (this build reads versions up to {supported})"
    )]
    Version {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// A model file that holds another kind of model than the one asked for.
    #[error("{path}: the file holds a model of kind `{found}`, expected `{expected}`")]
    Kind {
        path: PathBuf,
        found: String,
        expected: String,
    },
    /// A file that ends before its header says it should.
    #[error("{path}: file is truncated: expected {expected} bytes, found {found}")]
    Truncated {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    /// The payload does not match the checksum in the header.
    #[error(
        "{path}: checksum mismatch (stored {stored:016x}, computed {computed:016x}); the file is corrupted"
    )]
    Checksum {
        path: PathBuf,
        stored: u64,
        computed: u64,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A long computation stopped because its progress callback asked it to (see [`Flow`]).
    #[error("{what} was stopped by its progress callback")]
    Stopped { what: &'static str },
}

/// What a monitor or progress callback returns: `()` to go on, or a [`ControlFlow`] whose
/// `Break` stops the computation (training keeps the epoch just reported; an estimate that
/// cannot be finished returns [`Error::Stopped`]).
///
/// [`ControlFlow`]: std::ops::ControlFlow
pub trait Flow {
    fn stops(self) -> bool;
}

impl Flow for () {
    fn stops(self) -> bool {
        false
    }
}

impl Flow for std::ops::ControlFlow<()> {
    fn stops(self) -> bool {
        self.is_break()
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Invalid`] for the setting or argument `what`.
    pub fn invalid(what: &'static str, message: impl Into<String>) -> Self {
        Error::Invalid {
            what,
            message: message.into(),
        }
    }

    /// An [`Error::Shape`] for `what`.
    pub fn shape(what: &'static str, expected: impl ToString, found: impl ToString) -> Self {
        Error::Shape {
            what,
            expected: expected.to_string(),
            found: found.to_string(),
        }
    }
}

/// The most values of one matrix that the crate allocates from sizes it is given (2³² f32:
/// 16 GiB), so that a mistyped size is an error rather than an abort.
pub const MAX_ELEMENTS: usize = 1 << 32;

/// Checks that `sizes` multiply (without overflow) to at most [`MAX_ELEMENTS`] values.
pub(crate) fn check_elements(what: &'static str, sizes: &[usize]) -> Result<()> {
    match sizes.iter().try_fold(1usize, |n, &s| n.checked_mul(s)) {
        Some(n) if n <= MAX_ELEMENTS => Ok(()),
        _ => Err(Error::invalid(
            what,
            format!("sizes {sizes:?} need more than {MAX_ELEMENTS} values"),
        )),
    }
}

/// Checks that every value is finite.
pub(crate) fn check_finite(what: &'static str, values: &[f32]) -> Result<()> {
    first_failing(values, |x| x.is_finite())
        .map_or(Ok(()), |index| Err(Error::NonFinite { what, index }))
}

/// [`check_finite`] for a column-major matrix that may be a view of borrowed memory; the index
/// is column-major, as for an owned matrix.
pub(crate) fn check_finite_columns(
    what: &'static str,
    x: nalgebra::DMatrixView<'_, f32>,
) -> Result<()> {
    let rows = x.nrows();
    x.column_iter().enumerate().try_for_each(|(c, column)| {
        first_failing(column.as_slice(), |v| v.is_finite()).map_or(Ok(()), |i| {
            Err(Error::NonFinite {
                what,
                index: c * rows + i,
            })
        })
    })
}

/// The index of the first value that fails `ok`. Blocks are checked without an early exit, which
/// vectorises (datasets have millions of values); only a failing block is searched.
pub(crate) fn first_failing(values: &[f32], ok: impl Fn(f32) -> bool) -> Option<usize> {
    const BLOCK: usize = 1024;
    values.chunks(BLOCK).enumerate().find_map(|(b, block)| {
        let all = block.iter().fold(true, |all, &x| all & ok(x));
        (!all).then(|| b * BLOCK + block.iter().position(|&x| !ok(x)).unwrap_or(0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first non-finite value is found wherever it lies relative to the blocks.
    #[test]
    fn check_finite_reports_the_first_bad_index() {
        let mut x = vec![1f32; 5000];
        assert!(check_finite("x", &x).is_ok());
        for (bad, first) in [
            (vec![4999], 4999),
            (vec![0, 3000], 0),
            (vec![3000, 1024], 1024),
        ] {
            x.fill(1.0);
            bad.iter().for_each(|&i| x[i] = f32::NAN);
            x[bad[0]] = f32::INFINITY;
            match check_finite("x", &x) {
                Err(Error::NonFinite { index, .. }) => assert_eq!(index, first),
                other => panic!("expected NonFinite at {first}, got {other:?}"),
            }
        }
    }
}
