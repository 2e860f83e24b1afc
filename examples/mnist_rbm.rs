//! Trains an RBM on MNIST (or the data of `--data`) and writes `model.safetensors`, `model.npz`, `samples.png`,
//! `filters.png`, the per-epoch metrics `metrics.jsonl` and their curves `metrics.png`, a
//! training checkpoint `checkpoint.safetensors` and the run's settings `args.json`.
//!
//! ```text
//! cargo run --release --example mnist_rbm -- --hidden 500 --epochs 10 --cd 1 --json
//! cargo run --release --example mnist_rbm -- --epochs 2 --resume out/mnist_rbm
//! cargo run --release --example mnist_rbm -- --data mine.npz --visible gaussian --hidden 50
//! ```

mod common;

use boltzmann::diagnostics::Trace;
use boltzmann::image::Scale;
use boltzmann::partition::{AisConfig, Betas, EvaluationConfig, ReverseStart, Start, evaluate};
use boltzmann::tempering::geometric_ladder;
use boltzmann::train::{
    Centering, Checkpoint, EpochMetrics, FastWeights, LearningRate, Momentum, NegativePhase,
    Sparsity, Steps, TrainConfig, resume, train,
};
use boltzmann::{Bernoulli, Chains, FromBias, Gaussian, Layer, Rbm};
use clap::Parser;
use common::{Data, Schedule, Visible};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// Train an RBM with binary hidden units on MNIST (stochastically binarised, a fresh draw per
/// minibatch) or on your own data by CD-k, PCD, fast PCD or parallel tempering (PT) as the
/// negative phase.
#[derive(Parser, Debug, Serialize, Deserialize)]
#[command(version, about)]
// Settings missing from an older run's args.json take today's defaults.
#[serde(default)]
struct Args {
    /// A named recipe, which sets the negative phase, learning rate, its schedule, momentum and
    /// epochs (the other flags keep their meaning).
    #[arg(
        long,
        value_enum,
        conflicts_with_all = ["cd", "pcd", "fpcd", "pt", "lr", "lr_schedule", "momentum", "momentum_initial", "epochs", "k_final"]
    )]
    recipe: Option<Recipe>,
    /// Hidden units.
    #[arg(long, default_value_t = 500)]
    hidden: usize,
    /// Passes over the training examples (a resumed run with the linear schedule keeps
    /// its length).
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Contrastive divergence with K Gibbs sweeps per update (the default, with K = 1).
    #[arg(long, value_name = "K", group = "negative")]
    cd: Option<usize>,
    /// Persistent CD with K Gibbs sweeps per update.
    #[arg(long, value_name = "K", group = "negative")]
    pcd: Option<usize>,
    /// Fast PCD (Tieleman & Hinton 2009) with K Gibbs sweeps per update.
    #[arg(long, value_name = "K", group = "negative")]
    fpcd: Option<usize>,
    /// Learning rate of fast PCD's fast weights, which shrink by 19/20 per update [default: the
    /// initial learning rate, as Tieleman & Hinton (2009)].
    #[arg(long)]
    fast_lr: Option<f64>,
    /// Parallel tempering as the negative phase, with K rounds of sweeps and swaps per update.
    #[arg(long, value_name = "K", group = "negative")]
    pt: Option<usize>,
    /// Inverse temperatures of parallel tempering, evenly spaced from 1 to 0.
    #[arg(long, default_value_t = 10)]
    pt_rungs: usize,
    /// Persistent chains for PCD and fast PCD, per temperature for PT (also the number of
    /// samples drawn at the end).
    #[arg(long, default_value_t = 100)]
    chains: usize,
    /// Train in centered coordinates, with offsets following the data means at this rate
    /// (Melchior et al. 2016 use 0.01).
    #[arg(long, value_name = "RATE")]
    centering: Option<f64>,
    /// Minibatch size.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// (Initial) learning rate [default: 0.002 for CD, 0.01 for the persistent methods].
    #[arg(long)]
    lr: Option<f64>,
    /// How the learning rate changes over the epochs.
    #[arg(long, value_enum, default_value_t = Schedule::Constant)]
    lr_schedule: Schedule,
    /// Epochs after which the inverse-time schedule has halved the rate.
    #[arg(long, default_value_t = 10.0)]
    lr_half_life: f64,
    /// Factor per epoch of the geometric schedule.
    #[arg(long, default_value_t = 0.98)]
    lr_factor: f64,
    /// The geometric schedule's rate never falls below this.
    #[arg(long, default_value_t = 1e-5)]
    lr_floor: f64,
    /// Momentum of the first epochs (before --momentum-switch).
    #[arg(long, default_value_t = 0.5)]
    momentum_initial: f64,
    /// Momentum from epoch --momentum-switch on [default: 0.9 for CD, 0.5 for the persistent
    /// methods, whose chains cannot follow the larger steps of a higher momentum].
    #[arg(long)]
    momentum: Option<f64>,
    /// The epoch (from 1) at which the momentum changes.
    #[arg(long, default_value_t = 6)]
    momentum_switch: usize,
    /// L2 decay of the weights.
    #[arg(long, default_value_t = 2e-4)]
    weight_decay: f64,
    /// Max-norm constraint on each hidden unit's incoming weights (none if absent).
    #[arg(long, value_name = "C")]
    max_norm: Option<f64>,
    /// A target for the hidden units' mean activity (Hinton's guide, section 11); none if
    /// absent.
    #[arg(long, value_name = "P")]
    sparsity_target: Option<f64>,
    /// Strength of the sparsity penalty (with --sparsity-target).
    #[arg(long, default_value_t = 0.1)]
    sparsity_cost: f64,
    /// Let k grow linearly from the K of --cd/--pcd/--fpcd/--pt (epoch 1) to this (last epoch),
    /// as Salakhutdinov & Murray's CD schedule did from 1 to 25.
    #[arg(long, value_name = "K")]
    k_final: Option<usize>,
    #[command(flatten)]
    trajectory: common::TrajectoryOptions,
    /// Master seed of every random draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Chains run from random starts after training: the first 100 draw `samples.png`, all of
    /// them are classified (nearest mean of the test examples of each class, for labelled data)
    /// for the class histogram.
    #[arg(long, default_value_t = 1000)]
    sample_chains: usize,
    /// Gibbs sweeps of those chains.
    #[arg(long, default_value_t = 1000)]
    sample_sweeps: usize,
    /// Skip the AIS evaluation of the trained model.
    #[arg(long)]
    no_ais: bool,
    /// Skip reverse AIS (from test images, one per run), which otherwise checks the forward
    /// estimate from above.
    #[arg(long)]
    no_reverse: bool,
    /// AIS runs of the evaluation.
    #[arg(long, default_value_t = 100)]
    ais_runs: usize,
    /// Distributions of the AIS schedule (the paper's three-stage spacing) [default: the
    /// paper's 14,501].
    #[arg(long)]
    ais_betas: Option<usize>,
    #[command(flatten)]
    #[serde(flatten)]
    data: common::DataOptions,
    #[command(flatten)]
    run: common::RunOptions,
}

