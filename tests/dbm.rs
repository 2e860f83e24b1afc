//! Deep Boltzmann machines against brute-force enumeration of tiny models (6-4-3 units).

mod common;

use boltzmann::dbm::{MeanField, Parity};
use boltzmann::partition::{
    enumerable_within, log_partition_exact, log_unnormalised_exact, unnormalised_enumerable_within,
};
use boltzmann::{Bernoulli, Chains, Dbm, Gaussian, Layer, Rbm};
use common::*;
use nalgebra::{DMatrix, DVector};

/// Every joint state (v, h1, h2) as three matrices with one column per joint state, the first
/// layer varying slowest.
fn joint_states(dbm: &Dbm<Bernoulli>) -> Vec<DMatrix<f32>> {
    let sizes = dbm.layer_sizes();
    let total: usize = sizes.iter().map(|&s| 1usize << s).product();
    let mut out: Vec<DMatrix<f32>> = sizes.iter().map(|&s| DMatrix::zeros(s, total)).collect();
    for k in 0..total {
        let mut index = k;
        for l in (0..sizes.len()).rev() {
            let state = index % (1 << sizes[l]);
            index >>= sizes[l];
            for i in 0..sizes[l] {
                out[l][(i, k)] = ((state >> i) & 1) as f32;
            }
        }
    }
    out
}

/// ln Σ over joint states grouped by `key`, as a map from key to log-sum.
fn log_marginal(energies: &DVector<f64>, keys: &[usize], groups: usize) -> Vec<f64> {
    (0..groups)
        .map(|g| {
            log_sum_exp(
                keys.iter()
                    .zip(energies.iter())
                    .filter(|(k, _)| **k == g)
                    .map(|(_, e)| -e),
            )
        })
        .collect()
}

fn keys(x: &DMatrix<f32>) -> Vec<usize> {
    x.column_iter()
        .map(|c| binary_index(c.as_slice()))
        .collect()
}

#[test]
fn log_partition_and_free_energies_match_enumeration() {
    let dbm = random_dbm(1.0, 1);
    let joint = joint_states(&dbm);
    let e = dbm.energy(&joint).unwrap();
    let log_z = log_sum_exp(e.iter().map(|x| -x));
    assert!(
        (log_partition_exact(&dbm).unwrap() - log_z).abs() < 1e-9 * log_z.abs().max(1.0) + 1e-6
    );

    // Odd layer (h1) summed out: F(v, h2) = −ln Σ_{h1} exp(−E).
    let vh2: Vec<usize> = keys(&joint[0])
        .iter()
        .zip(keys(&joint[2]))
        .map(|(v, h2)| v * 8 + h2)
        .collect();
    let brute = log_marginal(&e, &vh2, 64 * 8);
    let f = dbm.free_energy(&joint, Parity::Odd).unwrap();
    for (k, fk) in vh2.iter().zip(f.iter()) {
        assert!((-fk - brute[*k]).abs() < 1e-4, "F(v, h2)");
    }
    // Even layers (v, h2) summed out: F(h1).
    let h1 = keys(&joint[1]);
    let brute = log_marginal(&e, &h1, 16);
    let f = dbm.free_energy(&joint, Parity::Even).unwrap();
    for (k, fk) in h1.iter().zip(f.iter()) {
        assert!((-fk - brute[*k]).abs() < 1e-4, "F(h1)");
    }
    // ln p*(v) = ln Σ_{h1, h2} exp(−E).
    let v = keys(&joint[0]);
    let brute = log_marginal(&e, &v, 64);
    let vs = states(dbm.visible());
    let lp = log_unnormalised_exact(&dbm, &vs).unwrap();
    for (c, col) in vs.column_iter().enumerate() {
        assert!(
            (lp[c] - brute[binary_index(col.as_slice())]).abs() < 1e-4,
            "ln p*(v)"
        );
    }
}

