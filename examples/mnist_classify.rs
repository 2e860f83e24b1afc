//! Trains a classification RBM (Larochelle & Bengio 2008) on MNIST (or the labelled data of
//! `--data`), reports the test error and writes `model.safetensors` and `samples.png` (one row
//! of class-conditional samples per class).
//!
//! ```text
//! cargo run --release --example mnist_classify -- --objective hybrid --json
//! ```

mod common;

use boltzmann::Chains;
use boltzmann::classify::ClassRbm;
use boltzmann::image::Scale;
use boltzmann::train::{EpochMetrics, LearningRate, Objective, TrainConfig, train_classifier};
use clap::{Parser, ValueEnum};
use nalgebra::DMatrix;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    /// ln p(x, y) by CD-1.
    Generative,
    /// ln p(y | x) by its exact gradient.
    Discriminative,
    /// ln p(y | x) + α ln p(x, y).
    Hybrid,
}

/// Train a classification RBM on MNIST (inputs binarised once, stochastically): the first five
/// sixths of the training examples (MNIST: 50,000) for training, the rest for validation, and
/// the test set for the reported error.
#[derive(Parser, Debug, serde::Serialize)]
#[command(version, about)]
struct Args {
    /// Training objective.
    #[arg(long, value_enum, default_value_t = Kind::Hybrid)]
    objective: Kind,
    /// Weight α of the generative term of the hybrid objective.
    #[arg(long, default_value_t = 0.01)]
    alpha: f64,
    /// Hidden units.
    #[arg(long, default_value_t = 500)]
    hidden: usize,
    /// Passes over the training images.
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// Learning rate (momentum 0.5), decaying as 1/t with a half-life of 10 epochs.
    #[arg(long, default_value_t = 0.2)]
    lr: f64,
    /// Minibatch size.
    #[arg(long, default_value_t = 20)]
    batch: usize,
    /// Master seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The data, which must have labels (Bernoulli inputs only).
    #[command(flatten)]
    #[serde(flatten)]
    data: common::DataOptions,
    /// Output directory.
    #[arg(long, default_value = "out/mnist_classify")]
    out: PathBuf,
    /// End with one JSON line of results on standard output.
    #[arg(long)]
    json: bool,
}

impl Args {
    fn config(&self, classes: usize) -> TrainConfig {
        let objective = match self.objective {
            Kind::Generative => Objective::Generative,
            Kind::Discriminative => Objective::Discriminative,
            Kind::Hybrid => Objective::Hybrid {
                alpha: self.alpha as f32,
            },
        };
        TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch,
            learning_rate: LearningRate::InverseTime {
                initial: self.lr as f32,
                half_life: 10.0,
            },
            objective,
            seed: self.seed,
            monitor_examples: 10_000,
            ..TrainConfig::classifier(classes)
        }
    }
}

fn main() {
    common::main(run);
}

fn run(args: Args) -> boltzmann::Result<()> {
    let started = Instant::now();
    common::count_in("--hidden", args.hidden, 1, common::MAX_UNITS)?;
    let data = args.data.load()?;
    let (Some((train_labels, test_labels)), Some(classes)) = (&data.labels, data.classes()) else {
        return Err(boltzmann::Error::invalid(
            "--data",
            "the data has no labels; a classifier needs `train_labels` and `test_labels`",
        ));
    };
    if data.visible != common::Visible::Bernoulli {
        return Err(boltzmann::Error::invalid(
            "--visible",
            "the classification RBM has Bernoulli inputs",
        ));
    }
    let config = args.config(classes);
    config.validate()?;
    let (train_all, test) = data.fixed(args.seed)?;
    let labels = |l: &[u8]| l.iter().map(|&y| usize::from(y)).collect::<Vec<_>>();
    let (train_labels_all, test_labels) = (labels(train_labels), labels(test_labels));
    let split = train_all.ncols() - train_all.ncols() / 6;
    let train = train_all.columns(0, split).into_owned();
    let valid = train_all
        .columns(split, train_all.ncols() - split)
        .into_owned();
    let (train_labels, valid_labels) = train_labels_all.split_at(split);
    std::fs::create_dir_all(&args.out).map_err(|e| boltzmann::Error::Io {
        path: args.out.clone(),
        source: e,
    })?;

    let units = data.units();
    let mut model = ClassRbm::init(units, args.hidden, classes, args.seed)?;
    model.set_input_bias_from_data(&train)?;
    let bar = common::bar(args.epochs, "epoch");
    let held_out = (!valid_labels.is_empty()).then_some((&valid, valid_labels));
    let history = train_classifier(
        &mut model,
        (&train, train_labels),
        held_out,
        &config,
        |m: &EpochMetrics| {
            let c = m.classification.as_ref().expect("a classifier's metrics");
            bar.suspend(|| {
                println!(
                    "epoch {:3}  {:6.2} s  mean ln p(y|x) {:8.4}  train error {:.4}  validation error {:.4}",
                    m.epoch,
                    m.seconds,
                    c.train_log_likelihood,
                    c.train_error,
                    c.held_out_error.unwrap_or(f64::NAN)
                )
            });
            bar.inc(1);
        },
    )?;
    bar.finish_and_clear();
    let test_error = model.error_rate(&test, &test_labels)?;
    println!("test error {:.2} %", 100.0 * test_error);
    model.save(args.out.join("model.safetensors"))?;

    // Ten samples of each class: chains of the joint machine with the label units clamped.
    let n = 10 * classes;
    let wanted: Vec<usize> = (0..n).map(|c| c / 10).collect();
    let clamped = model.joint(&DMatrix::zeros(units, n), Some(&wanted))?;
    let mask: Vec<bool> = (0..clamped.nrows()).map(|i| i >= units).collect();
    let machine = model.machine();
    let mut chains = Chains::random(machine, n, args.seed)?;
    chains.clamp(&mask, &clamped)?;
    chains.sweep(machine, 1000)?;
    let means = machine.visible_mean(chains.hidden())?;
    let samples = means.rows(0, units).into_owned();
    data.save_tiles(args.out.join("samples.png"), &samples, 10, Scale::Unit)?;
    println!(
        "wrote model.safetensors and samples.png to {}",
        args.out.display()
    );

    if args.json {
        let last = history.last().and_then(|m| m.classification.as_ref());
        let json = serde_json::json!({
            "example": "mnist_classify",
            "settings": &args,
            "seed": args.seed,
            "test_error": test_error,
            "validation_error": last.and_then(|c| c.held_out_error),
            "train_error": last.map(|c| c.train_error),
            "train_log_likelihood": last.map(|c| c.train_log_likelihood),
            "seconds": started.elapsed().as_secs_f64(),
            "out": args.out,
        });
        println!("{json}");
    }
    Ok(())
}
