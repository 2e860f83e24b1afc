//! The examples' data (`--data`): MNIST's IDX files in a directory, or the user's own examples
//! in one `.npz`.

use boltzmann::Error;
use boltzmann::data::Mnist;
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How the visible units read the data.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visible {
    /// Binary units: values are probabilities in [0, 1] (0/1 data included), binarised
    /// stochastically as MNIST is (a fresh draw per minibatch; one fixed draw for evaluation).
    #[default]
    Bernoulli,
    /// Gaussian units of unit variance: real values, used as they are (standardise them first).
    Gaussian,
}

/// Where the data comes from and how it is read, as flags.
#[derive(clap::Args, Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DataOptions {
    /// The data: a directory of the four MNIST IDX files [default: $BOLTZMANN_MNIST, else the
    /// copy shipped in `datasets/mnist`], or one `.npz` with arrays `train` and `test`
    /// (examples × units; uint8 0/1 or float) and optionally `train_labels` and `test_labels`
    /// (integer classes from 0).
    #[arg(long, value_name = "DIR|FILE.npz")]
    pub data: Option<PathBuf>,
    /// The visible units: bernoulli (binary or [0, 1] data) or gaussian (real values).
    #[arg(long, value_enum, default_value_t = Visible::Bernoulli)]
    pub visible: Visible,
    /// Height and width of an example drawn as a picture, e.g. `28,28` [default: 28×28 for
    /// MNIST, a square when the units are a square number, else a strip of values].
    #[arg(long, value_name = "H,W", value_parser = parse_shape)]
    pub image_shape: Option<(usize, usize)>,
}

fn parse_shape(text: &str) -> Result<(usize, usize), String> {
    let parts: Vec<&str> = text.split(',').collect();
    match parts.as_slice() {
        [h, w] => match (h.trim().parse(), w.trim().parse()) {
            (Ok(h), Ok(w)) if h > 0 && w > 0 => Ok((h, w)),
            _ => Err(format!(
                "`{text}`: expected two positive whole numbers, H,W"
            )),
        },
        _ => Err(format!("`{text}`: expected H,W")),
    }
}

/// A dataset: training and test examples (one per column), class labels where the data has
/// them, and the shape in which an example is drawn.
pub struct Data {
    pub train: DMatrix<f32>,
    pub test: DMatrix<f32>,
    /// Classes of the training and test examples.
    pub labels: Option<(Vec<u8>, Vec<u8>)>,
    /// (height, width) of an example as a picture.
    pub shape: (usize, usize),
    pub visible: Visible,
}

/// The most classes of labelled data.
const MAX_CLASSES: usize = 256;

impl DataOptions {
    /// Reads the data and checks it: the same units in training and test examples, finite
    /// values, values in [0, 1] for Bernoulli units, labels that fit the examples.
    pub fn load(&self) -> boltzmann::Result<Data> {
        let path = match &self.data {
            Some(p) => p.clone(),
            None => Mnist::default_dir()?,
        };
        let (train, test, labels, square) = if path.is_dir() {
            let m = Mnist::load(&path)?;
            let labels = Some((m.train_labels, m.test_labels));
            (m.train_images, m.test_images, labels, Some(Mnist::SIDE))
        } else {
            let (train, test, labels) = read_npz(&path)?;
            (train, test, labels, None)
        };
        let units = train.nrows();
        if test.nrows() != units {
            return Err(Error::shape(
                "test examples",
                format!("{units} units, as the training examples"),
                format!("{} units", test.nrows()),
            ));
        }
        for (what, x) in [("training examples", &train), ("test examples", &test)] {
            if x.is_empty() {
                return Err(Error::Empty { what });
            }
            if let Some(i) = x.iter().position(|v| !v.is_finite()) {
                return Err(Error::invalid(
                    what,
                    format!(
                        "value {} at unit {} of example {}",
                        x[i],
                        i % units,
                        i / units
                    ),
                ));
            }
            let in_unit = |v: f32| (0.0..=1.0).contains(&v);
            if self.visible == Visible::Bernoulli
                && let Some(i) = x.iter().position(|&v| !in_unit(v))
            {
                return Err(Error::invalid(
                    what,
                    format!(
                        "value {} at unit {} of example {}: Bernoulli units read values in [0, 1]; pass --visible gaussian for real-valued data",
                        x[i],
                        i % units,
                        i / units
                    ),
                ));
            }
        }
        let shape = match (self.image_shape, square) {
            (Some((h, w)), _) if h.checked_mul(w) != Some(units) => {
                return Err(Error::invalid(
                    "--image-shape",
                    format!("{h},{w}; the examples have {units} units"),
                ));
            }
            (Some(shape), _) => shape,
            (None, Some(side)) => (side, side),
            (None, None) => match units.isqrt() {
                side if side * side == units => (side, side),
                _ => (1, units),
            },
        };
        Ok(Data {
            train,
            test,
            labels,
            shape,
            visible: self.visible,
        })
    }
}

