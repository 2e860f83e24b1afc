"""What calling the core from Python costs, on the work of the crate's criterion benches
`train/cd1_epoch_mnist_500` and `ais/sm2008_784x500` (benches/gibbs.rs):

- one CD-1 epoch over the 60,000 MNIST training images (784-500, batch 100, stochastic
  binarisation, 100 monitor examples);
- AIS with the paper's 14,501 inverse temperatures and 100 runs from the base rates of the
  binarised training images, on the 784-500 RBM with visible biases from the pixel means.

    python python/benches/overhead.py [--repeats 5]

prints one JSON line with the median and fastest wall time of each, in seconds. Compare with
`cargo bench --bench gibbs -- 'train/|ais/'` run in the same session on the same machine.
"""

import argparse
import gzip
import json
import pathlib
import platform
import time

import numpy as np

import boltzmann


def mnist_train_images(directory: pathlib.Path) -> np.ndarray:
    with gzip.open(directory / "train-images-idx3-ubyte.gz") as f:
        raw = f.read()
    count = int.from_bytes(raw[4:8], "big")
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(count, 784)
    return (pixels / np.float32(255)).astype(np.float32)


def timed(call, repeats: int) -> dict:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return {"median_s": float(np.median(times)), "min_s": float(min(times)), "runs": repeats}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", default=pathlib.Path(__file__).parents[2] / "datasets/mnist")
    args = parser.parse_args()
    X = mnist_train_images(pathlib.Path(args.data))

    def cd1_epoch():
        boltzmann.RBM(784, 500, seed=1).fit(X, epochs=1, binarize=True, monitor_examples=100)

    rbm = boltzmann.RBM(784, 500, seed=1)
    p = np.clip(X.mean(axis=0), 1e-3, 1 - 1e-3)
    rbm.b_visible = np.log(p / (1 - p))
    binary = (np.random.default_rng(0).random(X.shape, dtype=np.float32) < X).astype(np.float32)

    def paper_ais():
        rbm.log_partition(method="ais", runs=100, betas=14_501, data=binary)

    print(json.dumps({
        "cpu": platform.processor() or platform.machine(),
        "cd1_epoch_mnist_500": timed(cd1_epoch, args.repeats),
        "ais_sm2008_784x500": timed(paper_ais, max(1, args.repeats // 2 + 1)),
    }))


if __name__ == "__main__":
    main()
