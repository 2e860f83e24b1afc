//! A mutation fuzzer for every loader and for resuming from checkpoints, on the stable
//! toolchain. Each target starts from valid files, applies random bit flips, byte and length
//! edits, truncations, insertions and splices, and (for most inputs) repairs what would stop the
//! mutation at the door: the model file's length and checksum, the `.npz`'s zip structure and
//! CRCs, the IDX's gzip wrapper. Every input must give `Ok` or a typed error: no panic, no
//! abort, and no allocation above [`MAX_ALLOCATION`].
//!
//! `BOLTZMANN_FUZZ_RUNS` sets the inputs per target (default 2,000, a smoke run); the closing
//! line of each target gives executions, time, panics and the largest allocation. Inputs that
//! panicked are written to `target/fuzz-failures/` for a regression test.

mod common;

use boltzmann::classify::ClassRbm;
use boltzmann::data::{load_npz_examples, read_idx};
use boltzmann::io::read_npz;
use boltzmann::train::{
    Centering, FastWeights, NegativePhase, Sparsity, Steps, TrainConfig, resume, train,
};
use boltzmann::{Bernoulli, Dbm, Gaussian, Rbm, Softmax};
use common::*;
use nalgebra::DMatrix;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The largest single allocation any input may cause (the seeds themselves are a few KiB).
const MAX_ALLOCATION: usize = 16 << 20;

/// The system allocator, recording the largest request.
struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Targets run one at a time, so that each measures its own largest allocation.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn runs() -> usize {
    std::env::var("BOLTZMANN_FUZZ_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000)
}

/// xorshift64*: the fuzzer's own small generator (the inputs depend on nothing else).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
}

/// Values that break size arithmetic: zero, one, powers of two and their neighbours, numbers
/// whose products wrap around.
const INTERESTING: [u64; 14] = [
    0,
    1,
    2,
    0x7f,
    0xff,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 32,
    (1 << 60) + 10,
    6_148_914_691_236_517_206,
    964_689_422_222_055_633,
    i64::MAX as u64,
    u64::MAX,
    1 << 40,
];

/// One to four random edits of `bytes`, some of them from `others` (splices).
fn mutate(bytes: &mut Vec<u8>, rng: &mut Rng, others: &[Vec<u8>]) {
    for _ in 0..1 + rng.below(4) {
        let len = bytes.len();
        let at = rng.below(len);
        match rng.below(10) {
            0 | 1 if len > 0 => bytes[at] ^= 1 << rng.below(8),
            2 if len > 0 => bytes[at] = [0, 0xff, 0x7f, 0x80, 0xfb, 0xfc, 0xfd][rng.below(7)],
            3 if len > 0 => bytes[at] = rng.next() as u8,
            4 => {
                // A length field: 8, 4 or 2 little-endian bytes of an interesting value.
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let width = [8, 4, 2][rng.below(3)];
                let end = (at + width).min(len);
                bytes[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
            }
            5 => {
                // A bincode varint: 0xfd then a u64.
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let mut field = vec![0xfd];
                field.extend_from_slice(&v.to_le_bytes());
                let end = (at + 1 + rng.below(9)).min(len);
                bytes.splice(at..end, field);
            }
            6 => bytes.truncate(at),
            7 => {
                let n = rng.below(32).min(len - at);
                bytes.drain(at..at + n);
            }
            8 => {
                let n = 1 + rng.below(16);
                let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                bytes.splice(at..at, junk);
            }
            _ if !others.is_empty() => {
                let other = &others[rng.below(others.len())];
                let from = rng.below(other.len());
                let n = rng.below(64).min(other.len() - from);
                let end = (at + rng.below(64)).min(len);
                bytes.splice(at..end, other[from..from + n].iter().copied());
            }
            _ => {}
        }
    }
}

/// The header length and JSON header of a safetensors file, if it has them.
fn safetensors_header(bytes: &[u8]) -> Option<(usize, serde_json::Value)> {
    let n = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header = serde_json::from_slice(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
    Some((n, header))
}

/// The number of numeric leaves of `v`, counting those inside strings that hold JSON (the
/// `layers` metadata); with `set = Some((k, x))`, leaf `k` becomes `x` instead.
fn numbers(v: &mut serde_json::Value, set: &mut Option<(usize, u64)>) -> usize {
    use serde_json::Value;
    match v {
        Value::Number(_) => {
            if let Some((k, x)) = set {
                if *k == 0 {
                    *v = (*x).into();
                    *set = None;
                } else {
                    *k -= 1;
                }
            }
            1
        }
        Value::Array(a) => a.iter_mut().map(|x| numbers(x, set)).sum(),
        Value::Object(o) => o.values_mut().map(|x| numbers(x, set)).sum(),
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(mut inner) if inner.is_array() || inner.is_object() => {
                let count = numbers(&mut inner, set);
                *text = inner.to_string();
                count
            }
            _ => 0,
        },
        _ => 0,
    }
}

/// A safetensors file with its header length and `crc32` metadata made to fit its header and
/// tensor bytes again, so that a mutation reaches the checks behind them.
fn repair_safetensors(bytes: &mut Vec<u8>) {
    let Some((n, mut header)) = safetensors_header(bytes) else {
        return;
    };
    let data = bytes[8 + n..].to_vec();
    let mut ranges: Vec<(String, usize, usize)> = header
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| *k != "__metadata__")
        .filter_map(|(k, t)| {
            let r = t.get("data_offsets")?.as_array()?;
            let (a, b) = (r.first()?.as_u64()? as usize, r.get(1)?.as_u64()? as usize);
            Some((k.clone(), a, b))
        })
        .collect();
    ranges.sort();
    let mut crc = Vec::new();
    for (_, a, b) in ranges {
        crc.extend_from_slice(data.get(a..b).unwrap_or_default());
    }
    let sum = format!("{:08x}", crc32fast::hash(&crc));
    if let Some(meta) = header
        .get_mut("__metadata__")
        .and_then(|m| m.as_object_mut())
    {
        meta.insert("crc32".into(), sum.into());
    }
    let json = serde_json::to_vec(&header).unwrap();
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out.extend_from_slice(&data);
    *bytes = out;
}