#[test]
fn conditionals_match_enumeration() {
    let dbm = random_dbm(1.0, 2);
    let joint = joint_states(&dbm);
    let e = dbm.energy(&joint).unwrap();
    // For a few joint states, E[x_l | neighbours] from the enumerated energies of every state of
    // layer l with the others held fixed.
    for k in [0usize, 77, 1000, 5555, 8191] {
        for l in 0..3 {
            let fixed: Vec<usize> = (0..3).filter(|&m| m != l).collect();
            let same = |c: usize| {
                fixed
                    .iter()
                    .all(|&m| joint[m].column(c) == joint[m].column(k))
            };
            let group: Vec<usize> = (0..e.len()).filter(|&c| same(c)).collect();
            let log_norm = log_sum_exp(group.iter().map(|&c| -e[c]));
            let at_k: Vec<DMatrix<f32>> =
                joint.iter().map(|x| x.columns(k, 1).into_owned()).collect();
            let mean = dbm.conditional_mean(l, &at_k).unwrap();
            for i in 0..dbm.layer_sizes()[l] {
                let exact: f64 = group
                    .iter()
                    .map(|&c| (-e[c] - log_norm).exp() * f64::from(joint[l][(i, c)]))
                    .sum();
                assert!(
                    (f64::from(mean[(i, 0)]) - exact).abs() < 1e-5,
                    "layer {l} unit {i}"
                );
            }
        }
    }
}

/// Exact p(v) of the DBM by enumeration.
fn exact_visible(dbm: &Dbm<Bernoulli>) -> Vec<f64> {
    let vs = states(dbm.visible());
    let lp = log_unnormalised_exact(dbm, &vs).unwrap();
    let log_z = log_partition_exact(dbm).unwrap();
    lp.iter().map(|l| (l - log_z).exp()).collect()
}

#[test]
fn gibbs_samples_the_exact_distribution() {
    // χ²₀.₉₉₉ quantiles: 103.44 for 63 degrees of freedom, 24.32 for 7.
    let dbm = random_dbm(1.0, 3);
    let exact = exact_visible(&dbm);
    let mut chains = Chains::random(&dbm, 100_000, 4).unwrap();
    chains.sweep(&dbm, 60).unwrap();
    let mut counts = vec![0u64; 64];
    for col in chains.visible().column_iter() {
        counts[binary_index(col.as_slice())] += 1;
    }
    let chi2 = chi_square(&counts, &exact);
    assert!(chi2 < 103.44, "χ² = {chi2} with 63 degrees of freedom");

    // Clamped: v0 = 1, v1 = 0, v2 = 1; the free units follow p(v3, v4, v5 | v0, v1, v2).
    let mask = [true, true, true, false, false, false];
    let index = |free: usize| 0b101 | (free << 3);
    let joint: Vec<f64> = (0..8).map(|free| exact[index(free)]).collect();
    let total: f64 = joint.iter().sum();
    let conditional: Vec<f64> = joint.iter().map(|p| p / total).collect();
    let values = DMatrix::from_fn(6, 100_000, |i, _| if i == 0 || i == 2 { 1.0 } else { 0.0 });
    let mut chains = Chains::random(&dbm, 100_000, 5).unwrap();
    chains.clamp(&mask, &values).unwrap();
    chains.sweep(&dbm, 60).unwrap();
    let mut counts = vec![0u64; 8];
    for col in chains.visible().column_iter() {
        assert_eq!((col[0], col[1], col[2]), (1.0, 0.0, 1.0));
        counts[binary_index(col.as_slice()) >> 3] += 1;
    }
    let chi2 = chi_square(&counts, &conditional);
    assert!(chi2 < 24.32, "χ² = {chi2} with 7 degrees of freedom");
}

#[test]
fn mean_field_reaches_a_fixed_point_and_bounds_the_log_likelihood() {
    let dbm = random_dbm(1.0, 6);
    let vs = states(dbm.visible());
    let settings = MeanField {
        iterations: 500,
        tolerance: 1e-7,
    };
    let mu = dbm.mean_field(&vs, &settings).unwrap();
    // The fixed-point equations μ_l = σ(W_lᵀ μ_{l−1} + W_{l+1} μ_{l+1} + b_l).
    let mut all = vec![vs.clone()];
    all.extend(mu.iter().cloned());
    for l in 1..3 {
        let again = dbm.conditional_mean(l, &all).unwrap();
        assert!(
            (&again - &all[l]).abs().max() < 1e-5,
            "layer {l} is not at a fixed point"
        );
    }
    // Variational bound ≤ exact ln p(v), for every visible state.
    let log_z = log_partition_exact(&dbm).unwrap();
    let exact = log_unnormalised_exact(&dbm, &vs).unwrap();
    let bound = dbm.variational_bound_unnormalised(&vs, &mu).unwrap();
    for (b, e) in bound.iter().zip(exact.iter()) {
        assert!(b - log_z <= e - log_z + 1e-9, "bound {b} above exact {e}");
    }
    // …and not vacuous: within a few nats on these small models.
    let gap = exact
        .iter()
        .zip(bound.iter())
        .map(|(e, b)| e - b)
        .fold(0.0, f64::max);
    assert!(gap < 3.0, "largest gap {gap}");
}

