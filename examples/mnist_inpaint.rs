//! Inpainting: hides part of each (binarised) MNIST test digit, or test example of `--data`,
//! and fills it in by Gibbs sampling
//! with the observed pixels clamped, from a trained RBM or DBM, and writes `inpaint.png`
//! (rows of originals, masked inputs with the hidden part grey, and completions).
//!
//! ```text
//! cargo run --release --example mnist_rbm -- --out out/mnist_rbm
//! cargo run --release --example mnist_inpaint -- --model out/mnist_rbm/model.safetensors --json
//! ```

mod common;

use boltzmann::image::Scale;
use boltzmann::partition::conditional_log_likelihood_exact;
use boltzmann::random::{stream, uniform};
use boltzmann::{Bernoulli, Chains, Dbm, Error, Rbm};
use clap::{Parser, ValueEnum};
use nalgebra::DMatrix;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Mask {
    /// The lower half of every digit (of the rows of `--image-shape`).
    Bottom,
    /// The right half of every digit (of the columns of `--image-shape`).
    Right,
    /// A random set of pixels (`--fraction` of them), the same for every digit (for data that
    /// is no image, too).
    Random,
}

/// Fill in hidden parts of MNIST test digits by sampling from a trained RBM or DBM with the
/// observed pixels clamped.
#[derive(Parser, Debug, serde::Serialize)]
#[command(version, about)]
struct Args {
    /// A model file written by `mnist_rbm` or `mnist_dbm` (`model.safetensors`).
    #[arg(long)]
    model: PathBuf,
    /// Which pixels to hide.
    #[arg(long, value_enum, default_value_t = Mask::Bottom)]
    mask: Mask,
    /// Fraction of pixels hidden by `--mask random`.
    #[arg(long, default_value_t = 0.5)]
    fraction: f64,
    /// Test digits completed and scored.
    #[arg(long, default_value_t = 1000)]
    examples: usize,
    /// Gibbs sweeps before completions are averaged.
    #[arg(long, default_value_t = 200)]
    burn_in: usize,
    /// Sweeps over which the conditional means of the hidden pixels are averaged.
    #[arg(long, default_value_t = 100)]
    average: usize,
    /// Test digits (of the first ones) for which the exact ln p(hidden part | observed part)
    /// is computed, where it is tractable (RBMs with few hidden pixels or hidden units).
    #[arg(long, default_value_t = 20)]
    exact_examples: usize,
    /// Master seed (binarisation, random masks, chains).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The data, whose test examples are completed (Bernoulli units only).
    #[command(flatten)]
    #[serde(flatten)]
    data: common::DataOptions,
    /// Output directory.
    #[arg(long, default_value = "out/mnist_inpaint")]
    out: PathBuf,
    /// End with one JSON line of results on standard output.
    #[arg(long)]
    json: bool,
}

fn main() {
    common::main(run);
}

