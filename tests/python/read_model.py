"""Reads a model file written by `mnist_rbm` with the safetensors library alone, as the README
documents it, and checks it against the `.npz` export of the same model.

    python tests/python/read_model.py OUT_DIR
"""
import json
import sys
import zlib

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

out = sys.argv[1]
tensors = load_file(f"{out}/model.safetensors")
with safe_open(f"{out}/model.safetensors", "np") as f:
    meta = f.metadata()

assert meta["format"] == "boltzmann-model" and meta["format_version"] == "2", meta
assert meta["machine"] == "rbm", meta
layers = json.loads(meta["layers"])
units = [sum(layer["units"]) for layer in layers]
assert [layer["kind"] for layer in layers] == ["bernoulli", "bernoulli"], layers
assert sorted(tensors) == ["W1", "b0", "b1"], sorted(tensors)
assert tensors["W1"].shape == (units[0], units[1]) and tensors["W1"].dtype == np.float32
crc = zlib.crc32(b"".join(tensors[k].tobytes() for k in sorted(tensors)))
assert f"{crc:08x}" == meta["crc32"], (crc, meta["crc32"])

npz = np.load(f"{out}/model.npz")
assert np.array_equal(tensors["W1"], npz["W"])
assert np.array_equal(tensors["b0"], npz["b_visible"])
assert np.array_equal(tensors["b1"], npz["b_hidden"])
print(f"read {out}/model.safetensors: {units[0]}-{units[1]} RBM, crc32 {meta['crc32']}, equal to model.npz")