/// A mutant of a safetensors seed: half the time one number of its header (a shape, a byte
/// range, a layer's units) set to a value that breaks size arithmetic, otherwise bytes mutated;
/// then (mostly) repaired.
fn safetensors_mutant(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = seeds[rng.below(seeds.len())].clone();
    if rng.chance(0.5)
        && let Some((n, mut header)) = safetensors_header(&bytes)
    {
        let count = numbers(&mut header, &mut None);
        let x = if rng.chance(0.5) {
            INTERESTING[rng.below(INTERESTING.len())]
        } else {
            rng.below(40) as u64
        };
        numbers(&mut header, &mut Some((rng.below(count), x)));
        let json = serde_json::to_vec(&header).unwrap();
        let mut out = (json.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&json);
        out.extend_from_slice(&bytes[8 + n..]);
        bytes = out;
    } else {
        mutate(&mut bytes, rng, seeds);
    }
    if rng.chance(0.9) {
        repair_safetensors(&mut bytes);
    }
    bytes
}

/// What a target saw.
#[derive(Default)]
struct Report {
    executions: usize,
    ok: usize,
    errors: usize,
    panics: usize,
}

/// Runs `inputs` inputs from `make(rng, i)` through `load` (which gets the input's path),
/// counting outcomes; panicking inputs are kept for regression tests.
fn fuzz(
    name: &str,
    seed: u64,
    mut make: impl FnMut(&mut Rng) -> Vec<u8>,
    file_name: &str,
    load: impl Fn(&Path) -> Result<(), boltzmann::Error> + std::panic::RefUnwindSafe,
) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new(&format!("fuzz-{name}"));
    let path = dir.join(file_name);
    let mut rng = Rng(seed | 1);
    let mut report = Report::default();
    let started = Instant::now();
    LARGEST.store(0, Ordering::Relaxed);
    let mut slowest = 0f64;
    for _ in 0..runs() {
        let input = make(&mut rng);
        std::fs::write(&path, &input).unwrap();
        let t = Instant::now();
        let outcome = std::panic::catch_unwind(|| load(&path));
        slowest = slowest.max(t.elapsed().as_secs_f64());
        report.executions += 1;
        match outcome {
            Ok(Ok(())) => report.ok += 1,
            Ok(Err(_)) => report.errors += 1,
            Err(_) => {
                report.panics += 1;
                let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
                let _ = std::fs::create_dir_all(&keep);
                let _ = std::fs::write(keep.join(format!("{name}-{}", report.panics)), &input);
            }
        }
    }
    let largest = LARGEST.load(Ordering::Relaxed);
    println!(
        "fuzz {name}: {} executions in {:.1} s ({} ok, {} typed errors), {} panics, largest allocation {} bytes, slowest input {:.3} s",
        report.executions,
        started.elapsed().as_secs_f64(),
        report.ok,
        report.errors,
        report.panics,
        largest,
        slowest
    );
    assert_eq!(
        report.panics, 0,
        "{name}: inputs that panicked are in target/tmp/fuzz-failures"
    );
    assert!(
        largest <= MAX_ALLOCATION,
        "{name}: an input allocated {largest} bytes at once"
    );
}

