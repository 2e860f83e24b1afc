//! Pretrains, jointly trains and evaluates a deep Boltzmann machine on MNIST (Salakhutdinov &
//! Hinton 2009) or the data of `--data`, and writes `model.safetensors`, `model.npz`, `samples.png`, the per-epoch metrics of
//! joint training `metrics.jsonl` and their curves `metrics.png`, a checkpoint of joint
//! training `checkpoint.safetensors` and the run's settings `args.json`.
//!
//! ```text
//! cargo run --release --example mnist_dbm -- --layers 500,1000 --json
//! cargo run --release --example mnist_dbm -- --epochs 150 --resume out/mnist_dbm
//! cargo run --release --example mnist_dbm -- --data mine.npz --layers 50,50
//! ```
//!
//! A resumed run continues joint training from the checkpoint; pretraining is not repeated.

// The JSON line's `json!` has more fields than the macro's default recursion allows.
#![recursion_limit = "256"]

mod common;

use boltzmann::dbm::MeanField;
use boltzmann::partition::{AisConfig, Betas, EvaluationConfig, ReverseStart, Start, evaluate};
use boltzmann::tempering::geometric_ladder;
use boltzmann::train::{
    Centering, EpochMetrics, LearningRate, Momentum, NegativePhase, Sparsity, Steps, TrainConfig,
    pretrain, resume, train,
};
use boltzmann::{Bernoulli, Chains, Dbm, FromBias, Gaussian, Layer};
use clap::Parser;
use common::{Data, Schedule, Visible};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// Train a DBM on MNIST (stochastically binarised, a fresh draw per minibatch): greedy
/// pretraining with doubled inputs, then joint training with mean-field and persistent chains;
/// evaluate it by AIS and the variational lower bound.
#[derive(Parser, Debug, Serialize, Deserialize)]
#[command(version, about)]
// Settings missing from an older run's args.json take today's defaults.
#[serde(default)]
struct Args {
    /// A named recipe, which sets the joint learning rate, its schedule, momentum, mean-field
    /// iterations and epochs (the other flags keep their meaning).
    #[arg(
        long,
        value_enum,
        conflicts_with_all = ["lr", "lr_schedule", "momentum", "momentum_initial", "mf_iters", "sweeps", "epochs"]
    )]
    recipe: Option<Recipe>,
    /// Hidden layer sizes, bottom first.
    #[arg(long, value_delimiter = ',', default_value = "500,1000")]
    layers: Vec<usize>,
    /// Epochs of CD-1 for each pretrained RBM.
    #[arg(long, default_value_t = 50)]
    pretrain_epochs: usize,
    /// Learning rate of pretraining.
    #[arg(long, default_value_t = 0.05)]
    pretrain_lr: f64,
    /// L2 weight decay of pretraining.
    #[arg(long, default_value_t = 1e-3)]
    pretrain_decay: f64,
    /// Epochs of joint training (about 30 s each on 2 cores for 500,1000; a resumed run with
    /// the linear schedule keeps its length).
    #[arg(long, default_value_t = 100)]
    epochs: usize,
    /// Initial learning rate of joint training.
    #[arg(long, default_value_t = 0.001)]
    lr: f64,
    /// How the joint learning rate changes over the epochs.
    #[arg(long, value_enum, default_value_t = Schedule::Geometric)]
    lr_schedule: Schedule,
    /// Epochs after which the inverse-time schedule has halved the joint rate.
    #[arg(long, default_value_t = 10.0)]
    lr_half_life: f64,
    /// Factor by which the geometric schedule shrinks the joint rate every epoch.
    #[arg(long, default_value_t = 0.977)]
    lr_factor: f64,
    /// The geometric schedule's joint rate never falls below this.
    #[arg(long, default_value_t = 1e-5)]
    lr_floor: f64,
    /// L2 weight decay of joint training.
    #[arg(long, default_value_t = 1e-7)]
    decay: f64,
    /// Sparsity target of the hidden layers' mean-field activations in joint training (0: none).
    #[arg(long, value_name = "P", default_value = "0.1")]
    sparsity_target: Option<f64>,
    /// Strength of the sparsity penalty (with --sparsity-target).
    #[arg(long, default_value_t = 1e-3)]
    sparsity_cost: f64,
    /// Momentum of the first joint epochs (before --momentum-switch).
    #[arg(long, default_value_t = 0.5)]
    momentum_initial: f64,
    /// Momentum of joint training from epoch --momentum-switch on.
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// The joint epoch (from 1) at which the momentum changes.
    #[arg(long, default_value_t = 6)]
    momentum_switch: usize,
    /// Persistent chains of joint training (also the number of samples drawn at the end).
    #[arg(long, default_value_t = 100)]
    chains: usize,
    /// Gibbs sweeps of the chains per update.
    #[arg(long, default_value_t = 5)]
    sweeps: usize,
    /// Parallel tempering instead of PCD in joint training: K rounds of sweeps and swaps per
    /// update, `--chains` chains at each temperature.
    #[arg(long, value_name = "K")]
    pt: Option<usize>,
    /// Inverse temperatures of parallel tempering, evenly spaced from 1 to 0.
    #[arg(long, default_value_t = 10)]
    pt_rungs: usize,
    /// Max-norm constraint on each hidden unit's incoming weights (0: none).
    #[arg(long, value_name = "C", default_value = "8")]
    max_norm: Option<f64>,
    /// Start the persistent chains from the layers' biases instead of from training images.
    #[arg(long)]
    random_chains: bool,
    /// Train in centered coordinates, the offsets following the data-driven means at this rate.
    #[arg(long, value_name = "RATE")]
    centering: Option<f64>,
    /// Mean-field iterations of the positive phase (at most; fewer once no mean changes by more
    /// than --mf-tolerance).
    #[arg(long, default_value_t = 30)]
    mf_iters: usize,
    /// Mean-field stops once a pass changes no mean by more than this.
    #[arg(long, default_value_t = 1e-6)]
    mf_tolerance: f64,
    /// Mean-field iterations of the evaluation's variational bounds and of the AIS start's base
    /// rates (each pass can only raise the bound).
    #[arg(long, default_value_t = 100)]
    eval_mf_iters: usize,
    /// Chains run from random starts after training: the first 100 draw `samples.png`, all of
    /// them are classified (nearest mean of the test digits of each class) for the class
    /// histogram.
    #[arg(long, default_value_t = 1000)]
    sample_chains: usize,
    /// Gibbs sweeps of those chains.
    #[arg(long, default_value_t = 1000)]
    sample_sweeps: usize,
    #[command(flatten)]
    trajectory: common::TrajectoryOptions,
    /// Master seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Skip the AIS evaluation.
    #[arg(long)]
    no_ais: bool,
    /// AIS runs.
    #[arg(long, default_value_t = 100)]
    ais_runs: usize,
    /// Distributions of the AIS schedule (the paper: 20,000).
    #[arg(long, default_value_t = 20_000)]
    ais_betas: usize,
    /// Also run reverse AIS from chains started at training images and run for this many sweeps:
    /// an estimate of ln Z from above (an upper bound in expectation only if the chains have
    /// reached the model's distribution).
    #[arg(long, value_name = "SWEEPS")]
    reverse_ais: Option<usize>,
    /// The AIS start model: every layer at its base rate over the training data (hidden layers:
    /// mean-field posterior means), or the paper's (visible base rates, hidden layers uniform).
    #[arg(long, value_enum, default_value_t = AisStart::BaseRate)]
    #[serde(default)]
    ais_start: AisStart,
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
    /// Joint training at rate 0.003 decayed linearly to zero over 250 epochs, momentum 0.5, 10
    /// mean-field iterations and 3 sweeps of the chains per update: test lower bound −84.57 nats
    /// (forward and reverse AIS within 0.14) in 139 minutes on 2 cores (README).
    Literature,
}