/// Named settings.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Recipe {
    /// PCD-1 with 100 chains, learning rate 0.02 decayed linearly to zero, momentum 0.5, weight
    /// decay 2e-4, 400 epochs (about 18 minutes on 2 cores): −84.38 nats by forward AIS and
    /// −84.40 by reverse AIS on the shipped MNIST (README), better than Salakhutdinov & Murray's
    /// CD25(500) (−86.34).
    Literature,
    /// Salakhutdinov & Murray (2008), section 4: CD with the number of Gibbs steps raised from
    /// 1 to 25 over training, 500 hidden units, minibatches of 100. The paper gives no rate or
    /// epoch count; this uses the toolkit's CD defaults (rate 0.002, momentum 0.5 then 0.9,
    /// weight decay 2e-4) for 100 epochs.
    Sm2008,
}

impl Default for Args {
    fn default() -> Self {
        Args::parse_from(["mnist_rbm"])
    }
}

impl Args {
    /// These settings with the recipe's applied.
    fn with_recipe(self) -> Self {
        match self.recipe {
            None => self,
            Some(Recipe::Literature) => Args {
                cd: None,
                pcd: Some(1),
                fpcd: None,
                pt: None,
                lr: Some(0.02),
                lr_schedule: Schedule::Linear,
                momentum_initial: 0.5,
                momentum: Some(0.5),
                epochs: 400,
                ..self
            },
            Some(Recipe::Sm2008) => Args {
                cd: Some(1),
                pcd: None,
                fpcd: None,
                pt: None,
                k_final: Some(25),
                lr: Some(0.002),
                lr_schedule: Schedule::Constant,
                momentum_initial: 0.5,
                momentum: Some(0.9),
                epochs: 100,
                ..self
            },
        }
    }