fn file_bytes(write: impl FnOnce(&Path)) -> Vec<u8> {
    let dir = TempDir::new("fuzz-seed");
    let path = dir.join("seed");
    write(&path);
    std::fs::read(path).unwrap()
}

#[test]
fn model_files() {
    let seeds = vec![
        file_bytes(|p| {
            random_rbm::<Bernoulli, Bernoulli>(7, 5, 0.5, 1)
                .save(p)
                .unwrap()
        }),
        file_bytes(|p| {
            random_rbm::<Bernoulli, Bernoulli>(1, 1, 0.5, 2)
                .save(p)
                .unwrap()
        }),
    ];
    fuzz(
        "model-rbm",
        11,
        |rng| safetensors_mutant(rng, &seeds),
        "m.safetensors",
        |p| Rbm::<Bernoulli, Bernoulli>::load(p).map(drop),
    );
    let seeds = vec![file_bytes(|p| {
        random_rbm::<Gaussian, Softmax>(5, 4, 0.5, 3)
            .save(p)
            .unwrap()
    })];
    fuzz(
        "model-gaussian-softmax",
        12,
        |rng| safetensors_mutant(rng, &seeds),
        "m.safetensors",
        |p| Rbm::<Gaussian, Softmax>::load(p).map(drop),
    );
    let seeds = vec![file_bytes(|p| {
        Dbm::<Bernoulli>::init(&[6, 4, 3], 4)
            .unwrap()
            .save(p)
            .unwrap()
    })];
    fuzz(
        "model-dbm",
        13,
        |rng| safetensors_mutant(rng, &seeds),
        "m.safetensors",
        |p| Dbm::<Bernoulli>::load(p).map(drop),
    );
    let seeds = vec![file_bytes(|p| {
        ClassRbm::init(6, 4, 3, 5).unwrap().save(p).unwrap()
    })];
    fuzz(
        "model-class-rbm",
        14,
        |rng| safetensors_mutant(rng, &seeds),
        "m.safetensors",
        |p| ClassRbm::load(p).map(drop),
    );
}

/// The `.npy` entries of an `.npz`, and the archive made from them.
fn zip_npys(entries: &[(String, Vec<u8>)], deflate: bool) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let options = zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, npy) in entries {
        // Names that zip refuses to write are fuzzed through the raw archive instead.
        if zip.start_file(name.as_str(), options).is_err() {
            continue;
        }
        zip.write_all(npy).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn unzip_npys(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut e = zip.by_index(i).unwrap();
            let name = e.name().unwrap().to_string();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            (name, data)
        })
        .collect()
}

