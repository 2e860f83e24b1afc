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