    /// Whether the negative phase keeps persistent chains.
    fn persistent(&self) -> bool {
        self.pcd.is_some() || self.fpcd.is_some() || self.pt.is_some()
    }

    /// The (initial) learning rate: measured best after 20 epochs, CD-1 at 0.002 and PCD-1 at
    /// 0.01 (README, "Persistent chains and momentum").
    fn lr(&self) -> f64 {
        let default = if self.persistent() { 0.01 } else { 0.002 };
        self.lr.unwrap_or(default)
    }

    /// The momentum after the switch: with 0.9, PCD-1 at rate 0.01 reached −184 nats after 20
    /// epochs, with 0.5 −102 (README).
    fn later_momentum(&self) -> f64 {
        let default = if self.persistent() { 0.5 } else { 0.9 };
        self.momentum.unwrap_or(default)
    }

    fn fast_lr(&self) -> f64 {
        self.fast_lr.unwrap_or_else(|| self.lr())
    }

    fn learning_rate(&self) -> LearningRate {
        self.lr_schedule.learning_rate(
            self.lr(),
            self.lr_half_life,
            self.lr_factor,
            self.lr_floor,
            self.epochs,
        )
    }

    fn negative_phase(&self) -> boltzmann::Result<(&'static str, NegativePhase)> {
        let constant = |k: Option<usize>| match self.k_final {
            Some(to) => Steps::Linear {
                from: k.unwrap_or(1),
                to,
                epochs: self.epochs,
            },
            None => Steps::Constant(k.unwrap_or(1)),
        };
        let chains = self.chains;
        Ok(if self.pcd.is_some() {
            (
                "pcd",
                NegativePhase::Pcd {
                    k: constant(self.pcd),
                    chains,
                },
            )
        } else if self.fpcd.is_some() {
            let fast = FastWeights {
                learning_rate: self.fast_lr() as f32,
                decay: 0.95,
            };
            (
                "fpcd",
                NegativePhase::FastPcd {
                    k: constant(self.fpcd),
                    chains,
                    fast,
                },
            )
        } else if self.pt.is_some() {
            let betas = geometric_ladder(self.pt_rungs, 0.0)?;
            (
                "pt",
                NegativePhase::Tempering {
                    k: constant(self.pt),
                    chains,
                    betas,
                },
            )
        } else {
            (
                "cd",
                NegativePhase::Cd {
                    k: constant(self.cd),
                },
            )
        })
    }
}

