//! Model files and .npz: exact round trips and every kind of bad file rejected with its error.

mod common;

use boltzmann::data::read_idx;
use boltzmann::io::{MAGIC, read_npz};
use boltzmann::{Bernoulli, Error, Gaussian, Layer, Rbm, Softmax};
use common::*;
use std::io::Write;

fn bits<V: Layer, H: Layer>(rbm: &Rbm<V, H>) -> Vec<u32> {
    rbm.weights()
        .iter()
        .chain(rbm.visible().bias().iter())
        .chain(rbm.hidden().bias().iter())
        .map(|x| x.to_bits())
        .collect()
}

#[test]
fn save_then_load_is_bit_exact() {
    let dir = TempDir::new("test-roundtrip");
    let rbm = random_rbm::<Bernoulli, Bernoulli>(17, 9, 0.7, 81);
    rbm.save(dir.join("m.safetensors")).unwrap();
    let back: Rbm<Bernoulli, Bernoulli> = Rbm::load(dir.join("m.safetensors")).unwrap();
    assert_eq!(bits(&rbm), bits(&back));
    let g = random_rbm::<Gaussian, Softmax>(5, 4, 0.7, 82);
    g.save(dir.join("g.bin")).unwrap();
    assert_eq!(
        Rbm::<Gaussian, Softmax>::load(dir.join("g.bin")).unwrap(),
        g
    );
    // No temporary file is left beside the model.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

/// The safetensors file `bytes` with metadata `key` set to `value` (or removed).
fn with_metadata(bytes: &[u8], key: &str, value: Option<&str>) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let meta = header["__metadata__"].as_object_mut().unwrap();
    match value {
        Some(v) => meta.insert(key.into(), v.into()),
        None => meta.remove(key),
    };
    let json = serde_json::to_vec(&header).unwrap();
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

#[test]
fn bad_model_files_are_rejected_with_their_error() {
    let dir = TempDir::new("test-bad");
    let rbm = random_rbm::<Bernoulli, Bernoulli>(17, 9, 0.7, 83);
    let path = dir.join("m.bin");
    rbm.save(&path).unwrap();
    let good = std::fs::read(&path).unwrap();
    let load = |bytes: &[u8]| {
        let p = dir.join("bad.bin");
        std::fs::write(&p, bytes).unwrap();
        Rbm::<Bernoulli, Bernoulli>::load(&p).unwrap_err()
    };

    // Truncated anywhere: in the header length, the header or the tensors.
    for cut in [3, 12, 30, good.len() - 10, good.len() - 1] {
        let err = load(&good[..cut]);
        assert!(matches!(err, Error::Format { .. }), "cut at {cut}: {err}");
    }

    // A flipped tensor byte.
    let mut flipped = good.clone();
    let last = flipped.len() - 5;
    flipped[last] ^= 0x40;
    assert!(matches!(load(&flipped), Error::Checksum { .. }));

    // A newer format version, another format, a missing checksum.
    let err = load(&with_metadata(&good, "format_version", Some("3")));
    assert!(matches!(err, Error::Version { found: 3, .. }), "{err}");
    let err = load(&with_metadata(&good, "format", Some("other")));
    assert!(matches!(err, Error::Format { .. }), "{err}");
    let err = load(&with_metadata(&good, "crc32", None));
    assert!(err.to_string().contains("crc32"), "{err}");

    // A model file of the earlier binary format says how to convert it.
    let mut old = MAGIC.to_vec();
    old.extend_from_slice(&1u32.to_le_bytes());
    let err = load(&old);
    assert!(err.to_string().contains("save_npz"), "{err}");

    // A foreign file.
    assert!(matches!(
        load(b"PK\x03\x04 this is a zip file"),
        Error::Format { .. }
    ));
    assert!(matches!(load(b""), Error::Format { .. }));

    // Another kind of model.
    let err = Rbm::<Gaussian, Bernoulli>::load(&path).unwrap_err();
    assert!(matches!(err, Error::Kind { .. }), "{err}");
    assert!(err.to_string().contains("bernoulli/bernoulli"), "{err}");

    // A missing file.
    assert!(matches!(
        Rbm::<Bernoulli, Bernoulli>::load(dir.join("missing.bin")),
        Err(Error::Io { .. })
    ));
}

#[test]
fn npz_export_then_import_is_exact() {
    let dir = TempDir::new("test-npz");
    let rbm = random_rbm::<Bernoulli, Bernoulli>(13, 7, 0.7, 84);
    rbm.save_npz(dir.join("m.npz")).unwrap();
    let back: Rbm<Bernoulli, Bernoulli> = Rbm::load_npz(dir.join("m.npz")).unwrap();
    assert_eq!(bits(&rbm), bits(&back));
    // W is stored visible × hidden in C order, as NumPy users expect.
    let arrays = read_npz(dir.join("m.npz")).unwrap();
    assert_eq!(arrays["W"].shape(), &[13, 7]);
    assert_eq!(arrays["W"].data()[1], rbm.weights()[(0, 1)]);
    assert_eq!(arrays["b_hidden"].shape(), &[7]);
}

/// Writes an .npz of float64 arrays, as NumPy writes published weights.
fn write_f64_npz(path: &std::path::Path, arrays: &[(&str, Vec<u64>, Vec<f64>, bool)]) {
    use npyz::WriterBuilder;
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, shape, data, fortran) in arrays {
        let mut npy = Vec::new();
        let order = if *fortran {
            npyz::Order::Fortran
        } else {
            npyz::Order::C
        };
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(shape)
            .order(order)
            .writer(&mut npy)
            .begin_nd()
            .unwrap();
        w.extend(data.iter().copied()).unwrap();
        w.finish().unwrap();
        zip.start_file(
            format!("{name}.npy"),
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        zip.write_all(&npy).unwrap();
    }
    zip.finish().unwrap();
}

#[test]
fn npz_import_accepts_float64_and_fortran_order() {
    let dir = TempDir::new("test-npz64");
    // W = [[1, 2, 3], [4, 5, 6]] (2 visible × 3 hidden).
    let c_order = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let f_order = vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0];
    for (name, data, fortran) in [("c.npz", c_order, false), ("f.npz", f_order, true)] {
        let path = dir.join(name);
        write_f64_npz(
            &path,
            &[
                ("W", vec![2, 3], data, fortran),
                ("b_visible", vec![2], vec![0.5, -0.5], false),
                ("b_hidden", vec![3], vec![0.1, 0.2, 0.3], false),
            ],
        );
        let rbm: Rbm<Bernoulli, Bernoulli> = Rbm::load_npz(&path).unwrap();
        assert_eq!(rbm.weights()[(1, 0)], 4.0, "{name}");
        assert_eq!(rbm.weights()[(0, 2)], 3.0, "{name}");
        assert_eq!(rbm.visible().bias()[1], -0.5);
    }
    // Missing arrays and mismatched shapes are errors.
    let path = dir.join("bad.npz");
    write_f64_npz(&path, &[("W", vec![2, 3], vec![0.0; 6], false)]);
    assert!(matches!(
        Rbm::<Bernoulli, Bernoulli>::load_npz(&path),
        Err(Error::Format { .. })
    ));
    write_f64_npz(
        &path,
        &[
            ("W", vec![2, 3], vec![0.0; 6], false),
            ("b_visible", vec![3], vec![0.0; 3], false),
            ("b_hidden", vec![3], vec![0.0; 3], false),
        ],
    );
    assert!(matches!(
        Rbm::<Bernoulli, Bernoulli>::load_npz(&path),
        Err(Error::Shape { .. })
    ));
}