impl Default for Args {
    fn default() -> Self {
        Args::parse_from(["mnist_dbm"])
    }
}

/// Which [`DbmStart`] AIS anneals from.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum AisStart {
    /// [`DbmStart::base_rate`].
    #[default]
    BaseRate,
    /// [`DbmStart::from_visible`] with the visible base rates.
    Paper,
}

/// The settings of the run in `dir` with this invocation's epochs, evaluation and output
/// options.
fn resumed_args(dir: &Path, now: Args) -> boltzmann::Result<Args> {
    let saved: Args = common::load_args(dir, "mnist_dbm settings")?;
    Ok(Args {
        epochs: saved.lr_schedule.resumed_epochs(saved.epochs, now.epochs),
        run: now.run.resumed_in(dir),
        eval_mf_iters: now.eval_mf_iters,
        sample_chains: now.sample_chains,
        sample_sweeps: now.sample_sweeps,

        no_ais: now.no_ais,
        ais_runs: now.ais_runs,
        ais_betas: now.ais_betas,
        reverse_ais: now.reverse_ais,
        ais_start: now.ais_start,
        ..saved
    })
}

fn main() {
    common::main(run);
}

impl Args {
    /// These settings with the recipe's applied.
    fn with_recipe(self) -> Self {
        match self.recipe {
            None => self,
            Some(Recipe::Literature) => Args {
                lr: 0.003,
                lr_schedule: Schedule::Linear,
                momentum_initial: 0.5,
                momentum: 0.5,
                mf_iters: 10,
                sweeps: 3,
                epochs: 250,
                ..self
            },
        }
    }

