//! What the MNIST examples share: the run settings stored beside a checkpoint, so that
//! `--resume DIR` continues a run with the settings that started it.
#![allow(dead_code)] // each example uses part of it

use boltzmann::Error;
use serde::{Serialize, de::DeserializeOwned};
use std::path::Path;

/// The file in an output directory that holds the run's settings.
pub const ARGS_FILE: &str = "args.json";

/// Writes the settings `args` to `dir/args.json`.
pub fn save_args(dir: &Path, args: &impl Serialize) -> boltzmann::Result<()> {
    let path = dir.join(ARGS_FILE);
    let text = serde_json::to_string_pretty(args)
        .map_err(|e| Error::invalid("settings", e.to_string()))?;
    std::fs::write(&path, text).map_err(|e| Error::Io { path, source: e })
}

/// Reads the settings of the run in `dir`.
pub fn load_args<A: DeserializeOwned>(dir: &Path, what: &'static str) -> boltzmann::Result<A> {
    let path = dir.join(ARGS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Io {
        path: path.clone(),
        source: e,
    })?;
    serde_json::from_str(&text).map_err(|e| Error::Format {
        path,
        expected: what,
        message: e.to_string(),
    })
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

    /// The output directory (`out/<example>` by default), created if missing.
    pub fn out_dir(&self, example: &str) -> boltzmann::Result<std::path::PathBuf> {
        let out = self
            .out
            .clone()
            .unwrap_or_else(|| Path::new("out").join(example));
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