impl Args {
    /// The training settings, checkpointing into `out`.
    fn train_config(&self, out: &Path) -> boltzmann::Result<TrainConfig> {
        Ok(TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch,
            learning_rate: self.learning_rate(),
            momentum: Momentum {
                initial: self.momentum_initial as f32,
                later: self.later_momentum() as f32,
                switch_epoch: self.momentum_switch,
            },
            weight_decay: self.weight_decay as f32,
            sparsity: self.sparsity_target.map(|target| Sparsity {
                target: target as f32,
                cost: self.sparsity_cost as f32,
                decay: 0.9,
            }),
            negative: self.negative_phase()?.1,
            binarize: self.data.visible == Visible::Bernoulli,
            centering: self.centering.map(|rate| Centering { rate: rate as f32 }),
            seed: self.seed,
            checkpoint: Some(self.run.checkpointing(out)),
            trajectory: self.trajectory.settings(),
            max_norm: self.max_norm.map(|c| c as f32),
            ..TrainConfig::default()
        })
    }

    /// The AIS settings of the evaluation.
    fn ais_config(&self) -> boltzmann::Result<AisConfig> {
        Ok(AisConfig {
            runs: self.ais_runs,
            betas: match self.ais_betas {
                Some(n) => Betas::three_stage(n)?,
                None => Betas::paper(),
            },
            seed: self.seed,
        })
    }

    /// Checks every setting before any work, so that a bad one costs nothing, and gives the
    /// training settings (checkpointing into `out`). The counts are checked before the
    /// configuration is built from them. `visible`: the data's units.
    fn validate(&self, out: &Path, visible: usize) -> boltzmann::Result<TrainConfig> {
        use common::{MAX_CHAINS, MAX_SWEEPS, MAX_UNITS, count_in, number_in};
        self.run.validate()?;
        count_in("--hidden", self.hidden, 1, MAX_UNITS)?;
        count_in("--chains", self.chains, 1, MAX_CHAINS)?;
        count_in("--batch", self.batch, 1, MAX_CHAINS)?;
        count_in("--pt-rungs", self.pt_rungs, 2, 1000)?;
        number_in("--fast-lr", self.fast_lr(), 0.0, 1.0)?;
        count_in("--sample-sweeps", self.sample_sweeps, 2, MAX_SWEEPS)?;
        let units = visible.saturating_add(self.hidden);
        self.trajectory.validate(units)?;
        let rungs = if self.pt.is_some() { self.pt_rungs } else { 1 };
        common::fits_memory(
            "--chains (× --pt-rungs)",
            self.chains.saturating_mul(rungs),
            units,
        )?;
        // The sampling trace holds one free energy (f64) per chain and recorded sweep.
        let recorded = self.sample_sweeps - self.sample_sweeps / 2;
        count_in("--sample-chains", self.sample_chains, 1, MAX_CHAINS)?;
        common::fits_memory("--sample-chains", self.sample_chains, units)?;
        common::fits_memory(
            "--sample-chains × --sample-sweeps / 2",
            self.sample_chains,
            2 * recorded,
        )?;
        if !self.no_ais {
            count_in("--ais-runs", self.ais_runs, 1, MAX_CHAINS)?;
            common::fits_memory("--ais-runs", self.ais_runs, units)?;
            self.ais_config()?;
        }
        let config = self.train_config(out)?;
        config.validate()?;
        Ok(config)
    }
}

/// The settings of the run in `dir` with this invocation's epochs and output options.
fn resumed_args(dir: &Path, now: Args) -> boltzmann::Result<Args> {
    let saved: Args = common::load_args(dir, "mnist_rbm settings")?;
    Ok(Args {
        epochs: saved.lr_schedule.resumed_epochs(saved.epochs, now.epochs),
        run: now.run.resumed_in(dir),

        no_ais: now.no_ais,
        no_reverse: now.no_reverse,
        ..saved
    })
}

fn main() {
    common::main(run);
}

fn run(args: Args) -> boltzmann::Result<()> {
    let started = Instant::now();
    let args = args.with_recipe();
    let args = match &args.run.resume {
        Some(dir) => resumed_args(&dir.clone(), args)?,
        None => args,
    };
    let data = args.data.load()?;
    match data.visible {
        Visible::Bernoulli => train_and_evaluate::<Bernoulli>(args, &data, started),
        Visible::Gaussian => train_and_evaluate::<Gaussian>(args, &data, started),
    }
}

