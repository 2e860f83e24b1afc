//! Blocked Gibbs sweeps of a 784×500 Bernoulli RBM; criterion reports chain-sweeps per second.
//!
//! The model is what training starts from (W ~ N(0, 0.01²), visible biases the log-odds of the
//! MNIST pixel means, hidden biases 0) and the chains start at binarised MNIST training images,
//! so the states have realistic sparsity.
//!
//! `cargo bench --bench gibbs` (set `RAYON_NUM_THREADS=1` for one thread).

use boltzmann::data::{Mnist, binarize_stochastic};
use boltzmann::{Bernoulli, Chains, Rbm};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn gibbs(c: &mut Criterion) {
    let mnist = Mnist::load(Mnist::shipped_dir()).expect("shipped MNIST");
    let mut rbm: Rbm<Bernoulli, Bernoulli> = Rbm::init(784, 500, 1).unwrap();
    rbm.set_visible_bias_from_data(&mnist.train_images).unwrap();
    let mut group = c.benchmark_group("gibbs/784x500");
    for chains in [1usize, 10, 100, 1000] {
        let start =
            binarize_stochastic(&mnist.train_images.columns(0, chains).into_owned(), 2).unwrap();
        let mut state = Chains::from_visible(&rbm, start, 3).unwrap();
        group.throughput(Throughput::Elements(chains as u64));
        group.bench_function(BenchmarkId::from_parameter(chains), |b| {
            b.iter(|| state.sweep(&rbm, 1).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, gibbs);
criterion_main!(benches);