fn run(args: Args) -> boltzmann::Result<()> {
    let started = Instant::now();
    if !(args.fraction > 0.0 && args.fraction < 1.0) {
        return Err(Error::invalid(
            "--fraction",
            format!("{}; expected a value in (0, 1)", args.fraction),
        ));
    }
    common::count_in("--examples", args.examples, 1, common::MAX_CHAINS)?;
    common::count_in("--burn-in", args.burn_in, 0, common::MAX_SWEEPS)?;
    common::count_in("--average", args.average, 1, common::MAX_SWEEPS)?;
    let model: Dbm<Bernoulli> = Rbm::<Bernoulli, Bernoulli>::load_machine(&args.model)?;
    let kind = if model.num_layers() == 2 {
        "rbm"
    } else {
        "dbm"
    };
    let data = args.data.load()?;
    if data.visible != common::Visible::Bernoulli {
        return Err(Error::invalid(
            "--visible",
            "inpainting completes binary units; the model has Bernoulli visible units",
        ));
    }
    let (_, test) = data.fixed(args.seed)?;
    let pixels = data.units();
    if args.examples > test.ncols() {
        return Err(Error::invalid(
            "--examples",
            format!(
                "{}; the test set has {} digits",
                args.examples,
                test.ncols()
            ),
        ));
    }
    let n = args.examples;
    let truth = test.columns(0, n).into_owned();
    std::fs::create_dir_all(&args.out).map_err(|e| Error::Io {
        path: args.out.clone(),
        source: e,
    })?;

    // observed[i]: pixel i is shown to the model and clamped.
    let (height, width) = data.shape;
    let mut rng = stream(args.seed, 0x1a9a);
    let observed: Vec<bool> = (0..pixels)
        .map(|i| match args.mask {
            Mask::Bottom => i / width < height.div_ceil(2),
            Mask::Right => i % width < width.div_ceil(2),
            Mask::Random => f64::from(uniform(&mut rng)) >= args.fraction,
        })
        .collect();
    let hidden_pixels = observed.iter().filter(|&&o| !o).count();
    if hidden_pixels == 0 {
        return Err(Error::invalid(
            "--mask",
            format!(
                "{:?} hides no unit of {height}×{width} examples; use --mask random or --image-shape",
                args.mask
            ),
        ));
    }
    println!(
        "{} model, {hidden_pixels} of {} pixels hidden ({:?} mask), {n} test digits",
        kind, pixels, args.mask
    );

    // Start the hidden pixels at 0 and let the clamped chains fill them in.
    let masked = DMatrix::from_fn(
        pixels,
        n,
        |i, c| {
            if observed[i] { truth[(i, c)] } else { 0.0 }
        },
    );
    let mut chains = Chains::from_visible(&model, masked.clone(), args.seed)?;
    chains.clamp(&observed, &truth)?;
    let bar = common::bar(args.burn_in + args.average, "sweep");
    for _ in 0..args.burn_in {
        chains.sweep(&model, 1)?;
        bar.inc(1);
    }
    let mut completion = DMatrix::zeros(pixels, n);
    for _ in 0..args.average {
        chains.sweep(&model, 1)?;
        // E[v | neighbours] of the chains' visible layer: a Rao-Blackwellised completion.
        completion += model.conditional_mean(0, chains.layers())?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    completion /= args.average as f32;
    for (i, &o) in observed.iter().enumerate() {
        if o {
            completion.row_mut(i).copy_from(&truth.row(i));
        }
    }

    // Per hidden pixel: the expected error of a sampled completion, |q − x|, and the error of
    // the thresholded completion.
    let (mut mae, mut wrong) = (0.0f64, 0usize);
    for c in 0..n {
        for i in (0..pixels).filter(|&i| !observed[i]) {
            let (q, x) = (completion[(i, c)], truth[(i, c)]);
            mae += f64::from((q - x).abs());
            wrong += usize::from((q >= 0.5) != (x == 1.0));
        }
    }
    let count = (n * hidden_pixels).max(1) as f64;
    let (mae, error_rate) = (mae / count, wrong as f64 / count);
    println!(
        "hidden pixels: mean |E[x] − x| = {mae:.4} (expected error of a sampled pixel), thresholded error rate {error_rate:.4}"
    );

    // Exact ln p(hidden part | observed part) where enumeration is tractable.
    let exact = match Rbm::try_from(model.clone()) {
        Ok(rbm) => {
            let first = truth.columns(0, args.exact_examples.min(n)).into_owned();
            let missing: Vec<bool> = observed.iter().map(|o| !o).collect();
            match conditional_log_likelihood_exact(&rbm, &first, &missing) {
                Ok(lp) => {
                    let mean = lp.mean();
                    println!(
                        "exact ln p(hidden pixels | observed) = {mean:.3} nats per digit (first {} digits)",
                        first.ncols()
                    );
                    Some(mean)
                }
                Err(e @ Error::NotEnumerable { .. }) => {
                    println!("no exact conditional log-likelihood: {e}");
                    None
                }
                Err(e) => return Err(e),
            }
        }
        Err(_) => None,
    };

    let shown = n.min(10);
    let mut grid = DMatrix::from_element(pixels, 3 * shown, 0.0);
    for c in 0..shown {
        grid.set_column(c, &truth.column(c));
        let grey = DMatrix::from_fn(
            pixels,
            1,
            |i, _| {
                if observed[i] { truth[(i, c)] } else { 0.5 }
            },
        );
        grid.set_column(shown + c, &grey.column(0));
        grid.set_column(2 * shown + c, &completion.column(c));
    }
    data.save_tiles(args.out.join("inpaint.png"), &grid, shown, Scale::Unit)?;
    println!(
        "wrote inpaint.png (rows: original, masked, completed) to {}",
        args.out.display()
    );

    if args.json {
        let json = serde_json::json!({
            "example": "mnist_inpaint",
            "settings": &args,
            "kind": kind,
            "hidden_pixels": hidden_pixels,
            "examples": n,
            "pixel_mae": mae,
            "pixel_error_rate": error_rate,
            "exact_conditional_log_likelihood": exact,
            "exact_examples": exact.map(|_| args.exact_examples.min(n)),
            "seed": args.seed,
            "seconds": started.elapsed().as_secs_f64(),
        });
        println!("{json}");
    }
    Ok(())
}