/// Trains an RBM with visible units `V` on `data`, then samples and evaluates it.
fn train_and_evaluate<V: Layer + FromBias>(
    args: Args,
    data: &Data,
    started: Instant,
) -> boltzmann::Result<()> {
    let config = args.validate(&args.run.out_path("mnist_rbm"), data.units())?;
    if let Some(dir) = &args.run.resume {
        // The checkpoint's model must be the one the settings describe.
        let saved = Checkpoint::<V, Bernoulli>::load(dir.join("checkpoint.safetensors"))?;
        let hidden = saved.machine().layer_sizes()[1..].to_vec();
        if hidden != [args.hidden] {
            return Err(boltzmann::Error::shape(
                "hidden units of the checkpoint",
                format!(
                    "{} as in {}",
                    args.hidden,
                    dir.join(common::ARGS_FILE).display()
                ),
                format!("{hidden:?}"),
            ));
        }
    }
    let out = args.run.out_dir("mnist_rbm")?;
    let phase = args.negative_phase()?.0;
    let lr = args.lr();
    common::save_args(&out, &args)?;
    let mut rbm: Rbm<V, Bernoulli> = Rbm::init(data.units(), args.hidden, args.seed)?;

    let bar = common::bar(args.epochs, "epoch");
    let mut metrics = common::MetricsLog::start(
        &out,
        args.run.resume.is_some(),
        &[
            ("/recon_error", "reconstruction error"),
            ("/free_energy_gap", "free-energy gap (test - train)"),
            ("/train_log_likelihood", "train log-likelihood (exact)"),
            (
                "/trajectory/held_out_log_likelihood",
                "test log-probability (trajectory AIS, monitored test images)",
            ),
            ("/learning_rate", "learning rate"),
        ],
    )?;
    let report = |m: &EpochMetrics| {
        metrics.push(m);
        bar.suspend(|| {
            let swaps = common::lowest_swap_rate(m.swap_rates.as_deref());
            let online = common::trajectory_note(m.trajectory.as_ref(), "test", |t| {
                t.held_out_log_likelihood
            });
            println!(
                "epoch {:3}  {:6.2} s  recon error {:8.3}  F gap (test − train) {:+8.3}{swaps}{online}",
                m.epoch,
                m.seconds,
                m.recon_error,
                m.free_energy_gap.unwrap_or(f64::NAN)
            )
        });
        bar.set_position(m.epoch as u64);
    };
    let (train_images, test_images) = (&data.train, Some(&data.test));
    let history = match &args.run.resume {
        Some(dir) => {
            let (machine, history) = resume(
                dir.join("checkpoint.safetensors"),
                train_images,
                test_images,
                &config,
                report,
            )?;
            rbm = Rbm::try_from(machine)?;
            history
        }
        None => train(&mut rbm, train_images, test_images, &config, report)?,
    };
    bar.finish_and_clear();
    metrics.finish()?;
    let train_seconds: f64 = history.iter().map(|m| m.seconds).sum();

    rbm.save(out.join("model.safetensors"))?;
    rbm.save_npz(out.join("model.npz"))?;
    // Samples, with the free energy of the chains recorded along the second half of the sweeps
    // to measure how well plain Gibbs mixes on the trained model.
    let mut chains = Chains::random(&rbm, args.sample_chains, args.seed)?;
    let burn_in = args.sample_sweeps / 2;
    chains.sweep(&rbm, burn_in)?;
    let trace = Trace::record(&rbm, &mut chains, args.sample_sweeps - burn_in, |c| {
        Ok(rbm.free_energy(c.visible())?.as_slice().to_vec())
    })?;
    let samples = rbm.visible_mean(chains.hidden())?;
    println!(
        "sampling: free-energy autocorrelation time {:.1} sweeps, effective sample size {:.0} of {} draws",
        trace.integrated_autocorrelation_time(),
        trace.effective_sample_size(),
        args.sample_chains
            .saturating_mul(args.sample_sweeps - burn_in)
    );
    let class_fractions = common::sample_classes(&samples, data)?;
    data.save_tiles(
        out.join("samples.png"),
        &samples.columns(0, samples.ncols().min(100)).into_owned(),
        10,
        data.scale(),
    )?;
    let filters = rbm
        .weights()
        .columns(0, rbm.num_hidden().min(100))
        .into_owned();
    data.save_tiles(out.join("filters.png"), &filters, 10, Scale::PerTile)?;
    println!(
        "wrote model.safetensors, model.npz, samples.png and filters.png to {}",
        out.display()
    );

    // Evaluation as in Salakhutdinov & Murray (2008): AIS from a base-rate model of the
    // training data, on one fixed binarisation of the training and test examples.
    let evaluation = if args.no_ais {
        None
    } else {
        let (train_bin, test_bin) = data.fixed(args.seed)?;
        let config = EvaluationConfig {
            ais: args.ais_config()?,
            // Reverse AIS from test images: ln Ẑ from above, so the two bracket the truth when
            // the chains have not lost the model.
            reverse: (!args.no_reverse).then_some(ReverseStart {
                from_test: true,
                sweeps: 0,
            }),
            ..EvaluationConfig::default()
        };
        let start = Start::base_rate_default(&rbm, &train_bin)?;
        let e = evaluate(
            &rbm,
            &start,
            &config,
            &train_bin,
            &test_bin,
            common::ais_progress(),
        )?;
        println!(
            "AIS: ln Ẑ = {:.3} [{:.3}, {:.3}]; test log-probability {:.3} ± {:.3} nats, train {:.3}",
            e.forward.log_z,
            e.forward.log_z_lower,
            e.forward.log_z_upper,
            e.test.mean,
            e.test.stderr,
            e.train.mean
        );
        if let (Some(r), Some(test)) = (&e.reverse, e.test_reverse()) {
            println!(
                "reverse AIS: ln Ẑ = {:.3}; test log-probability {test:.3} nats",
                r.log_z
            );
        }
        Some(e)
    };

    let last = history.last();
    if args.run.json {
        let json = serde_json::json!({
            "example": "mnist_rbm",
            "settings": &args,
            "negative_phase": phase,
            "k": config.negative.steps(args.epochs),
            "lr": lr,
            "seed": args.seed,
            "seconds": started.elapsed().as_secs_f64(),
            "train_seconds": train_seconds,
            "seconds_per_epoch": train_seconds / history.len().max(1) as f64,
            "epochs_run": history.len(),
            "resumed": args.run.resume.is_some(),
            "out": out,
            "last_epoch": last,
            "sample_autocorrelation_time": trace.integrated_autocorrelation_time(),
            "sample_ess": trace.effective_sample_size(),
            "sample_class_fractions": class_fractions,
            "trajectory_log_z_error": last
                .and_then(|m| m.trajectory.as_ref())
                .zip(evaluation.as_ref())
                .map(|(t, e)| t.log_z - e.forward.log_z),
        });
        let json = common::json_line(json, &[common::evaluation_json(evaluation.as_ref())]);
        println!("{json}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_args_json_is_refused_with_an_error() {
        let defaults = Args::parse_from(["mnist_rbm"]);
        common::fuzz_args_json(&defaults, |args: Args| {
            args.validate(Path::new("out"), 784).map(drop)
        });
    }

    /// An args.json the fuzzer found: 2⁶⁴ − 1 tempering rungs, which were allocated before the
    /// count was checked.
    #[test]
    fn a_huge_ladder_is_refused_before_it_is_built() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions/args-pt-rungs");
        let args: Args = common::load_args(&dir, "mnist_rbm settings").unwrap();
        let err = args.validate(Path::new("out"), 784).unwrap_err();
        assert!(err.to_string().contains("--pt-rungs"), "{err}");
    }
}
