//! Throughput of the sampler, of training and of AIS; criterion reports chain-sweeps per second
//! for the Gibbs groups.
//!
//! The Gibbs model is what training starts from (W ~ N(0, 0.01²), visible biases the log-odds of
//! the MNIST pixel means, hidden biases 0) and the chains start at binarised MNIST training
//! images, so the states have realistic sparsity.
//!
//! - `gibbs/784x500/N`: one sweep of N chains (N = 1, 10, 100, 1000);
//! - `gibbs/784xH/N`: the scaling in hidden units (H = 250, 1000) and chains (N = 100, 1000);
//! - `train/cd1_epoch_mnist_500`: one CD-1 epoch over the 60,000 MNIST images, batch 100;
//! - `train/dbm_epoch_mnist_500_1000`: one joint epoch (mean-field positive phase, persistent
//!   chains; `TrainConfig::joint()`) of a 784-500-1000 DBM over the first 10,000 MNIST images;
//! - `ais/sm2008_784x500`: AIS with the paper's 14,501 β and 100 runs.
//!
//! `cargo bench --bench gibbs` (set `RAYON_NUM_THREADS=1` for one thread); a filter such as
//! `cargo bench --bench gibbs -- gibbs/` runs one family.

use boltzmann::data::{Mnist, binarize_stochastic};
use boltzmann::partition::{AisConfig, Betas, Start, ais};
use boltzmann::train::{TrainConfig, train};
use boltzmann::{Bernoulli, Chains, Dbm, Rbm};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::time::Duration;

type Bb = Rbm<Bernoulli, Bernoulli>;

fn model(mnist: &Mnist, hidden: usize) -> Bb {
    let mut rbm: Bb = Rbm::init(784, hidden, 1).unwrap();
    rbm.set_visible_bias_from_data(&mnist.train_images).unwrap();
    rbm
}

fn gibbs(c: &mut Criterion) {
    // Every figure says where it came from.
    eprintln!("{}", boltzmann::cpu::describe());
    let mnist = Mnist::load(Mnist::shipped_dir()).expect("shipped MNIST");
    let points: [(usize, &[usize]); 3] = [
        (500, &[1, 10, 100, 1000]),
        (250, &[100, 1000]),
        (1000, &[100, 1000]),
    ];
    for (hidden, chain_counts) in points {
        let rbm = model(&mnist, hidden);
        let mut group = c.benchmark_group(format!("gibbs/784x{hidden}"));
        for &chains in chain_counts {
            let start = binarize_stochastic(&mnist.train_images.columns(0, chains).into_owned(), 2)
                .unwrap();
            let mut state = Chains::from_visible(&rbm, start, 3).unwrap();
            group.throughput(Throughput::Elements(chains as u64));
            group.bench_function(BenchmarkId::from_parameter(chains), |b| {
                b.iter(|| state.sweep(&rbm, 1).unwrap())
            });
        }
        group.finish();
    }
}

fn train_epoch(c: &mut Criterion) {
    let mnist = Mnist::load(Mnist::shipped_dir()).expect("shipped MNIST");
    let config = TrainConfig {
        epochs: 1,
        binarize: true,
        monitor_examples: 100,
        ..TrainConfig::default()
    };
    let mut group = c.benchmark_group("train");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(40));
    group.bench_function("cd1_epoch_mnist_500", |b| {
        b.iter(|| {
            let mut rbm: Bb = Rbm::init(784, 500, 1).unwrap();
            train(&mut rbm, &mnist.train_images, None, &config, |_| {}).unwrap();
            rbm
        })
    });
    let examples = mnist.train_images.columns(0, 10_000).into_owned();
    let joint = TrainConfig {
        epochs: 1,
        binarize: true,
        monitor_examples: 100,
        ..TrainConfig::joint()
    };
    group.bench_function("dbm_epoch_mnist_500_1000", |b| {
        b.iter(|| {
            let mut dbm: Dbm<Bernoulli> = Dbm::init(&[784, 500, 1000], 1).unwrap();
            train(&mut dbm, &examples, None, &joint, |_| {}).unwrap();
            dbm
        })
    });
    group.finish();
}

fn ais_sm2008(c: &mut Criterion) {
    let mnist = Mnist::load(Mnist::shipped_dir()).expect("shipped MNIST");
    let rbm = model(&mnist, 500);
    let (train_bin, _) = mnist.binarized(0).unwrap();
    let start = Start::base_rate_default(&rbm, &train_bin).unwrap();
    let config = AisConfig {
        runs: 100,
        betas: Betas::paper(),
        seed: 0,
    };
    let mut group = c.benchmark_group("ais");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(60));
    group.bench_function("sm2008_784x500", |b| {
        b.iter(|| ais(&rbm, &start, &config, |_, _| {}).unwrap())
    });
    group.finish();
}

criterion_group!(benches, gibbs, train_epoch, ais_sm2008);
criterion_main!(benches);
