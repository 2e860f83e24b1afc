//! What the MNIST examples share: the run settings stored beside a checkpoint, so that
//! `--resume DIR` continues a run with the settings that started it.
#![allow(dead_code)] // each example uses part of it

use boltzmann::Error;
use serde::{Serialize, de::DeserializeOwned};
use std::path::Path;

/// The file in an output directory that holds the run's settings.
pub const ARGS_FILE: &str = "args.json";

/// The longest `args.json` read.
const MAX_ARGS_BYTES: u64 = 1 << 20;

/// Writes the settings `args` to `dir/args.json`, atomically (call it only once the settings
/// have been validated, so that a run refused at the door leaves an earlier run's file intact).
pub fn save_args(dir: &Path, args: &impl Serialize) -> boltzmann::Result<()> {
    let text = serde_json::to_string_pretty(args)
        .map_err(|e| Error::invalid("settings", e.to_string()))?;
    boltzmann::io::write_atomic(&dir.join(ARGS_FILE), text.as_bytes())
}

/// Reads the settings of the run in `dir` (the caller validates them as it validates flags).
pub fn load_args<A: DeserializeOwned>(dir: &Path, what: &'static str) -> boltzmann::Result<A> {
    use std::io::Read;
    let path = dir.join(ARGS_FILE);
    let io = |e| Error::Io {
        path: path.clone(),
        source: e,
    };
    let mut text = String::new();
    std::fs::File::open(&path)
        .map_err(io)?
        .take(MAX_ARGS_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_ARGS_BYTES {
        return Err(Error::Format {
            path,
            expected: what,
            message: format!("longer than {MAX_ARGS_BYTES} bytes"),
        });
    }
    serde_json::from_str(&text).map_err(|e| Error::Format {
        path,
        expected: what,
        message: e.to_string(),
    })
}

/// Checks that the count given by `flag` lies in `min..=max`.
pub fn count_in(flag: &'static str, value: usize, min: usize, max: usize) -> boltzmann::Result<()> {
    let expected = if max == usize::MAX {
        format!("at least {min}")
    } else {
        format!("{min} to {max}")
    };
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(Error::invalid(
            flag,
            format!("{value}; expected {expected}"),
        ))
    }
}

/// Checks that the number given by `flag` is finite and lies in `min..=max`.
pub fn number_in(flag: &'static str, value: f64, min: f64, max: f64) -> boltzmann::Result<()> {
    if value.is_finite() && (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(Error::invalid(
            flag,
            format!("{value}; expected a value from {min} to {max}"),
        ))
    }
}

/// The most units a layer of the examples may have, chains or AIS runs they may run, and sweeps
/// they may ask for: far above any useful setting, low enough to fail at the door.
pub const MAX_UNITS: usize = 100_000;
pub const MAX_CHAINS: usize = 100_000;
pub const MAX_SWEEPS: usize = 10_000_000;

/// The most values (f32) the chains, AIS runs or traces that the settings ask for may hold
/// together (8 GiB), so that settings beyond the machine fail at the door.
pub const MAX_STATE_VALUES: usize = 1 << 31;

/// Checks that `what`, which holds `count` values of `units` each, stays within
/// [`MAX_STATE_VALUES`].
pub fn fits_memory(what: &'static str, count: usize, units: usize) -> boltzmann::Result<()> {
    match count.checked_mul(units) {
        Some(n) if n <= MAX_STATE_VALUES => Ok(()),
        _ => Err(Error::invalid(
            what,
            format!(
                "{count} × {units} values; at most {MAX_STATE_VALUES} are allowed (lower the counts)"
            ),
        )),
    }
}

/// An optional setting where 0 means "none".
pub fn zero_is_none(value: Option<f64>) -> Option<f64> {
    value.filter(|&x| x != 0.0)
}