    /// The mean-field settings of the evaluation.
    fn eval_mean_field(&self) -> MeanField {
        MeanField {
            iterations: self.eval_mf_iters,
            tolerance: self.mf_tolerance as f32,
        }
    }

    /// The settings of joint training, checkpointing into `out`.
    fn joint_config(&self, out: &Path) -> TrainConfig {
        let args = self;
        TrainConfig {
            epochs: args.epochs,
            learning_rate: args.lr_schedule.learning_rate(
                args.lr,
                args.lr_half_life,
                args.lr_factor,
                args.lr_floor,
                args.epochs,
            ),
            weight_decay: args.decay as f32,
            sparsity: common::zero_is_none(args.sparsity_target).map(|target| Sparsity {
                target: target as f32,
                cost: args.sparsity_cost as f32,
                decay: 0.9,
            }),
            momentum: Momentum {
                initial: args.momentum_initial as f32,
                later: args.momentum as f32,
                switch_epoch: args.momentum_switch,
            },
            negative: match args.pt {
                Some(k) => NegativePhase::Tempering {
                    k: Steps::Constant(k),
                    chains: args.chains,
                    betas: geometric_ladder(args.pt_rungs, 0.0).unwrap_or_default(),
                },
                None => NegativePhase::Pcd {
                    k: Steps::Constant(args.sweeps),
                    chains: args.chains,
                },
            },
            mean_field: MeanField {
                iterations: args.mf_iters,
                tolerance: args.mf_tolerance as f32,
            },
            binarize: args.data.visible == Visible::Bernoulli,
            centering: args.centering.map(|rate| Centering { rate: rate as f32 }),
            max_norm: common::zero_is_none(args.max_norm).map(|c| c as f32),
            chains_from_data: !args.random_chains,
            seed: args.seed,
            checkpoint: Some(args.run.checkpointing(out)),
            trajectory: args.trajectory.settings(),
            ..TrainConfig::joint()
        }
    }

    /// The settings of each pretrained RBM.
    fn pretrain_configs(&self) -> Vec<TrainConfig> {
        (0..self.layers.len())
            .map(|l| TrainConfig {
                epochs: self.pretrain_epochs,
                learning_rate: LearningRate::Constant(self.pretrain_lr as f32),
                weight_decay: self.pretrain_decay as f32,
                negative: NegativePhase::Cd {
                    k: Steps::Constant(1),
                },
                // Gaussian data stays real-valued; the layers above read probabilities.
                binarize: l > 0 || self.data.visible == Visible::Bernoulli,
                seed: self.seed.wrapping_add(l as u64),
                ..TrainConfig::default()
            })
            .collect()
    }

    /// The AIS settings of the evaluation.
    fn ais_config(&self) -> boltzmann::Result<AisConfig> {
        Ok(AisConfig {
            runs: self.ais_runs,
            betas: Betas::three_stage(self.ais_betas)?,
            seed: self.seed,
        })
    }

    /// Checks every setting, pretraining's, joint training's and evaluation's, before any work;
    /// `visible`: the data's units.
    fn validate(&self, joint: &TrainConfig, visible: usize) -> boltzmann::Result<()> {
        use common::{MAX_CHAINS, MAX_SWEEPS, MAX_UNITS, count_in};
        self.run.validate()?;
        count_in("--layers (how many)", self.layers.len(), 1, 16)?;
        for &units in &self.layers {
            count_in("--layers", units, 1, MAX_UNITS)?;
        }
        count_in("--chains", self.chains, 1, MAX_CHAINS)?;
        count_in("--eval-mf-iters", self.eval_mf_iters, 1, MAX_SWEEPS)?;
        count_in("--sample-chains", self.sample_chains, 1, MAX_CHAINS)?;
        count_in("--sample-sweeps", self.sample_sweeps, 1, MAX_SWEEPS)?;
        let units = self
            .layers
            .iter()
            .fold(visible, |n, &l| n.saturating_add(l));
        // Weights (and their velocities) of each coupling.
        let sizes: Vec<usize> = std::iter::once(visible)
            .chain(self.layers.iter().copied())
            .collect();
        for pair in sizes.windows(2) {
            common::fits_memory("--layers (a coupling's weights)", pair[0], 2 * pair[1])?;
        }
        common::fits_memory("--chains", self.chains, units)?;
        if let Some(k) = self.pt {
            count_in("--pt", k, 1, MAX_SWEEPS)?;
            count_in("--pt-rungs", self.pt_rungs, 2, 1000)?;
            let chains = self.chains.saturating_mul(self.pt_rungs);
            common::fits_memory("--chains (× --pt-rungs)", chains, units)?;
        }
        common::fits_memory("--sample-chains", self.sample_chains, units)?;
        self.trajectory.validate(units)?;
        joint.validate()?;
        for config in self.pretrain_configs() {
            config.validate()?;
        }
        if !self.no_ais {
            count_in("--ais-runs", self.ais_runs, 1, MAX_CHAINS)?;
            common::fits_memory("--ais-runs", self.ais_runs, units)?;
            self.ais_config()?;
            if let Some(sweeps) = self.reverse_ais {
                count_in("--reverse-ais", sweeps, 0, MAX_SWEEPS)?;
            }
        }
        Ok(())
    }
}