/// A `.npy` of `shape` written by hand with any header text, as hostile files are.
fn npy_with_header(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Mutants of `.npz` files: mostly one array's bytes mutated (often in its header's numbers)
/// and the archive rebuilt around it, sometimes the archive itself.
fn npz_mutant(rng: &mut Rng, seeds: &[Vec<(String, Vec<u8>)>], archives: &[Vec<u8>]) -> Vec<u8> {
    if rng.chance(0.2) {
        let mut bytes = archives[rng.below(archives.len())].clone();
        mutate(&mut bytes, rng, archives);
        return bytes;
    }
    let mut entries = seeds[rng.below(seeds.len())].clone();
    let k = rng.below(entries.len());
    let npy = &mut entries[k].1;
    if rng.chance(0.4) {
        // Replace a number of the header text (a size) with an interesting one.
        let text_end = npy.len().min(128);
        let digits: Vec<usize> = (10..text_end)
            .filter(|&i| npy[i].is_ascii_digit())
            .collect();
        if !digits.is_empty() {
            let at = digits[rng.below(digits.len())];
            let end = (at..npy.len())
                .find(|&i| !npy[i].is_ascii_digit())
                .unwrap_or(npy.len());
            let v = INTERESTING[rng.below(INTERESTING.len())].to_string();
            npy.splice(at..end, v.bytes());
        }
    } else {
        let others: Vec<Vec<u8>> = seeds.iter().flatten().map(|(_, b)| b.clone()).collect();
        mutate(npy, rng, &others);
    }
    if rng.chance(0.05) {
        entries[k].0 = format!("{}x", entries[k].0);
    }
    zip_npys(&entries, rng.chance(0.3))
}

fn npz_target(
    name: &str,
    seed: u64,
    archives: Vec<Vec<u8>>,
    load: fn(&Path) -> boltzmann::Result<()>,
) {
    let seeds: Vec<_> = archives.iter().map(|a| unzip_npys(a)).collect();
    fuzz(
        name,
        seed,
        |rng| npz_mutant(rng, &seeds, &archives),
        "a.npz",
        load,
    );
}

#[test]
fn npz_files() {
    let rbm_npz = file_bytes(|p| {
        random_rbm::<Bernoulli, Bernoulli>(6, 3, 0.5, 6)
            .save_npz(p)
            .unwrap()
    });
    let dbm_npz = file_bytes(|p| {
        Dbm::<Bernoulli>::init(&[5, 3, 2], 7)
            .unwrap()
            .save_npz(p)
            .unwrap()
    });
    // A dataset as NumPy writes uint8 images and integer labels, and float64 weights in Fortran
    // order.
    let data_npz = zip_npys(
        &[
            (
                "train.npy".into(),
                npy_with_header(
                    "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 4), }",
                    &[0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0],
                ),
            ),
            (
                "test.npy".into(),
                npy_with_header(
                    "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 4), }",
                    &[1, 1, 0, 0, 0, 0, 1, 1],
                ),
            ),
            // Labels as NumPy writes them: int64, and big-endian uint16.
            (
                "train_labels.npy".into(),
                npy_with_header(
                    "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }",
                    &[2i64, 0, 1].map(i64::to_le_bytes).concat(),
                ),
            ),
            (
                "test_labels.npy".into(),
                npy_with_header(
                    "{'descr': '>u2', 'fortran_order': False, 'shape': (2,), }",
                    &[0, 1, 0, 2],
                ),
            ),
        ],
        true,
    );
    let f64s: Vec<u8> = (0..6)
        .flat_map(|i| (f64::from(i) * 0.25).to_le_bytes())
        .collect();
    let fortran_npz = zip_npys(
        &[
            (
                "W.npy".into(),
                npy_with_header(
                    "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }",
                    &f64s,
                ),
            ),
            (
                "b_visible.npy".into(),
                npy_with_header(
                    "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
                    &f64s[..16],
                ),
            ),
            (
                "b_hidden.npy".into(),
                npy_with_header(
                    "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
                    &f64s[..24],
                ),
            ),
        ],
        false,
    );
    let all = vec![
        rbm_npz.clone(),
        dbm_npz.clone(),
        data_npz.clone(),
        fortran_npz.clone(),
    ];
    npz_target("npz-read", 21, all, |p| read_npz(p).map(drop));
    npz_target("npz-rbm", 22, vec![rbm_npz, fortran_npz], |p| {
        Rbm::<Bernoulli, Bernoulli>::load_npz(p).map(drop)
    });
    npz_target("npz-dbm", 23, vec![dbm_npz], |p| {
        Dbm::<Bernoulli>::load_npz(p).map(drop)
    });
    npz_target("npz-dataset", 24, vec![data_npz], |p| {
        load_npz_examples(p, "train").map(drop)
    });
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[test]
fn idx_files() {
    let mut images = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 4];
    images.extend((0..32).map(|i| (i * 7) as u8));
    let labels = vec![0, 0, 8, 1, 0, 0, 0, 5, 1, 2, 3, 4, 5];
    let raw = vec![images, labels];
    let packed: Vec<Vec<u8>> = raw.iter().map(|b| gzip(b)).collect();
    fuzz(
        "idx",
        31,
        |rng| {
            if rng.chance(0.5) {
                let mut bytes = raw[rng.below(raw.len())].clone();
                mutate(&mut bytes, rng, &raw);
                if rng.chance(0.5) { gzip(&bytes) } else { bytes }
            } else {
                let mut bytes = packed[rng.below(packed.len())].clone();
                mutate(&mut bytes, rng, &packed);
                bytes
            }
        },
        "a.idx",
        |p| read_idx(p).map(drop),
    );
}

