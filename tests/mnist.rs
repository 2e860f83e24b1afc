//! The MNIST loader reads the shipped files and agrees with the facts in datasets/README.md.

use boltzmann::data::{Mnist, binarize_stochastic, binarize_threshold};

#[test]
fn shipped_mnist_has_the_documented_facts() {
    let m = Mnist::load(Mnist::shipped_dir()).unwrap();
    assert_eq!(m.train_images.shape(), (784, 60_000));
    assert_eq!(m.test_images.shape(), (784, 10_000));
    assert_eq!(&m.train_labels[..5], &[5, 0, 4, 1, 9]);
    assert_eq!(&m.test_labels[..5], &[7, 2, 1, 0, 4]);
    assert_eq!(m.train_labels.iter().filter(|&&l| l == 0).count(), 5_923);
    assert_eq!(m.train_labels.iter().filter(|&&l| l == 1).count(), 6_742);
    let n = m.train_images.len() as f64;
    let mean = m.train_images.iter().map(|&x| f64::from(x)).sum::<f64>() / n * 255.0;
    assert!((mean - 33.318).abs() < 5e-4, "mean pixel {mean}");
    let on = binarize_threshold(&m.train_images, 127.0 / 255.0);
    let fraction = on.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    assert!(
        (fraction - 0.1323).abs() < 5e-5,
        "fraction > 127: {fraction}"
    );
    assert!(m.train_images.iter().all(|&x| (0.0..=1.0).contains(&x)));
}

#[test]
fn shipped_files_have_the_documented_checksums() {
    use md5::{Digest, Md5};
    use std::io::Read;
    for (name, md5) in [
        (
            "train-images-idx3-ubyte.gz",
            "6bbc9ace898e44ae57da46a324031adb",
        ),
        (
            "train-labels-idx1-ubyte.gz",
            "a25bea736e30d166cdddb491f175f624",
        ),
        (
            "t10k-images-idx3-ubyte.gz",
            "2646ac647ad5339dbf082846283269ea",
        ),
        (
            "t10k-labels-idx1-ubyte.gz",
            "27ae3e4e09519cfbb04c329615203637",
        ),
    ] {
        let file = std::fs::File::open(Mnist::shipped_dir().join(name)).unwrap();
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(file)
            .read_to_end(&mut raw)
            .unwrap();
        let digest: String = Md5::digest(&raw)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(digest, md5, "{name}");
    }
}

#[test]
fn stochastic_binarisation_follows_the_grey_levels() {
    let m = Mnist::load(Mnist::shipped_dir()).unwrap();
    let test = &m.test_images;
    let b = binarize_stochastic(test, 5).unwrap();
    assert!(b.iter().all(|&x| x == 0.0 || x == 1.0));
    assert_eq!(
        b,
        binarize_stochastic(test, 5).unwrap(),
        "fixed by the seed"
    );
    assert_ne!(b, binarize_stochastic(test, 6).unwrap());
    // Mean of 7.84 M Bernoulli draws: standard error ≤ 0.5/√(7.84e6) ≈ 1.8e-4.
    let n = test.len() as f64;
    let expected = test.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let got = b.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    assert!((got - expected).abs() < 5.0 * 1.8e-4, "{got} vs {expected}");
}
