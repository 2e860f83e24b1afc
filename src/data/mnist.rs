use super::idx::read_idx;
use crate::error::{Error, Result};
use nalgebra::DMatrix;
use std::path::{Path, PathBuf};

/// The MNIST digits: images as grey levels in [0, 1] (`784 × n`, one 28×28 row-major image per
/// column) and labels 0–9.
#[derive(Clone, Debug)]
pub struct Mnist {
    pub train_images: DMatrix<f32>,
    pub train_labels: Vec<u8>,
    pub test_images: DMatrix<f32>,
    pub test_labels: Vec<u8>,
}

impl Mnist {
    /// Side of an image in pixels.
    pub const SIDE: usize = 28;
    /// Pixels per image.
    pub const PIXELS: usize = 784;

    /// The copy shipped with this crate, in `datasets/mnist/` of the source tree.
    pub fn shipped_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/mnist")
    }

    /// Where to find MNIST when no directory is given: `$BOLTZMANN_MNIST` if set, else the copy
    /// in the source tree ([`Mnist::shipped_dir`]; the published crate does not include it).
    pub fn default_dir() -> Result<PathBuf> {
        let dir =
            std::env::var_os("BOLTZMANN_MNIST").map_or_else(Mnist::shipped_dir, PathBuf::from);
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(Error::invalid(
                "MNIST directory",
                format!(
                    "{} does not exist; pass --data DIR or set BOLTZMANN_MNIST to the directory of the four IDX files (the source repository ships them in datasets/mnist)",
                    dir.display()
                ),
            ))
        }
    }

    /// Loads the four files `{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]` from `dir`.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let (train_images, train_labels) = load_split(dir, "train")?;
        let (test_images, test_labels) = load_split(dir, "t10k")?;
        Ok(Mnist {
            train_images,
            train_labels,
            test_images,
            test_labels,
        })
    }
}

impl Mnist {
    /// Training and test images binarised stochastically (pixel on with probability
    /// intensity/255) with one fixed draw each, as used for evaluation by Salakhutdinov & Murray.
    pub fn binarized(&self, seed: u64) -> Result<(DMatrix<f32>, DMatrix<f32>)> {
        Ok((
            super::binarize_stochastic(&self.train_images, seed)?,
            super::binarize_stochastic(&self.test_images, seed.wrapping_add(1))?,
        ))
    }
}

fn find(dir: &Path, stem: &str) -> PathBuf {
    let gz = dir.join(format!("{stem}.gz"));
    if gz.exists() { gz } else { dir.join(stem) }
}

fn load_split(dir: &Path, split: &str) -> Result<(DMatrix<f32>, Vec<u8>)> {
    let images_path = find(dir, &format!("{split}-images-idx3-ubyte"));
    let labels_path = find(dir, &format!("{split}-labels-idx1-ubyte"));
    let images = read_idx(&images_path)?;
    let labels = read_idx(&labels_path)?;
    let bad = |path: &Path, message: String| Error::Format {
        path: path.into(),
        expected: "MNIST",
        message,
    };
    if images.dims.len() != 3 || images.dims[1] != Mnist::SIDE || images.dims[2] != Mnist::SIDE {
        return Err(bad(
            &images_path,
            format!("image dimensions {:?}; expected [n, 28, 28]", images.dims),
        ));
    }
    if labels.dims != [images.dims[0]] {
        return Err(bad(
            &labels_path,
            format!(
                "label dimensions {:?}; expected [{}] to match the images",
                labels.dims, images.dims[0]
            ),
        ));
    }
    if let Some(l) = labels.data.iter().find(|&&l| l > 9) {
        return Err(bad(&labels_path, format!("label {l}; expected 0 to 9")));
    }
    let pixels = images.data.iter().map(|&p| f32::from(p) / 255.0);
    let images = DMatrix::from_iterator(Mnist::PIXELS, images.dims[0], pixels);
    Ok((images, labels.data))
}