#[test]
fn model_files_round_trip_in_one_schema_for_any_depth() {
    let dir = TempDir::new("dbm");
    let dbm = random_dbm(0.5, 7);
    dbm.save(dir.join("d.safetensors")).unwrap();
    assert_eq!(
        Dbm::<Bernoulli>::load(dir.join("d.safetensors")).unwrap(),
        dbm
    );
    dbm.save_npz(dir.join("d.npz")).unwrap();
    assert_eq!(Dbm::<Bernoulli>::load_npz(dir.join("d.npz")).unwrap(), dbm);
    // An RBM's file is the layered machine's: it loads as a DBM of one hidden layer, and a
    // deeper machine's file does not load as an RBM.
    let rbm = random_rbm::<Bernoulli, Bernoulli>(6, 4, 0.5, 8);
    rbm.save(dir.join("r.safetensors")).unwrap();
    let machine = Dbm::<Bernoulli>::load(dir.join("r.safetensors")).unwrap();
    assert_eq!(machine, rbm.clone().into_machine());
    assert!(Rbm::<Bernoulli, Bernoulli>::load(dir.join("d.safetensors")).is_err());
    assert!(matches!(
        Rbm::<Gaussian, Bernoulli>::load(dir.join("r.safetensors")),
        Err(boltzmann::Error::Kind { .. })
    ));
    assert!(Dbm::<Bernoulli>::init(&[5], 1).is_err());
    assert!(Dbm::<Bernoulli>::init(&[5, 0, 3], 1).is_err());
}

/// The model file read without this crate, as any safetensors reader sees it: an 8-byte
/// header length, a JSON header with the documented metadata and each tensor's dtype, shape
/// and byte range, then row-major f32 tensors whose CRC-32 the metadata holds.
#[test]
fn model_files_are_plain_safetensors() {
    let dir = TempDir::new("safetensors");
    let dbm = random_dbm(0.5, 11);
    let path = dir.join("m.safetensors");
    dbm.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let meta = &header["__metadata__"];
    assert_eq!(meta["format"], "boltzmann-model");
    assert_eq!(meta["format_version"], "2");
    assert_eq!(meta["machine"], "dbm");
    let layers: serde_json::Value = serde_json::from_str(meta["layers"].as_str().unwrap()).unwrap();
    let sizes = dbm.layer_sizes();
    for (l, layer) in layers.as_array().unwrap().iter().enumerate() {
        assert_eq!(layer["kind"], "bernoulli");
        assert_eq!(layer["units"], serde_json::json!([sizes[l]]));
    }
    let tensor = |name: &str| -> (Vec<u64>, Vec<f32>) {
        let t = &header[name];
        assert_eq!(t["dtype"], "F32");
        let shape = t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_u64().unwrap())
            .collect();
        let range = t["data_offsets"].as_array().unwrap();
        let (a, b) = (
            range[0].as_u64().unwrap() as usize,
            range[1].as_u64().unwrap() as usize,
        );
        let values = data[a..b]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        (shape, values)
    };
    let mut names: Vec<String> = header
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect();
    names.sort();
    assert_eq!(names, ["W1", "W2", "b0", "b1", "b2"]);
    for l in 1..sizes.len() {
        let (shape, values) = tensor(&format!("W{l}"));
        assert_eq!(shape, [sizes[l - 1] as u64, sizes[l] as u64]);
        let w = dbm.weights(l).unwrap();
        // Row-major: element (i, j) at i·cols + j.
        for i in 0..sizes[l - 1] {
            for j in 0..sizes[l] {
                assert_eq!(values[i * sizes[l] + j], w[(i, j)]);
            }
        }
    }
    let (_, b0) = tensor("b0");
    assert_eq!(b0, dbm.visible().bias().as_slice());
    let mut crc_input = Vec::new();
    for name in &names {
        let t = &header[name.as_str()]["data_offsets"];
        let (a, b) = (
            t[0].as_u64().unwrap() as usize,
            t[1].as_u64().unwrap() as usize,
        );
        crc_input.extend_from_slice(&data[a..b]);
    }
    let crc = format!("{:08x}", crc32(&crc_input));
    assert_eq!(meta["crc32"], crc.as_str());
}

