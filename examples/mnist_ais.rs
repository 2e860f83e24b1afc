//! Evaluates a saved RBM (on MNIST or the data of `--data`) by annealed importance sampling: `ln Ẑ` with its bounds, the average
//! test and train log-probabilities in nats, optionally the reverse-AIS upper estimate and the
//! exact `ln Z` of small models.
//!
//! ```text
//! cargo run --release --example mnist_ais -- --model out/mnist_rbm/model.safetensors --json
//! ```

mod common;

use boltzmann::partition::{
    AisConfig, Betas, EvaluationConfig, ReverseStart, Start, evaluate, log_partition_exact,
};
use boltzmann::{Bernoulli, FromBias, Gaussian, Layer, Rbm};
use clap::Parser;
use common::Visible;
use std::path::PathBuf;
use std::time::Instant;

/// Estimate ln Z of an RBM by AIS (Salakhutdinov & Murray 2008) and report average
/// log-probabilities of MNIST (or your data) in nats.
#[derive(Parser, Debug, serde::Serialize)]
#[command(version, about)]
struct Args {
    /// The model: a model file (`.safetensors`) or NumPy parameters (`.npz` with W, b_visible, b_hidden).
    #[arg(long)]
    model: PathBuf,
    /// The data evaluated on, binarised stochastically with a fixed seed for Bernoulli units
    /// (0/1 data stays as it is).
    #[command(flatten)]
    #[serde(flatten)]
    data: common::DataOptions,
    /// AIS runs.
    #[arg(long, default_value_t = 100)]
    runs: usize,
    /// Total number of distributions, spaced by the paper's three-stage rule [default: the
    /// paper's schedule, 14,501].
    #[arg(long)]
    betas: Option<usize>,
    /// Also run reverse AIS from test images, an (approximate) upper estimate of ln Z.
    #[arg(long)]
    reverse: bool,
    /// Also compute ln Z exactly, when one layer is small enough to enumerate.
    #[arg(long)]
    exact: bool,
    /// Seed of the AIS runs (and of the binarisation of the data).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// End with one JSON line of results on standard output.
    #[arg(long)]
    json: bool,
}

fn main() {
    common::main(run);
}

fn run(args: Args) -> boltzmann::Result<()> {
    let started = Instant::now();
    common::count_in("--runs", args.runs, 1, common::MAX_CHAINS)?;
    let betas = match args.betas {
        Some(n) => Betas::three_stage(n)?,
        None => Betas::paper(),
    };
    let data = args.data.load()?;
    match data.visible {
        Visible::Bernoulli => evaluate_model::<Bernoulli>(&args, &data, betas, started),
        Visible::Gaussian => evaluate_model::<Gaussian>(&args, &data, betas, started),
    }
}

/// Evaluates the model of `args` (visible units `V`) on `data`.
fn evaluate_model<V: Layer + FromBias>(
    args: &Args,
    data: &common::Data,
    betas: Betas,
    started: Instant,
) -> boltzmann::Result<()> {
    let rbm: Rbm<V, Bernoulli> = if args.model.extension().is_some_and(|e| e == "npz") {
        Rbm::load_npz(&args.model)?
    } else {
        Rbm::load(&args.model)?
    };
    let (train, test) = data.fixed(args.seed)?;
    let config = EvaluationConfig {
        ais: AisConfig {
            runs: args.runs,
            betas,
            seed: args.seed,
        },
        // Reverse AIS from test images: ln Ẑ from above.
        reverse: args.reverse.then_some(ReverseStart {
            from_test: true,
            sweeps: 0,
        }),
        ..EvaluationConfig::default()
    };
    let start = Start::base_rate_default(&rbm, &train)?;
    let estimate = evaluate(&rbm, &start, &config, &train, &test, common::ais_progress())?;
    let forward = &estimate.forward;
    println!(
        "ln Ẑ = {:.3}  (mean ± 3 s.e. of the weights: [{:.3}, {:.3}]; ESS {:.1} of {} runs)",
        forward.log_z,
        forward.log_z_lower,
        forward.log_z_upper,
        forward.effective_sample_size,
        args.runs
    );
    println!(
        "test log-probability  {:.3} ± {:.3} nats",
        estimate.test.mean, estimate.test.stderr
    );
    println!(
        "train log-probability {:.3} ± {:.3} nats",
        estimate.train.mean, estimate.train.stderr
    );
    if let Some(r) = &estimate.reverse {
        println!(
            "reverse AIS from test images: ln Ẑ = {:.3} (an upper estimate)",
            r.log_z
        );
    }
    let exact = if args.exact {
        match log_partition_exact(&rbm) {
            Ok(log_z) => {
                println!("exact ln Z = {log_z:.3}");
                Some(log_z)
            }
            Err(e @ boltzmann::Error::NotEnumerable { .. }) => {
                println!("no exact ln Z: {e}");
                None
            }
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    if args.json {
        let json = serde_json::json!({
            "example": "mnist_ais",
            "settings": &args,
            "seed": args.seed,
            "betas": config.ais.betas.len(),
            "log_z_exact": exact,
            "seconds": started.elapsed().as_secs_f64(),
        });
        let json = common::json_line(json, &[common::evaluation_json(Some(&estimate))]);
        println!("{json}");
    }
    Ok(())
}