#[test]
fn idx_files_are_checked() {
    let dir = TempDir::new("test-idx");
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    // A valid 2×3 array.
    let ok = write(
        "ok.idx",
        &[0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6],
    );
    let idx = read_idx(&ok).unwrap();
    assert_eq!(idx.dims, vec![2, 3]);
    assert_eq!(idx.data, vec![1, 2, 3, 4, 5, 6]);
    // The same, gzip-compressed.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&std::fs::read(&ok).unwrap()).unwrap();
    let gz = write("ok.idx.gz", &gz.finish().unwrap());
    assert_eq!(read_idx(&gz).unwrap(), idx);
    // Wrong magic, wrong type, wrong size.
    for (name, bytes) in [
        ("magic", vec![1u8, 0, 8, 1, 0, 0, 0, 1, 7]),
        ("type", vec![0, 0, 0x0d, 1, 0, 0, 0, 1, 7]),
        ("short", vec![0, 0, 8, 1, 0, 0, 0, 3, 7]),
        ("long", vec![0, 0, 8, 1, 0, 0, 0, 1, 7, 7]),
        ("header", vec![0, 0, 8, 3, 0, 0]),
    ] {
        let err = read_idx(write(name, &bytes)).unwrap_err();
        assert!(matches!(err, Error::Format { .. }), "{name}: {err}");
    }
}

/// A save never touches the target until its rename: temporaries left by saves that were
/// killed are removed by the next save (only those of processes that are gone), and a save that
/// fails removes its own and leaves the previous file as it was.
#[test]
fn interrupted_and_failed_saves_leave_the_previous_file() {
    let dir = TempDir::new("test-atomic");
    let path = dir.join("m.bin");
    let first = random_rbm::<Bernoulli, Bernoulli>(6, 4, 0.7, 85);
    first.save(&path).unwrap();
    let saved = std::fs::read(&path).unwrap();
    // What killed saves leave behind: a half-written temporary (this naming and the one of
    // earlier versions) of a process that no longer runs, beside one of this live process.
    let dead = (100_000u32..).find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists());
    let dead = dead.unwrap();
    let live = format!(".m.bin.{}-99.tmp", std::process::id());
    for name in [
        format!(".m.bin.{dead}-0.tmp"),
        format!(".m.bin.tmp-{dead}"),
        live.clone(),
    ] {
        std::fs::write(dir.join(name), &saved[..saved.len() / 2]).unwrap();
    }
    assert_eq!(Rbm::<Bernoulli, Bernoulli>::load(&path).unwrap(), first);
    let second = random_rbm::<Bernoulli, Bernoulli>(6, 4, 0.7, 86);
    second.save(&path).unwrap();
    assert_eq!(Rbm::<Bernoulli, Bernoulli>::load(&path).unwrap(), second);
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec![live.clone(), "m.bin".to_string()]);
    std::fs::remove_file(dir.join(&live)).unwrap();

    // A save whose rename fails (the target is a directory) leaves no temporary behind.
    let blocked = dir.join("blocked.bin");
    std::fs::create_dir(&blocked).unwrap();
    std::fs::write(blocked.join("keep"), b"x").unwrap();
    assert!(matches!(first.save(&blocked), Err(Error::Io { .. })));
    // Neither failed save touched the model beside them.
    assert_eq!(Rbm::<Bernoulli, Bernoulli>::load(&path).unwrap(), second);
    assert!(first.save(dir.join("missing/m.bin")).is_err());
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["blocked.bin", "m.bin"]);
}