/// CRC-32 (IEEE, reflected, as zlib), bit by bit: an independent check of the stored one.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A DBM of the given sizes with N(0, scale²) weights and biases.
/// Mean-field over many columns gives each block of 50 the means it gets alone (each block stops
/// at its own convergence; products of all columns at once do not mix them), at any thread count:
/// for 0/1 data of one density, and for blocks of densities (0.9, 0.3, 0.7) whose products with
/// the data take different paths alone than their average would.
#[test]
fn mean_field_blocks_are_independent_of_their_neighbours_and_threads() {
    let dbm = random_dbm_sized(&[20, 16, 12], 1.0, 9);
    let normals = DMatrix::from_vec(20, 130, normal(20 * 130, 1.0, 3));
    let v = normals.map(|x| f32::from(x > 0.5));
    let mixed = DMatrix::from_fn(20, 130, |i, j| {
        let threshold = [-1.28, 0.52, -0.52][j / 50];
        f32::from(normals[(i, j)] > threshold)
    });
    let settings = MeanField {
        iterations: 200,
        tolerance: 1e-4,
    };
    let with_threads = |threads: usize, v: &DMatrix<f32>| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| dbm.mean_field(v, &settings).unwrap())
    };
    for v in [&v, &mixed] {
        let all = with_threads(1, v);
        assert!(with_threads(2, v) == all, "two threads");
        assert!(with_threads(3, v) == all, "three threads");
        for (start, len) in [(0, 50), (50, 50), (100, 30)] {
            let alone = with_threads(1, &v.columns(start, len).into_owned());
            for (a, b) in alone.iter().zip(&all) {
                assert!(*a == b.columns(start, len), "block at {start}");
            }
        }
    }
    // A short last block of fewer columns than a product's GEMM path needs; no columns at all.
    let v = v.columns(0, 110).into_owned();
    let one = with_threads(1, &v);
    assert!(
        with_threads(2, &v) == one,
        "50 + 50 + 10 columns, two threads"
    );
    assert!(
        with_threads(3, &v) == one,
        "50 + 50 + 10 columns, three threads"
    );
    let none = with_threads(2, &v.columns(0, 0).into_owned());
    assert!(none.iter().all(|m| m.ncols() == 0));
}

fn random_dbm_sized(sizes: &[usize], scale: f32, seed: u64) -> Dbm<Bernoulli> {
    let weights = sizes
        .windows(2)
        .enumerate()
        .map(|(l, p)| DMatrix::from_vec(p[0], p[1], normal(p[0] * p[1], scale, seed + l as u64)))
        .collect();
    let layers: Vec<Bernoulli> = sizes
        .iter()
        .enumerate()
        .map(|(l, &n)| Bernoulli::new(DVector::from_vec(normal(n, scale, seed + 10 + l as u64))))
        .collect();
    Dbm::new(layers[0].clone(), layers[1..].to_vec(), weights).unwrap()
}

#[test]
fn dbm_ais_brackets_the_exact_log_partition() {
    use boltzmann::partition::{AisConfig, Betas, Start, ais, exact_samples, reverse_ais};
    for seed in 0..3 {
        let dbm = random_dbm_sized(&[12, 10, 6], 1.0, 20 + seed);
        let exact = log_partition_exact(&dbm).unwrap();
        let start = Start::uniform(&dbm);
        let samples = exact_samples(&dbm, 200, seed).unwrap();
        for betas in [100, 3000] {
            let config = AisConfig {
                runs: 200,
                betas: Betas::three_stage(betas).unwrap(),
                seed,
            };
            let fwd = ais(&dbm, &start, &config, |_, _| {}).unwrap();
            let rev = reverse_ais(&dbm, &start, &samples, &config, |_, _| {}).unwrap();
            let context = format!("seed {seed}, {betas} β");
            assert_ais_sandwich(&fwd, &rev, exact, betas == 100, &context);
        }
    }
}

