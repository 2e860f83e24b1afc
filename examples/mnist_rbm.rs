//! Trains a Bernoulli RBM on MNIST and writes `model.bin`, `model.npz`, `samples.png` and
//! `filters.png`.
//!
//! ```text
//! cargo run --release --example mnist_rbm -- --hidden 500 --epochs 10 --cd 1 --json
//! ```

use boltzmann::data::Mnist;
use boltzmann::image::{Scale, save_tile_grid};
use boltzmann::partition::{AisConfig, Betas, Start, evaluate};
use boltzmann::train::{EpochMetrics, LearningRate, NegativePhase, Steps, TrainConfig, train};
use boltzmann::{Bernoulli, Chains, Rbm};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::Instant;

/// Train a Bernoulli–Bernoulli RBM on MNIST (stochastically binarised, a fresh draw per
/// minibatch) by CD-k or PCD.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Hidden units.
    #[arg(long, default_value_t = 500)]
    hidden: usize,
    /// Passes over the 60,000 training images.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Contrastive divergence with K Gibbs sweeps per update (the default, with K = 1).
    #[arg(long, value_name = "K", conflicts_with = "pcd")]
    cd: Option<usize>,
    /// Persistent CD with K Gibbs sweeps per update.
    #[arg(long, value_name = "K")]
    pcd: Option<usize>,
    /// Persistent chains for PCD (also the number of samples drawn at the end).
    #[arg(long, default_value_t = 100)]
    chains: usize,
    /// Minibatch size.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Learning rate (with momentum 0.5, then 0.9 from epoch 6).
    #[arg(long, default_value_t = 0.002)]
    lr: f64,
    /// Master seed of every random draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Gibbs sweeps of the chains that draw `samples.png`.
    #[arg(long, default_value_t = 1000)]
    sample_sweeps: usize,
    /// Skip the AIS evaluation of the trained model.
    #[arg(long)]
    no_ais: bool,
    /// AIS runs of the evaluation.
    #[arg(long, default_value_t = 100)]
    ais_runs: usize,
    /// Distributions of the AIS schedule (the paper's three-stage spacing) [default: the
    /// paper's 14,501].
    #[arg(long)]
    ais_betas: Option<usize>,
    /// Directory of the MNIST IDX files (default: the copy shipped in `datasets/mnist`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output directory.
    #[arg(long, default_value = "out/mnist_rbm")]
    out: PathBuf,
    /// End with one JSON line of results on standard output.
    #[arg(long)]
    json: bool,
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> boltzmann::Result<()> {
    let started = Instant::now();
    let mnist = Mnist::load(args.data.clone().unwrap_or_else(Mnist::shipped_dir))?;
    std::fs::create_dir_all(&args.out).map_err(|e| boltzmann::Error::Io {
        path: args.out.clone(),
        source: e,
    })?;
    let negative = match args.pcd {
        Some(k) => NegativePhase::Pcd {
            k: Steps::Constant(k),
            chains: args.chains,
        },
        None => NegativePhase::Cd {
            k: Steps::Constant(args.cd.unwrap_or(1)),
        },
    };
    let lr = args.lr;
    let config = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch,
        learning_rate: LearningRate::Constant(lr as f32),
        negative,
        binarize: true,
        seed: args.seed,
        ..TrainConfig::default()
    };
    config.validate()?;
    let mut rbm: Rbm<Bernoulli, Bernoulli> = Rbm::init(Mnist::PIXELS, args.hidden, args.seed)?;

    let bar = ProgressBar::new(args.epochs as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] epoch {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let history = train(
        &mut rbm,
        &mnist.train_images,
        Some(&mnist.test_images),
        &config,
        |m: &EpochMetrics| {
            bar.suspend(|| {
                println!(
                    "epoch {:3}  {:6.2} s  recon error {:8.3}  free-energy gap (test − train) {:+8.3}",
                    m.epoch,
                    m.seconds,
                    m.recon_error,
                    m.free_energy_gap.unwrap_or(f64::NAN)
                )
            });
            bar.inc(1);
        },
    )?;
    bar.finish_and_clear();
    let train_seconds: f64 = history.iter().map(|m| m.seconds).sum();

    rbm.save(args.out.join("model.bin"))?;
    rbm.save_npz(args.out.join("model.npz"))?;
    let mut chains = Chains::random(&rbm, args.chains, args.seed)?;
    chains.sweep(&rbm, args.sample_sweeps)?;
    let samples = rbm.visible_mean(chains.hidden())?;
    save_tile_grid(
        args.out.join("samples.png"),
        &samples,
        Mnist::SIDE,
        10,
        Scale::Unit,
    )?;
    let filters = rbm.weights().columns(0, args.hidden.min(100)).into_owned();
    save_tile_grid(
        args.out.join("filters.png"),
        &filters,
        Mnist::SIDE,
        10,
        Scale::PerTile,
    )?;
    println!(
        "wrote model.bin, model.npz, samples.png and filters.png to {}",
        args.out.display()
    );

    // Evaluation as in Salakhutdinov & Murray (2008): AIS from a base-rate model of the
    // training data, on one fixed binarisation of the training and test images.
    let evaluation = if args.no_ais {
        None
    } else {
        let (train_bin, test_bin) = mnist.binarized(args.seed)?;
        let config = AisConfig {
            runs: args.ais_runs,
            betas: match args.ais_betas {
                Some(n) => Betas::three_stage(n)?,
                None => Betas::paper(),
            },
            seed: args.seed,
        };
        let start = Start::base_rate_default(&train_bin)?;
        let bar = ProgressBar::new(config.betas.len() as u64 - 1);
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] AIS {pos}/{len} β steps")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let e = evaluate(&rbm, &start, &config, &train_bin, &test_bin, |done, _| {
            bar.set_position(done as u64)
        })?;
        bar.finish_and_clear();
        println!(
            "AIS: ln Ẑ = {:.3} [{:.3}, {:.3}]; test log-probability {:.3} ± {:.3} nats, train {:.3}",
            e.forward.log_z,
            e.forward.log_z_lower,
            e.forward.log_z_upper,
            e.test.mean,
            e.test.stderr,
            e.train.mean
        );
        Some(e)
    };

    let last = history.last();
    if args.json {
        let json = serde_json::json!({
            "hidden": args.hidden,
            "epochs": args.epochs,
            "negative_phase": if args.pcd.is_some() { "pcd" } else { "cd" },
            "k": config.negative.steps(args.epochs),
            "batch": args.batch,
            "lr": lr,
            "seed": args.seed,
            "seconds": started.elapsed().as_secs_f64(),
            "train_seconds": train_seconds,
            "seconds_per_epoch": train_seconds / args.epochs as f64,
            "recon_error": last.map(|m| m.recon_error),
            "free_energy_gap": last.and_then(|m| m.free_energy_gap),
            "out": args.out,
            "log_z": evaluation.as_ref().map(|e| e.forward.log_z),
            "log_z_lower": evaluation.as_ref().map(|e| e.forward.log_z_lower),
            "log_z_upper": evaluation.as_ref().map(|e| e.forward.log_z_upper),
            "test_log_prob": evaluation.as_ref().map(|e| e.test.mean),
            "test_log_prob_stderr": evaluation.as_ref().map(|e| e.test.stderr),
            "train_log_prob": evaluation.as_ref().map(|e| e.train.mean),
        });
        println!("{json}");
    }
    Ok(())
}