/// `train`, `test` and the optional labels of the dataset `.npz` at `path`.
#[allow(clippy::type_complexity)]
fn read_npz(
    path: &Path,
) -> boltzmann::Result<(DMatrix<f32>, DMatrix<f32>, Option<(Vec<u8>, Vec<u8>)>)> {
    let format = |message: String| Error::Format {
        path: path.into(),
        expected: "dataset .npz",
        message,
    };
    let mut arrays = boltzmann::io::read_npz(path)?;
    let mut take = |name: &str| {
        arrays
            .remove(name)
            .ok_or_else(|| format(format!("no array `{name}`; expected `train` and `test` (examples × units), and optionally `train_labels` and `test_labels`")))
    };
    let train = take("train")?.into_columns("dataset array `train` (examples × units)")?;
    let test = take("test")?.into_columns("dataset array `test` (examples × units)")?;
    let labels = match (take("train_labels"), take("test_labels")) {
        (Ok(a), Ok(b)) => {
            let classes = |array: boltzmann::io::NpzArray, name: &str, examples: usize| {
                let v = array.into_vector("dataset labels")?;
                if v.len() != examples {
                    return Err(format(format!(
                        "`{name}` has {} labels for {examples} examples",
                        v.len()
                    )));
                }
                let class = |x: f32| x.fract() == 0.0 && (0.0..MAX_CLASSES as f32).contains(&x);
                match v.iter().find(|&&x| !class(x)) {
                    Some(x) => Err(format(format!(
                        "`{name}` holds {x}; labels are classes 0 to {}",
                        MAX_CLASSES - 1
                    ))),
                    None => Ok(v.iter().map(|&x| x as u8).collect::<Vec<u8>>()),
                }
            };
            Some((
                classes(a, "train_labels", train.ncols())?,
                classes(b, "test_labels", test.ncols())?,
            ))
        }
        (Err(_), Err(_)) => None,
        _ => {
            return Err(format(
                "it has labels for one of `train` and `test` only".into(),
            ));
        }
    };
    Ok((train, test, labels))
}

impl Data {
    /// Units of an example.
    pub fn units(&self) -> usize {
        self.train.nrows()
    }

    /// Whether the training in minibatches binarises each batch afresh (Bernoulli units).
    pub fn binarize(&self) -> bool {
        self.visible == Visible::Bernoulli
    }

    /// The training and test examples as evaluated: for Bernoulli units binarised once with a
    /// fixed draw from `seed` (0/1 data stays as it is), as Salakhutdinov & Murray evaluate
    /// MNIST; for Gaussian units as they are.
    pub fn fixed(&self, seed: u64) -> boltzmann::Result<(DMatrix<f32>, DMatrix<f32>)> {
        match self.visible {
            Visible::Bernoulli => Ok((
                boltzmann::data::binarize_stochastic(&self.train, seed)?,
                boltzmann::data::binarize_stochastic(&self.test, seed.wrapping_add(1))?,
            )),
            Visible::Gaussian => Ok((self.train.clone(), self.test.clone())),
        }
    }

    /// The number of classes of labelled data (the largest label plus one).
    pub fn classes(&self) -> Option<usize> {
        let (train, test) = self.labels.as_ref()?;
        let top = train.iter().chain(test).max()?;
        Some(usize::from(*top) + 1)
    }

    /// Saves the columns of `tiles` (examples, samples or filters) as a picture at `path`:
    /// `columns` tiles of [`Data::shape`] to a row, or a strip of values per row for data that
    /// is no image.
    pub fn save_tiles(
        &self,
        path: impl AsRef<Path>,
        tiles: &DMatrix<f32>,
        columns: usize,
        scale: boltzmann::image::Scale,
    ) -> boltzmann::Result<()> {
        let columns = if self.shape.0 == 1 { 1 } else { columns };
        boltzmann::image::save_tile_grid(path, tiles, self.shape, columns, scale)
    }