#[test]
fn gaussian_visible_dbm_ais_matches_exact() {
    use boltzmann::Gaussian;
    use boltzmann::partition::Start;
    // Gaussian visible units, Bernoulli hidden layers: ln Z enumerates h₁ and sums out v
    // (Gaussian cumulants) and h₂; AIS anneals h₁ from N(b_V, 1) × uniform hidden layers.
    let sizes = [5, 6, 4];
    let weights = (0..2)
        .map(|l| {
            DMatrix::from_vec(
                sizes[l],
                sizes[l + 1],
                normal(sizes[l] * sizes[l + 1], 0.4, 40 + l as u64),
            )
        })
        .collect();
    let visible = Gaussian::new(DVector::from_vec(normal(5, 0.5, 43)));
    let hidden = (1..3)
        .map(|l| Bernoulli::new(DVector::from_vec(normal(sizes[l], 0.5, 44 + l as u64))))
        .collect();
    let dbm: Dbm<Gaussian> = Dbm::new(visible, hidden, weights).unwrap();
    let exact = log_partition_exact(&dbm).unwrap();
    // Check the exact value itself: ln Z = ln Σ_{h₁,h₂} ∫ exp(−E) dv, with the v integral in
    // closed form (∫ exp(−½v² + a v) dv = √(2π) exp(½a²)) and h₂ enumerated.
    let h1 = states(dbm.hidden(1).unwrap());
    let h2 = states(dbm.hidden(2).unwrap());
    let (w1, w2) = (dbm.weights(1).unwrap(), dbm.weights(2).unwrap());
    let (b0, b1, b2) = (
        dbm.visible().bias(),
        dbm.hidden(1).unwrap().bias(),
        dbm.hidden(2).unwrap().bias(),
    );
    let mut terms = Vec::new();
    for a in h1.column_iter() {
        let va = w1 * a + b0;
        let log_v: f64 = va
            .iter()
            .map(|x| 0.5 * f64::from(*x).powi(2) + 0.5 * std::f64::consts::TAU.ln())
            .sum();
        for c in h2.column_iter() {
            let coupling = (a.transpose() * w2 * c)[(0, 0)];
            let biases = b1.dot(&a) + b2.dot(&c);
            terms.push(log_v + f64::from(coupling) + f64::from(biases));
        }
    }
    assert!((log_sum_exp(terms) - exact).abs() < 1e-4);
    let start = Start::from_bias(&dbm, b0.clone()).unwrap();
    assert_dbm_ais_matches_exact(&dbm, &start, 2000, 0.05);
}

#[test]
fn dbm_ais_from_base_rate_starts_matches_exact() {
    use boltzmann::dbm::MeanField;
    use boltzmann::partition::{AisConfig, Start, ais};
    // Starts whose biases differ from the model's: the visible base rates alone (the paper's),
    // and every layer at its base rate, so that odd and even hidden layers start away from
    // uniform too.
    let dbm = random_dbm_sized(&[12, 10, 6], 1.0, 50);
    let data = DMatrix::from_vec(12, 40, normal(480, 1.0, 51)).map(|x| f32::from(x > 0.5));
    let visible = Start::base_rate(&dbm, &data, 2.0).unwrap();
    assert_dbm_ais_matches_exact(&dbm, &visible, 3000, 0.1);
    let start = Start::hidden_base_rates(&dbm, &data, &MeanField::default()).unwrap();
    assert_dbm_ais_matches_exact(&dbm, &start, 3000, 0.1);
    // A start for another shape of model is refused.
    let other = random_dbm_sized(&[12, 10, 5], 1.0, 52);
    let err = ais(&other, &start, &AisConfig::default(), |_, _| {}).unwrap_err();
    assert!(matches!(err, boltzmann::Error::Shape { .. }), "{err}");
}

