//! What the MNIST examples share: the run settings stored beside a checkpoint, so that
//! `--resume DIR` continues a run with the settings that started it.
#![allow(dead_code)] // each example uses part of it

mod data;

pub use data::{Data, DataOptions, Visible};

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
    let path = dir.join(ARGS_FILE);
    let text = read_text(&path, MAX_ARGS_BYTES, what)?;
    serde_json::from_str(&text).map_err(|e| Error::Format {
        path,
        expected: what,
        message: e.to_string(),
    })
}

/// The text of `path`, refused if it is longer than `max` bytes.
fn read_text(path: &Path, max: u64, what: &'static str) -> boltzmann::Result<String> {
    use std::io::Read;
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(max + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > max {
        return Err(Error::Format {
            path: path.to_path_buf(),
            expected: what,
            message: format!("longer than {max} bytes"),
        });
    }
    Ok(text)
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

/// Learning-rate schedules ([`LearningRate`](boltzmann::train::LearningRate)), as flags.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// The same rate in every epoch.
    #[default]
    Constant,
    /// `lr / (1 + (epoch − 1) / half-life)`.
    InverseTime,
    /// `max(lr · factor^(epoch − 1), floor)`.
    Geometric,
    /// Linearly down towards zero over the run.
    Linear,
}

impl Schedule {
    /// The schedule from `initial` with the flags' parameters, over a run of `epochs` epochs.
    pub fn learning_rate(
        self,
        initial: f64,
        half_life: f64,
        factor: f64,
        floor: f64,
        epochs: usize,
    ) -> boltzmann::train::LearningRate {
        use boltzmann::train::LearningRate;
        let initial = initial as f32;
        match self {
            Schedule::Constant => LearningRate::Constant(initial),
            Schedule::InverseTime => LearningRate::InverseTime {
                initial,
                half_life: half_life as f32,
            },
            Schedule::Geometric => LearningRate::Geometric {
                initial,
                factor: factor as f32,
                floor: floor as f32,
            },
            Schedule::Linear => LearningRate::Linear { initial, epochs },
        }
    }
}

impl Schedule {
    /// The epochs of a resumed run: `--epochs` as given, except that a linear schedule keeps the
    /// length it was started with, since its rates are defined by that length.
    pub fn resumed_epochs(self, saved: usize, now: usize) -> usize {
        match self {
            Schedule::Linear => saved,
            _ => now,
        }
    }
}

/// The per-epoch metrics of a training run in its output directory: `metrics.jsonl` (one JSON
/// object per epoch, the library's metrics with their field names) and `metrics.png` (a panel per plotted metric),
/// both rewritten after every epoch so that a long run can be watched. A resumed run keeps the
/// earlier epochs' lines up to where it continues.
pub struct MetricsLog {
    dir: std::path::PathBuf,
    /// `(JSON pointer, panel title)` of each plotted metric.
    plotted: &'static [(&'static str, &'static str)],
    rows: Vec<serde_json::Value>,
    /// The first failure to write, reported by [`MetricsLog::finish`]: training goes on.
    failed: Option<Error>,
}

/// The file of [`MetricsLog`]'s lines, and the longest one read back on resume.
pub const METRICS_FILE: &str = "metrics.jsonl";
const MAX_METRICS_BYTES: u64 = 64 << 20;

impl MetricsLog {
    /// A log in `dir`; when `resumed`, the lines already in `dir/metrics.jsonl`.
    pub fn start(
        dir: &Path,
        resumed: bool,
        plotted: &'static [(&'static str, &'static str)],
    ) -> boltzmann::Result<MetricsLog> {
        let path = dir.join(METRICS_FILE);
        let mut rows = Vec::new();
        if resumed && path.exists() {
            let text = read_text(&path, MAX_METRICS_BYTES, "metrics lines")?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let row: serde_json::Value =
                    serde_json::from_str(line).map_err(|e| Error::Format {
                        path: path.clone(),
                        expected: "metrics lines",
                        message: e.to_string(),
                    })?;
                rows.push(row);
            }
        }
        Ok(MetricsLog {
            dir: dir.to_path_buf(),
            plotted,
            rows,
            failed: None,
        })
    }

    /// Adds one epoch's metrics (dropping any earlier lines from that epoch on) and rewrites
    /// both files.
    pub fn push(&mut self, metrics: &impl Serialize) {
        let row = match serde_json::to_value(metrics) {
            Ok(row) => row,
            Err(e) => {
                self.failed
                    .get_or_insert(Error::invalid("metrics", e.to_string()));
                return;
            }
        };
        let epoch = row["epoch"].as_u64().unwrap_or(u64::MAX);
        self.rows
            .retain(|r| r["epoch"].as_u64().is_some_and(|e| e < epoch));
        self.rows.push(row);
        if self.failed.is_none()
            && let Err(e) = self.write()
        {
            self.failed = Some(e);
        }
    }

    fn write(&self) -> boltzmann::Result<()> {
        let mut text = String::new();
        for row in &self.rows {
            text.push_str(&row.to_string());
            text.push('\n');
        }
        boltzmann::io::write_atomic(&self.dir.join(METRICS_FILE), text.as_bytes())?;
        let curves: Vec<boltzmann::image::Curve> = self
            .plotted
            .iter()
            .map(|&(field, title)| boltzmann::image::Curve {
                title: title.to_string(),
                points: self
                    .rows
                    .iter()
                    .filter_map(|r| Some((r["epoch"].as_f64()?, r.pointer(field)?.as_f64()?)))
                    .collect(),
            })
            .collect();
        boltzmann::image::save_curves(self.dir.join("metrics.png"), &curves)
    }

    /// The first error met in writing, if any.
    pub fn finish(self) -> boltzmann::Result<()> {
        match self.failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The epoch line's note of trajectory AIS: `ln Ẑ` and the log-probability (`what`) it gives.
pub fn trajectory_note(
    estimate: Option<&boltzmann::train::TrajectoryEstimate>,
    what: &str,
    value: impl Fn(&boltzmann::train::TrajectoryEstimate) -> Option<f64>,
) -> String {
    estimate.map_or(String::new(), |t| {
        format!(
            "  ln Ẑ {:.2} (trajectory), {what} ≈ {:.2}",
            t.log_z,
            value(t).unwrap_or(f64::NAN)
        )
    })
}

/// Classifies `samples` (one example per column) by the nearest class mean of the test
/// examples, prints the histogram and returns the fractions per class; `None` for data without
/// labels.
pub fn sample_classes(
    samples: &nalgebra::DMatrix<f32>,
    data: &Data,
) -> boltzmann::Result<Option<Vec<f64>>> {
    let (Some((_, test_labels)), Some(classes)) = (&data.labels, data.classes()) else {
        return Ok(None);
    };
    let labels: Vec<usize> = test_labels.iter().map(|&l| usize::from(l)).collect();
    let fractions = boltzmann::diagnostics::class_fractions(samples, &data.test, &labels, classes)?;
    println!(
        "samples by class (nearest class mean of the test examples), 0–{}: {}",
        classes - 1,
        fractions
            .iter()
            .map(|f| format!("{:.1} %", 100.0 * f))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(Some(fractions))
}

/// The keys every example's JSON line gives an evaluation, one name per quantity:
/// `log_z` (forward AIS) with `log_z_lower` / `log_z_upper`, `ais_ess`,
/// `ais_log_weight_variance`, `log_z_reverse` and `log_z_reverse_ess` (reverse AIS, `null`
/// without it), `test_log_prob` / `train_log_prob` with their `_stderr` and `_reverse` (the same
/// averages with the reverse-AIS `ln Ẑ`), `log_prob_is_lower_bound` (true where the per-example
/// values are variational bounds: more than one hidden layer) and `log_z_floor`.
pub fn evaluation_json(e: Option<&boltzmann::partition::Evaluation>) -> serde_json::Value {
    let reverse = e.and_then(|e| e.reverse.as_ref());
    serde_json::json!({
        "log_z": e.map(|e| e.forward.log_z),
        "log_z_lower": e.map(|e| e.forward.log_z_lower),
        "log_z_upper": e.map(|e| e.forward.log_z_upper),
        "ais_ess": e.map(|e| e.forward.effective_sample_size),
        "ais_log_weight_variance": e.map(|e| e.forward.log_weight_variance),
        "log_z_reverse": reverse.map(|r| r.log_z),
        "log_z_reverse_ess": reverse.map(|r| r.effective_sample_size),
        "test_log_prob": e.map(|e| e.test.mean),
        "test_log_prob_stderr": e.map(|e| e.test.stderr),
        "test_log_prob_reverse": e.and_then(|e| e.test_reverse()),
        "train_log_prob": e.map(|e| e.train.mean),
        "train_log_prob_stderr": e.map(|e| e.train.stderr),
        "train_log_prob_reverse": e.and_then(|e| e.train_reverse()),
        "log_prob_is_lower_bound": e.map(|e| e.lower_bounds),
        "log_z_floor": e.map(|e| e.log_z_floor),
    })
}

/// `fields` followed by the entries of each object in `more`: one JSON line from parts.
pub fn json_line(fields: serde_json::Value, more: &[serde_json::Value]) -> String {
    let mut line = fields;
    for part in more {
        if let (Some(line), Some(part)) = (line.as_object_mut(), part.as_object()) {
            line.extend(part.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    line.to_string()
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
    /// Save a training checkpoint every N epochs (and after the last) to `checkpoint.safetensors`.
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

    /// Checkpoints into `out/checkpoint.safetensors` at the chosen interval.
    pub fn checkpointing(&self, out: &Path) -> boltzmann::train::Checkpointing {
        boltzmann::train::Checkpointing {
            path: out.join("checkpoint.safetensors"),
            every: self.checkpoint_every,
        }
    }
}

/// Trajectory AIS along training (`ln Z` followed from epoch to epoch), as flags.
#[derive(clap::Args, Debug, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TrajectoryOptions {
    /// Runs of trajectory AIS, which follows ln Z from epoch to epoch and so the
    /// log-probability (or, for a DBM, its variational bound) along training (0: none). On
    /// MNIST its runs lag behind a fast-moving model and it underestimates ln Z by tens of nats
    /// (README, "Training curves"): a diagnostic to check against the final AIS, not a result.
    #[arg(long, default_value_t = 0)]
    pub trajectory_runs: usize,
    /// Intermediate models (one Gibbs sweep each) of trajectory AIS from one epoch's model to the
    /// next.
    #[arg(long, default_value_t = 100)]
    pub trajectory_steps: usize,
    /// Intermediate models of trajectory AIS's start, a full AIS run to the first model from its
    /// layers alone.
    #[arg(long, default_value_t = 1000)]
    pub trajectory_start_steps: usize,
}

impl Default for TrajectoryOptions {
    fn default() -> Self {
        TrajectoryOptions {
            trajectory_runs: 0,
            trajectory_steps: 100,
            trajectory_start_steps: 1000,
        }
    }
}

impl TrajectoryOptions {
    /// The settings, or `None` without runs.
    pub fn settings(&self) -> Option<boltzmann::partition::TrajectorySettings> {
        (self.trajectory_runs > 0).then_some(boltzmann::partition::TrajectorySettings {
            runs: self.trajectory_runs,
            steps: self.trajectory_steps,
            start_steps: self.trajectory_start_steps,
        })
    }

    /// Checks the counts, for chains of `units` units each.
    pub fn validate(&self, units: usize) -> boltzmann::Result<()> {
        count_in("--trajectory-runs", self.trajectory_runs, 0, MAX_CHAINS)?;
        count_in("--trajectory-steps", self.trajectory_steps, 1, MAX_SWEEPS)?;
        count_in(
            "--trajectory-start-steps",
            self.trajectory_start_steps,
            1,
            MAX_SWEEPS,
        )?;
        fits_memory("--trajectory-runs", self.trajectory_runs, units)
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

/// A progress bar of `len` steps labelled `what`.
pub fn bar(len: usize, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64);
    let template = format!("{{elapsed_precise}} [{{bar:30}}] {what} {{pos}}/{{len}} {{msg}}");
    bar.set_style(
        indicatif::ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Progress of [`boltzmann::partition::evaluate`]: one bar per annealing run, labelled with
/// its stage, cleared when the run ends.
pub fn ais_progress() -> impl Fn(&'static str, usize, usize) + Sync {
    let bar = bar(0, "β steps");
    move |what, done, total| {
        bar.set_message(what);
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        if done == total {
            bar.finish_and_clear();
            bar.reset();
        }
    }
}

/// "  lowest swap rate r" of parallel tempering's rungs, or nothing without tempering.
pub fn lowest_swap_rate(rates: Option<&[f64]>) -> String {
    rates.map_or(String::new(), |r| {
        let lowest = r.iter().copied().fold(1.0, f64::min);
        format!("  lowest swap rate {lowest:.3}")
    })
}