    /// How pictures of the visible units are scaled: probabilities as they are, real values
    /// stretched per tile.
    pub fn scale(&self) -> boltzmann::image::Scale {
        match self.visible {
            Visible::Bernoulli => boltzmann::image::Scale::Unit,
            Visible::Gaussian => boltzmann::image::Scale::PerTile,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a dataset `.npz` of `arrays` (name, shape, row-major values) and reads it.
    fn load(
        name: &str,
        arrays: &[(&str, Vec<u64>, Vec<f32>)],
        options: DataOptions,
    ) -> boltzmann::Result<Data> {
        let dir =
            std::env::temp_dir().join(format!("boltzmann-data-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("d.npz");
        boltzmann::io::write_npz(&path, arrays).unwrap();
        let data = DataOptions {
            data: Some(path),
            ..options
        }
        .load();
        std::fs::remove_dir_all(&dir).unwrap();
        data
    }

    fn binary(n: usize, units: usize) -> Vec<f32> {
        (0..n * units)
            .map(|i| ((i * 7) % 3 == 0) as u8 as f32)
            .collect()
    }

    #[test]
    fn an_npz_dataset_is_read_as_examples_by_columns_with_labels_and_a_shape() {
        let train = binary(5, 9);
        let arrays = [
            ("train", vec![5, 9], train.clone()),
            ("test", vec![2, 9], binary(2, 9)),
            ("train_labels", vec![5], vec![0.0, 2.0, 1.0, 0.0, 2.0]),
            ("test_labels", vec![2], vec![1.0, 0.0]),
        ];
        let data = load("labels", &arrays, DataOptions::default()).unwrap();
        assert_eq!(
            (data.units(), data.train.ncols(), data.test.ncols()),
            (9, 5, 2)
        );
        // Example 3 (a row of the array) is column 3.
        assert_eq!(data.train.column(3).as_slice(), &train[27..36]);
        assert_eq!(data.labels, Some((vec![0, 2, 1, 0, 2], vec![1, 0])));
        assert_eq!((data.classes(), data.shape), (Some(3), (3, 3)));
        // 0/1 data stays as it is when binarised for evaluation.
        assert_eq!(data.fixed(4).unwrap().0, data.train);

        let strip = load(
            "strip",
            &arrays[..2]
                .iter()
                .map(|(n, s, v)| (*n, vec![s[0], 3, 3], v.clone()))
                .collect::<Vec<_>>(),
            DataOptions::default(),
        );
        assert!(strip.is_err(), "arrays must be examples × units");
        let shaped = DataOptions {
            image_shape: Some((1, 9)),
            ..DataOptions::default()
        };
        assert_eq!(load("shaped", &arrays[..2], shaped).unwrap().shape, (1, 9));
        let wrong = DataOptions {
            image_shape: Some((2, 5)),
            ..DataOptions::default()
        };
        let err = load("wrong", &arrays[..2], wrong)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("9 units"), "{err}");
        let six = [
            ("train", vec![4, 6], binary(4, 6)),
            ("test", vec![1, 6], binary(1, 6)),
        ];
        let data = load("six", &six, DataOptions::default()).unwrap();
        assert_eq!(
            (data.shape, data.labels.is_none(), data.classes()),
            ((1, 6), true, None)
        );
    }

    #[test]
    fn bad_datasets_are_refused_with_what_is_wrong() {
        let real = vec![0.5, -1.5, 2.0, 0.25, 0.0, 1.0];
        let arrays = [
            ("train", vec![2, 3], real.clone()),
            ("test", vec![1, 3], vec![0.0; 3]),
        ];
        let err = load("real", &arrays, DataOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--visible gaussian"), "{err}");
        let gaussian = DataOptions {
            visible: Visible::Gaussian,
            ..DataOptions::default()
        };
        let data = load("gaussian", &arrays, gaussian).unwrap();
        assert_eq!(
            data.fixed(0).unwrap().0.as_slice(),
            [0.5, -1.5, 2.0, 0.25, 0.0, 1.0]
        );

        let base = [
            ("train", vec![2, 3], vec![0.0; 6]),
            ("test", vec![1, 3], vec![1.0; 3]),
        ];
        let with = |extra: &[(&'static str, Vec<u64>, Vec<f32>)]| {
            let all: Vec<_> = base.iter().cloned().chain(extra.iter().cloned()).collect();
            load("bad", &all, DataOptions::default())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let one = with(&[("train_labels", vec![2], vec![0.0, 1.0])]);
        assert!(one.contains("one of"), "{one}");
        let short = with(&[
            ("train_labels", vec![1], vec![0.0]),
            ("test_labels", vec![1], vec![0.0]),
        ]);
        assert!(short.contains("1 labels for 2 examples"), "{short}");
        let fraction = with(&[
            ("train_labels", vec![2], vec![0.5, 1.0]),
            ("test_labels", vec![1], vec![0.0]),
        ]);
        assert!(fraction.contains("holds 0.5"), "{fraction}");
        let other = [
            ("train", vec![2, 3], vec![0.0; 6]),
            ("test", vec![1, 4], vec![0.0; 4]),
        ];
        let units = load("units", &other, DataOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(units.contains("3 units"), "{units}");
        let missing = load("missing", &base[..1], DataOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(missing.contains("no array `test`"), "{missing}");
    }

    #[test]
    fn the_shipped_mnist_is_the_default() {
        let data = DataOptions::default().load().unwrap();
        assert_eq!(
            (data.units(), data.train.ncols(), data.test.ncols()),
            (784, 60_000, 10_000)
        );
        assert_eq!((data.shape, data.classes()), ((28, 28), Some(10)));
    }
}