fn run(args: Args) -> boltzmann::Result<()> {
    let started = Instant::now();
    let args = match &args.run.resume {
        Some(dir) => resumed_args(&dir.clone(), args)?,
        None => args.with_recipe(),
    };
    let data = args.data.load()?;
    match data.visible {
        Visible::Bernoulli => train_and_evaluate::<Bernoulli>(args, &data, started),
        Visible::Gaussian => train_and_evaluate::<Gaussian>(args, &data, started),
    }
}

/// Pretrains and jointly trains a DBM with visible units `V` on `data` (or resumes joint
/// training), then samples and evaluates it.
fn train_and_evaluate<V: Layer + FromBias>(
    args: Args,
    data: &Data,
    started: Instant,
) -> boltzmann::Result<()> {
    let config = args.joint_config(&args.run.out_path("mnist_dbm"));
    args.validate(&config, data.units())?;
    let out = args.run.out_dir("mnist_dbm")?;
    common::save_args(&out, &args)?;
    let mut metrics = common::MetricsLog::start(
        &out,
        args.run.resume.is_some(),
        &[
            ("/log_unnormalised", "mean-field E[-E]+H of training images"),
            ("/learning_rate", "learning rate"),
        ],
    )?;
    fn report<'a>(
        progress: &'a ProgressBar,
        metrics: &'a mut common::MetricsLog,
    ) -> impl FnMut(&EpochMetrics) + 'a {
        move |m| {
            metrics.push(m);
            progress.suspend(|| {
                let online = common::trajectory_note(m.trajectory.as_ref(), "train bound", |t| {
                    Some(t.train_log_likelihood)
                });
                let swaps = common::lowest_swap_rate(m.swap_rates.as_deref());
                println!(
                    "joint epoch {:3}  {:6.2} s  lr {:.2e}  mean-field E[-E]+H {:10.3}{swaps}{online}",
                    m.epoch, m.seconds, m.learning_rate, m.log_unnormalised
                )
            });
            progress.set_position(m.epoch as u64);
        }
    }
    let (dbm, history) = match &args.run.resume {
        Some(dir) => {
            let progress = common::bar(args.epochs, "joint epoch");
            let resumed = resume(
                dir.join("checkpoint.safetensors"),
                &data.train,
                None,
                &config,
                report(&progress, &mut metrics),
            )?;
            progress.finish_and_clear();
            resumed
        }
        None => {
            let mut dbm = pretrain_stack::<V>(&args, data)?;
            let progress = common::bar(args.epochs, "joint epoch");
            let history = train(
                &mut dbm,
                &data.train,
                None,
                &config,
                report(&progress, &mut metrics),
            )?;
            progress.finish_and_clear();
            (dbm, history)
        }
    };
    metrics.finish()?;
    let train_seconds: f64 = history.iter().map(|m| m.seconds).sum();
    finish(&args, &out, data, &dbm, &history, train_seconds, started)
}

/// Greedy pretraining of the stack, composed into a DBM.
fn pretrain_stack<V: Layer + FromBias>(
    args: &Args,
    data: &Data,
) -> boltzmann::Result<Dbm<V, Bernoulli>> {
    let configs = args.pretrain_configs();
    let progress = common::bar(
        args.pretrain_epochs.saturating_mul(args.layers.len()),
        "pretraining epoch",
    );
    let pretrained = pretrain::<V>(&data.train, &args.layers, &configs, |l, m| {
        progress.suspend(|| {
            println!(
                "pretrain RBM {l} epoch {:3}  {:6.2} s  recon error {:8.3}",
                m.epoch, m.seconds, m.recon_error
            )
        });
        progress.inc(1);
    })?;
    progress.finish_and_clear();
    Ok(pretrained.dbm)
}