/// DBM AIS with 200 runs over `betas` distributions, for two seeds, holds the exact ln Z within
/// its ±3 s.e. bounds and lands within `tolerance` of it.
fn assert_dbm_ais_matches_exact<V: Layer>(
    dbm: &Dbm<V>,
    start: &boltzmann::partition::Start<V>,
    betas: usize,
    tolerance: f64,
) {
    use boltzmann::partition::{AisConfig, Betas, ais};
    let exact = log_partition_exact(dbm).unwrap();
    for seed in 0..2 {
        let config = AisConfig {
            runs: 200,
            betas: Betas::three_stage(betas).unwrap(),
            seed,
        };
        let est = ais(dbm, start, &config, |_, _| {}).unwrap();
        let msg = format!(
            "seed {seed}: exact {exact}, AIS {} [{}, {}]",
            est.log_z, est.log_z_lower, est.log_z_upper
        );
        assert!(
            est.log_z_lower <= exact && exact <= est.log_z_upper,
            "{msg}"
        );
        assert!((est.log_z - exact).abs() < tolerance, "{msg}");
    }
}

#[test]
fn dbm_ais_at_mnist_scale_matches_exact() {
    use boltzmann::dbm::MeanField;
    use boltzmann::partition::Start;
    // MNIST's 784 visible units and a 500-unit top layer, summed out in every AIS step, with a
    // 12-unit middle layer that can be enumerated: the sums over many units that the small
    // models above never reach, in f32 inputs and f64 weights.
    let dbm = random_dbm_sized(&[784, 12, 500], 0.15, 60);
    let data = DMatrix::from_vec(784, 50, normal(784 * 50, 1.0, 61)).map(|x| f32::from(x > 1.0));
    let start = Start::hidden_base_rates(&dbm, &data, &MeanField::default()).unwrap();
    assert_dbm_ais_matches_exact(&dbm, &start, 1000, 0.1);
}

#[test]
fn exact_samples_of_a_dbm_follow_the_enumerated_joint_distribution() {
    // 6-4-3 units: 8192 joint states. Each sample's (v, h1, h2) is counted and compared by χ²
    // with the enumerated p(v, h1, h2).
    let dbm = random_dbm(1.0, 5);
    let joint = joint_states(&dbm);
    let e = dbm.energy(&joint).unwrap();
    let log_z = log_partition_exact(&dbm).unwrap();
    let index = |v: usize, h1: usize, h2: usize| (v * 16 + h1) * 8 + h2;
    let mut probs = vec![0f64; 8192];
    for c in 0..e.len() {
        let k = index(
            binary_index(joint[0].column(c).as_slice()),
            binary_index(joint[1].column(c).as_slice()),
            binary_index(joint[2].column(c).as_slice()),
        );
        probs[k] = (-e[c] - log_z).exp();
    }
    let n = 200_000;
    let samples = boltzmann::partition::exact_samples(&dbm, n, 3).unwrap();
    let mut counts = vec![0u64; 8192];
    for c in 0..n {
        let k: Vec<usize> = samples
            .iter()
            .map(|x| binary_index(x.column(c).as_slice()))
            .collect();
        counts[index(k[0], k[1], k[2])] += 1;
    }
    assert_chi_square_fits(&counts, &probs);
}

#[test]
fn per_example_enumeration_cost_counts_the_even_hidden_layers() {
    // 784-20-20: ln Z enumerates 2^20 odd-layer states, but each example's ln p*(v) enumerates
    // 2^20 states of layer 2, so 60,000 examples cost 6·10^10 free energies.
    let deep = random_dbm_sized(&[784, 20, 20], 0.01, 1);
    assert!(enumerable_within(&deep, 1 << 20));
    assert!(!unnormalised_enumerable_within(&deep, 60_000, 1 << 20));
    assert!(unnormalised_enumerable_within(&deep, 1, 1 << 20));
    assert!(!unnormalised_enumerable_within(&deep, 2, 1 << 20));
    // One hidden layer: one free energy per example.
    let rbm = random_dbm_sized(&[784, 20], 0.01, 1);
    assert!(unnormalised_enumerable_within(&rbm, 60_000, 1 << 20));
    assert!(!unnormalised_enumerable_within(
        &rbm,
        (1 << 20) + 1,
        1 << 20
    ));
}