/// Parses the command line, runs `run` and exits with status 1 and the error's message if it
/// fails.
pub fn main<A: clap::Parser>(run: fn(A) -> boltzmann::Result<()>) {
    if let Err(e) = run(A::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Output, checkpoint and resume options of the training examples.
#[derive(clap::Args, Debug, Serialize, serde::Deserialize)]
pub struct RunOptions {
    /// Output directory [default: the `--resume` directory, else out/<example>].
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// Save a training checkpoint every N epochs (and after the last) to `checkpoint.bin`.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub checkpoint_every: usize,
    /// Continue the run checkpointed in DIR (with its settings, read from DIR/args.json) up to
    /// `--epochs` epochs in total.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<std::path::PathBuf>,
    /// End with one JSON line of results on standard output.
    #[arg(long)]
    pub json: bool,
}

impl RunOptions {
    /// This invocation's options for a run resumed from `dir`: the output goes there unless
    /// `--out` says otherwise.
    pub fn resumed_in(self, dir: &Path) -> Self {
        RunOptions {
            out: self.out.or_else(|| Some(dir.to_path_buf())),
            ..self
        }
    }

    /// The output directory (`out/<example>` by default).
    pub fn out_path(&self, example: &str) -> std::path::PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| Path::new("out").join(example))
    }

    /// Checks the options.
    pub fn validate(&self) -> boltzmann::Result<()> {
        count_in("--checkpoint-every", self.checkpoint_every, 1, usize::MAX)
    }

    /// The output directory (`out/<example>` by default), created if missing.
    pub fn out_dir(&self, example: &str) -> boltzmann::Result<std::path::PathBuf> {
        let out = self.out_path(example);
        std::fs::create_dir_all(&out).map_err(|e| Error::Io {
            path: out.clone(),
            source: e,
        })?;
        Ok(out)
    }

    /// Checkpoints into `out/checkpoint.bin` at the chosen interval.
    pub fn checkpointing(&self, out: &Path) -> boltzmann::train::Checkpointing {
        boltzmann::train::Checkpointing {
            path: out.join("checkpoint.bin"),
            every: self.checkpoint_every,
        }
    }
}

/// Hostile `args.json` files: mutants of an example's default settings must load and validate
/// to `Ok` or a typed error, never a panic (`BOLTZMANN_FUZZ_RUNS` inputs, default 2,000).
#[cfg(test)]
pub fn fuzz_args_json<A: Serialize + DeserializeOwned>(
    defaults: &A,
    validate: impl Fn(A) -> boltzmann::Result<()>,
) {
    let runs: usize = std::env::var("BOLTZMANN_FUZZ_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    let dir = std::env::temp_dir().join(format!("boltzmann-args-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let seed = serde_json::to_string_pretty(defaults).unwrap().into_bytes();
    let numbers = [
        "0",
        "-1",
        "1e308",
        "-1e308",
        "18446744073709551615",
        "1.5",
        "1e-45",
        "null",
        "true",
        "\"x\"",
        "[]",
        "4294967296",
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut ok, mut errors) = (0, 0);
    for _ in 0..runs {
        let mut text = seed.clone();
        for _ in 0..1 + next() % 3 {
            let at = (next() as usize) % text.len().max(1);
            match next() % 4 {
                // A value replaced: after a colon, up to the next comma or newline.
                0 | 1 => {
                    if let Some(colon) = text[at..].iter().position(|&c| c == b':') {
                        let start = at + colon + 1;
                        let end = text[start..]
                            .iter()
                            .position(|&c| c == b',' || c == b'\n')
                            .map_or(text.len(), |e| start + e);
                        let v = numbers[(next() as usize) % numbers.len()];
                        text.splice(start..end, format!(" {v}").into_bytes());
                    }
                }
                2 if !text.is_empty() => text[at] ^= 1 << (next() % 8),
                _ => text.truncate(at),
            }
        }
        std::fs::write(dir.join(ARGS_FILE), &text).unwrap();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            load_args::<A>(&dir, "settings").and_then(&validate)
        }));
        match outcome {
            Ok(Ok(())) => ok += 1,
            Ok(Err(_)) => errors += 1,
            Err(_) => panic!(
                "args.json made validation panic:\n{}",
                String::from_utf8_lossy(&text)
            ),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("fuzz args.json: {runs} executions ({ok} ok, {errors} typed errors), 0 panics");
}