/// Saves the model and samples, evaluates it and prints the results.
#[allow(clippy::too_many_arguments)]
fn finish<V: Layer>(
    args: &Args,
    out: &Path,
    data: &Data,
    dbm: &Dbm<V, Bernoulli>,
    history: &[EpochMetrics],
    train_seconds: f64,
    started: Instant,
) -> boltzmann::Result<()> {
    dbm.save(out.join("model.safetensors"))?;
    dbm.save_npz(out.join("model.npz"))?;
    let mut chains = Chains::random(dbm, args.sample_chains, args.seed)?;
    chains.sweep(dbm, args.sample_sweeps)?;
    // Show E[v | h₁] of the final states rather than binary samples.
    let states: Vec<_> = (0..dbm.num_layers())
        .filter_map(|l| chains.layer(l).cloned())
        .collect();
    let samples = dbm.conditional_mean(0, &states)?;
    let class_fractions = common::sample_classes(&samples, data)?;
    data.save_tiles(
        out.join("samples.png"),
        &samples.columns(0, samples.ncols().min(100)).into_owned(),
        10,
        data.scale(),
    )?;
    println!(
        "wrote model.safetensors, model.npz and samples.png to {}",
        out.display()
    );

    // Evaluation: AIS for ln Z, mean-field lower bounds on test and training log-probabilities.
    let evaluation = if args.no_ais {
        None
    } else {
        let (train_bin, test_bin) = data.fixed(args.seed)?;
        let config = EvaluationConfig {
            ais: args.ais_config()?,
            // Reverse AIS from training images moved by Gibbs sweeps.
            reverse: args.reverse_ais.map(|sweeps| ReverseStart {
                from_test: false,
                sweeps,
            }),
            mean_field: args.eval_mean_field(),
        };
        let start = match args.ais_start {
            AisStart::BaseRate => Start::hidden_base_rates(dbm, &train_bin, &config.mean_field)?,
            AisStart::Paper => Start::base_rate_default(dbm, &train_bin)?,
        };
        let e = evaluate(
            dbm,
            &start,
            &config,
            &train_bin,
            &test_bin,
            common::ais_progress(),
        )?;
        if e.forward.log_z < e.log_z_floor {
            // ln p(v) < 0 for binary data and unit-variance Gaussian units, so a positive lower
            // bound means ln Ẑ is far too low.
            eprintln!(
                "warning: AIS gives ln Ẑ = {:.2}, below {:.2}, the variational bound of one \
                 example, which ln Z cannot be below: AIS has underestimated ln Z (ESS {:.1} of \
                 {} runs); the model mixes too poorly for this schedule, and the bounds below \
                 are not valid",
                e.forward.log_z, e.log_z_floor, e.forward.effective_sample_size, args.ais_runs
            );
        }
        if let (Some(r), Some(sweeps)) = (&e.reverse, args.reverse_ais) {
            println!(
                "reverse AIS from training images after {sweeps} sweeps: ln Ẑ = {:.3} \
                 [{:.3}, {:.3}], ESS {:.1}",
                r.log_z, r.log_z_lower, r.log_z_upper, r.effective_sample_size
            );
        }
        println!(
            "AIS: ln Ẑ = {:.3} [{:.3}, {:.3}] (ln Z ≥ {:.3}); test lower bound {:.3} ± {:.3} \
             nats, train {:.3}",
            e.forward.log_z,
            e.forward.log_z_lower,
            e.forward.log_z_upper,
            e.log_z_floor,
            e.test.mean,
            e.test.stderr,
            e.train.mean
        );
        Some(e)
    };

    if args.run.json {
        let last = history.last();
        let json = serde_json::json!({
            "example": "mnist_dbm",
            "settings": &args,
            "seed": args.seed,
            "seconds": started.elapsed().as_secs_f64(),
            "joint_seconds_per_epoch": train_seconds / history.len().max(1) as f64,
            "epochs_run": history.len(),
            "resumed": args.run.resume.is_some(),
            "out": out,
            "last_epoch": last,
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
        let defaults = Args::parse_from(["mnist_dbm"]);
        common::fuzz_args_json(&defaults, |args: Args| {
            let config = args.joint_config(Path::new("out"));
            args.validate(&config, 784)
        });
    }
}