/// Tiny training data: 8 visible units, 24 examples in [0, 1].
fn tiny_data() -> DMatrix<f32> {
    DMatrix::from_vec(8, 24, normal(8 * 24, 1.0, 41)).map(|x| (x * 0.3 + 0.5).clamp(0.0, 1.0))
}

fn tiny_config(negative: NegativePhase, epochs: usize, checkpoint: Option<&Path>) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 12,
        negative,
        binarize: true,
        centering: Some(Centering { rate: 0.05 }),
        sparsity: Some(Sparsity {
            target: 0.1,
            cost: 0.1,
            decay: 0.9,
        }),
        monitor_examples: 8,
        seed: 42,
        checkpoint: checkpoint.map(|p| boltzmann::train::Checkpointing {
            path: p.to_path_buf(),
            every: 1,
        }),
        ..TrainConfig::default()
    }
}

#[test]
fn rbm_checkpoints_on_resume() {
    let data = tiny_data();
    let k = Steps::Constant(1);
    let phases = [
        NegativePhase::Cd { k: k.clone() },
        NegativePhase::Pcd {
            k: k.clone(),
            chains: 60,
        },
        NegativePhase::FastPcd {
            k: k.clone(),
            chains: 5,
            fast: FastWeights {
                learning_rate: 0.01,
                decay: 0.95,
            },
        },
        NegativePhase::Tempering {
            k,
            chains: 4,
            betas: vec![1.0, 0.6, 0.2, 0.0],
        },
    ];
    for (i, negative) in phases.into_iter().enumerate() {
        let seed = file_bytes(|p| {
            let mut rbm = Rbm::<Bernoulli, Bernoulli>::init(8, 3, 1).unwrap();
            train(
                &mut rbm,
                &data,
                None,
                &tiny_config(negative.clone(), 1, Some(p)),
                |_| (),
            )
            .unwrap();
        });
        let seeds = vec![seed];
        let config = tiny_config(negative, 2, None);
        fuzz(
            &format!("resume-rbm-{i}"),
            41 + i as u64,
            |rng| safetensors_mutant(rng, &seeds),
            "c.bin",
            |p| resume::<Bernoulli, Bernoulli, _>(p, &data, None, &config, |_| ()).map(drop),
        );
    }
}

#[test]
fn dbm_checkpoints_on_resume() {
    let data = tiny_data();
    let config = |epochs, path: Option<&Path>| TrainConfig {
        epochs,
        batch_size: 12,
        negative: NegativePhase::Pcd {
            k: Steps::Constant(1),
            chains: 55,
        },
        binarize: true,
        centering: Some(Centering { rate: 0.05 }),
        monitor_examples: 8,
        checkpoint: path.map(|p| boltzmann::train::Checkpointing {
            path: p.to_path_buf(),
            every: 1,
        }),
        ..TrainConfig::joint()
    };
    let seeds = vec![file_bytes(|p| {
        let mut dbm = Dbm::<Bernoulli>::init(&[8, 4, 3], 2).unwrap();
        train(&mut dbm, &data, None, &config(1, Some(p)), |_| ()).unwrap();
    })];
    let resumed = config(2, None);
    fuzz(
        "resume-dbm",
        51,
        |rng| safetensors_mutant(rng, &seeds),
        "c.bin",
        |p| resume::<Bernoulli, Bernoulli, _>(p, &data, None, &resumed, |_| ()).map(drop),
    );
}
