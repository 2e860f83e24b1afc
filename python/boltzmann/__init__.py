"""Restricted and deep Boltzmann machines on the Rust core of the ``boltzmann`` crate.

Arrays have one row per example (as in scikit-learn); float32 and float64 are accepted and
computed in float32, log-probabilities and ``ln Z`` in float64. Every routine that draws
random numbers takes a ``seed`` and gives the same bits for any number of threads.

>>> import numpy as np, boltzmann
>>> X = (np.random.default_rng(0).random((200, 16)) < 0.3).astype(np.float32)
>>> rbm = boltzmann.RBM(16, 8, seed=0).fit(X, method="pcd", epochs=5)
>>> Z = rbm.log_partition(method="exact")      # 2^8 hidden states: enumerable
>>> rbm.score(X) < 0                              # average log-likelihood in nats
True
"""

from __future__ import annotations

import json
import math
import sys
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from . import _core
from ._core import DivergedError

__all__ = [
    "RBM",
    "DBM",
    "ClassRBM",
    "LogPartition",
    "AISShard",
    "Evaluation",
    "merge_ais",
    "paper_betas",
    "load",
    "DivergedError",
    "AIS_BLOCK",
]

#: Runs per AIS block: each block has its own random stream, so shards hold whole blocks.
AIS_BLOCK = _core.ais_block()

_UNITS = ("bernoulli", "gaussian", "softmax")


def paper_betas(count: int = 14_501) -> np.ndarray:
    """The AIS schedule of Salakhutdinov & Murray (2008): ``count`` inverse temperatures from
    0 to 1, spaced 1e-3 up to 0.5, 1e-4 up to 0.9 and 1e-5 up to 1 when ``count`` = 14,501
    (other counts keep the proportions)."""
    return np.asarray(_core.three_stage_betas(int(count)))


def _betas(betas) -> list:
    if betas is None:
        return _core.three_stage_betas(14_501)
    if isinstance(betas, (int, np.integer)):
        return _core.three_stage_betas(int(betas))
    b = np.asarray(betas, dtype=np.float64)
    if b.ndim != 1:
        raise ValueError(f"betas must be a count or a 1-D sequence, got shape {b.shape}")
    return b.tolist()


def _rows(X, units: int, name: str = "X") -> np.ndarray:
    """``X`` as a C-contiguous float32 array of ``units`` columns, or a clear exception."""
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers, not {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (examples × units), got shape {X.shape}")
    if X.shape[1] != units:
        raise ValueError(f"{name} has {X.shape[1]} columns; the model has {units} visible units")
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty; at least one example is needed")
    return np.ascontiguousarray(X, dtype=np.float32)


def _unit(kind: str, what: str) -> str:
    if kind not in _UNITS:
        raise ValueError(f"{what} units {kind!r}; expected one of {', '.join(_UNITS)}")
    return kind


def _seed(seed) -> int:
    seed = 0 if seed is None else seed
    if not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed {seed!r}; expected an integer in [0, 2^64)")
    return int(seed)


def _positive(value, what: str) -> int:
    if not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise ValueError(f"{what} {value!r}; expected an integer ≥ 1")
    return int(value)


def _finite(x) -> float:
    return -math.inf if x is None else float(x)


class LogPartition:
    """An estimate of ``ln Z``.

    Attributes: ``log_z``; ``log_z_lower`` and ``log_z_upper`` (``ln Z`` at mean ∓ 3 standard
    errors of the importance weights; equal to ``log_z`` when exact); ``effective_sample_size``;
    ``log_weights`` (one per AIS run, a NumPy array; empty when exact); ``log_z_start`` (the
    exact ``ln Z₀`` of AIS's start model); ``method`` ("exact", "ais" or "reverse-ais").
    """

    def __init__(self, method: str, log_z: float, lower=None, upper=None, ess=math.nan,
                 log_weights=(), log_z_start=math.nan, log_weight_variance=math.nan):
        self.method = method
        self.log_z = float(log_z)
        self.log_z_lower = self.log_z if lower is None else float(lower)
        self.log_z_upper = self.log_z if upper is None else float(upper)
        self.effective_sample_size = float(ess)
        self.log_weights = np.asarray(log_weights, dtype=np.float64)
        self.log_z_start = float(log_z_start)
        self.log_weight_variance = float(log_weight_variance)

    @classmethod
    def _from_json(cls, text: str, reverse: bool) -> "LogPartition":
        e = json.loads(text)
        # JSON has no infinities: a bound at mean − 3 s.e. ≤ 0 arrives as null.
        lower = _finite(e["log_z_lower"])
        upper = math.inf if e["log_z_upper"] is None else float(e["log_z_upper"])
        return cls("reverse-ais" if reverse else "ais", e["log_z"], lower, upper,
                   e["effective_sample_size"], e["log_weights"], e["log_z_start"],
                   e["log_weight_variance"])

    def __float__(self) -> float:
        return self.log_z

    def __repr__(self) -> str:
        if self.method == "exact":
            return f"LogPartition(exact, log_z={self.log_z:.6f})"
        return (f"LogPartition({self.method}, log_z={self.log_z:.4f} "
                f"[{self.log_z_lower:.4f}, {self.log_z_upper:.4f}], "
                f"ESS={self.effective_sample_size:.1f} of {len(self.log_weights)})")


class AISShard:
    """The log weights of some blocks of an AIS run set, from ``log_partition(blocks=…)``:
    shards computed on different processes or machines merge with :func:`merge_ais` into the
    estimate of one process computing every run, bit for bit. Picklable."""

    def __init__(self, text: str):
        self._json = text
        s = json.loads(text)
        self.runs = s["runs"]
        self.blocks = range(s["blocks"]["start"], s["blocks"]["end"])
        self.reverse = s["reverse"]
        self.log_weights = np.asarray(s["log_weights"], dtype=np.float64)

    def __getstate__(self):
        return self._json

    def __setstate__(self, text):
        self.__init__(text)

    def __repr__(self) -> str:
        return f"AISShard(blocks={self.blocks.start}..{self.blocks.stop} of {self.runs} runs)"


def merge_ais(shards: Iterable[AISShard]) -> LogPartition:
    """The ``ln Z`` estimate from shards that together hold every block of one AIS run set
    once (in any order); raises ``ValueError`` for missing, repeated or foreign blocks."""
    shards = list(shards)
    if not all(isinstance(s, AISShard) for s in shards):
        raise TypeError("merge_ais takes AISShard objects (from log_partition(blocks=...))")
    text = _core.merge_ais([s._json for s in shards])
    return LogPartition._from_json(text, bool(shards[0].reverse))


class Evaluation:
    """The result of ``evaluate``: ``forward`` (and ``reverse``) :class:`LogPartition`, the
    average ``test`` and ``train`` log-probabilities in nats with their standard errors
    (``test_stderr``, ``train_stderr``; variational lower bounds for DBMs, ``lower_bounds``),
    ``test_reverse`` (with the reverse ``ln Ẑ``), and ``log_z_floor`` (no estimate of ``ln Z``
    may fall below it)."""

    def __init__(self, text: str):
        e = json.loads(text)
        self.forward = LogPartition._from_json(json.dumps(e["forward"]), False)
        self.reverse = (LogPartition._from_json(json.dumps(e["reverse"]), True)
                        if e["reverse"] is not None else None)
        self.test = e["test"]["mean"]
        self.test_stderr = e["test"]["stderr"]
        self.train = e["train"]["mean"]
        self.train_stderr = e["train"]["stderr"]
        self.lower_bounds = e["lower_bounds"]
        self.log_z_floor = e["log_z_floor"]
        self.test_reverse = (None if self.reverse is None
                             else self.test + self.forward.log_z - self.reverse.log_z)

    def as_dict(self) -> dict:
        """The figures as one flat dict (JSON-ready)."""
        return {
            "log_z": self.forward.log_z,
            "log_z_lower": self.forward.log_z_lower,
            "log_z_upper": self.forward.log_z_upper,
            "ess": self.forward.effective_sample_size,
            "log_z_reverse": None if self.reverse is None else self.reverse.log_z,
            "test": self.test,
            "test_stderr": self.test_stderr,
            "test_reverse": self.test_reverse,
            "train": self.train,
            "lower_bounds": self.lower_bounds,
        }

    def __repr__(self) -> str:
        rev = "" if self.test_reverse is None else f", reverse {self.test_reverse:.2f}"
        return (f"Evaluation(ln Ẑ {self.forward.log_z:.2f}, test {self.test:.2f} ± "
                f"{self.test_stderr:.2f}{rev}, train {self.train:.2f})")


def _negative(method: str, k, chains: int, epochs: int, fast_learning_rate, fast_decay, betas):
    if isinstance(k, (tuple, list)):
        if len(k) != 2:
            raise ValueError(f"k {k!r}; expected an integer or (from, to)")
        steps = {"Linear": {"from": _positive(k[0], "k"), "to": _positive(k[1], "k"),
                            "epochs": epochs}}
    else:
        steps = {"Constant": _positive(k, "k")}
    chains = _positive(chains, "chains")
    if method == "cd":
        return {"Cd": {"k": steps}}
    if method == "pcd":
        return {"Pcd": {"k": steps, "chains": chains}}
    if method == "fpcd":
        return {"FastPcd": {"k": steps, "chains": chains,
                            "fast": {"learning_rate": float(fast_learning_rate),
                                     "decay": float(fast_decay)}}}
    if method == "pt":
        b = np.linspace(1.0, 0.0, 10) if betas is None else np.asarray(betas, dtype=float)
        return {"Tempering": {"k": steps, "chains": chains, "betas": b.tolist()}}
    raise ValueError(f"method {method!r}; expected 'cd', 'pcd', 'fpcd' or 'pt'")


def _train_config(base: str, *, method=None, k=1, epochs=10, learning_rate=None,
                  momentum=None, weight_decay=None, centering=None, batch_size=None,
                  chains=100, fast_learning_rate=None, fast_decay=0.95, betas=None,
                  sparsity=None, max_norm=None, binarize=None, init_visible_bias=None,
                  monitor_examples=None, chains_from_data=None, mean_field_iterations=None,
                  seed=0, objective=None) -> str:
    c = json.loads(base)
    c["epochs"] = _positive(epochs, "epochs")
    c["seed"] = _seed(seed)
    if method is not None:
        fast = learning_rate if fast_learning_rate is None else fast_learning_rate
        if fast is None:
            fast = c["learning_rate"].get("Constant", 0.002)
        c["negative"] = _negative(method, k, chains, c["epochs"], fast, fast_decay, betas)
    if learning_rate is not None:
        c["learning_rate"] = {"Constant": float(learning_rate)}
    if momentum is not None:
        m = float(momentum)
        c["momentum"] = {"initial": m, "later": m, "switch_epoch": 1}
    if weight_decay is not None:
        c["weight_decay"] = float(weight_decay)
    if centering is not None and centering is not False:
        c["centering"] = {"rate": 0.01 if centering is True else float(centering)}
    if batch_size is not None:
        c["batch_size"] = _positive(batch_size, "batch_size")
    if sparsity is not None:
        target, cost, decay = sparsity
        c["sparsity"] = {"target": float(target), "cost": float(cost), "decay": float(decay)}
    if max_norm is not None:
        c["max_norm"] = float(max_norm)
    if binarize is not None:
        c["binarize"] = bool(binarize)
    if init_visible_bias is not None:
        c["init_visible_bias"] = bool(init_visible_bias)
    if monitor_examples is not None:
        c["monitor_examples"] = _positive(monitor_examples, "monitor_examples")
    if chains_from_data is not None:
        c["chains_from_data"] = bool(chains_from_data)
    if mean_field_iterations is not None:
        c["mean_field"]["iterations"] = _positive(mean_field_iterations, "mean_field_iterations")
    if objective is not None:
        c["objective"] = objective
    return json.dumps(c)


def _callback(callback: Optional[Callable], verbose: bool, label: str = ""):
    """The function the core calls after each epoch with the metrics as JSON."""
    if callback is None and not verbose:
        return None

    def report(text: str):
        metrics = json.loads(text)
        if verbose:
            ll = metrics.get("train_log_likelihood")
            extra = "" if ll is None else f"  ln p(train) {ll:.3f}"
            print(f"{label}epoch {metrics['epoch']:4d}  recon {metrics['recon_error']:.4f}  "
                  f"{metrics['seconds']:.2f} s{extra}", file=sys.stderr, flush=True)
        if callback is not None:
            return callback(metrics)
        return None

    return report


def _history(text: str) -> list:
    return json.loads(text)


class _Layered:
    """What RBMs and DBMs share: the one layered machine of the core."""

    _machine: "_core.Machine"

    # ---- parameters -------------------------------------------------------------------
    @property
    def layer_sizes(self) -> list:
        """Units per layer, visible first."""
        return self._machine.layer_sizes()

    @property
    def units(self) -> tuple:
        """``(visible unit type, hidden unit type)``."""
        return self._machine.kinds()

    @property
    def weights(self) -> list:
        """The couplings ``W_l`` as ``(units below, units above)`` float32 arrays (copies; set
        one with ``set_weights``)."""
        return [self._machine.weights(l) for l in range(len(self.layer_sizes) - 1)]

    @property
    def biases(self) -> list:
        """The biases of every layer, visible first (copies; set with ``set_bias``)."""
        return [self._machine.bias(l) for l in range(len(self.layer_sizes))]

    def set_weights(self, l: int, W) -> None:
        """Replaces coupling ``l`` (0: visible to first hidden) by ``W`` of shape
        ``(below, above)``."""
        sizes = self.layer_sizes
        if not 0 <= l < len(sizes) - 1:
            raise IndexError(f"the machine has no coupling {l}")
        W = np.asarray(W)
        if W.shape != (sizes[l], sizes[l + 1]):
            raise ValueError(f"W{l + 1} must have shape {(sizes[l], sizes[l + 1])}, not {W.shape}")
        self._machine.set_parameters(l, np.ascontiguousarray(W, dtype=np.float32), None, None)

    def set_bias(self, l: int, b) -> None:
        """Replaces the biases of layer ``l`` (0: visible)."""
        sizes = self.layer_sizes
        if not 0 <= l < len(sizes):
            raise IndexError(f"the machine has no layer {l}")
        b = np.asarray(b)
        if b.shape != (sizes[l],):
            raise ValueError(f"b{l} must have shape {(sizes[l],)}, not {b.shape}")
        self._machine.set_parameters(None, None, l, np.ascontiguousarray(b, dtype=np.float32))

    # ---- files and pickling -------------------------------------------------------------
    def save(self, path) -> None:
        """Writes the crate's model file (safetensors: ``W1…``, ``b0…`` and metadata), readable
        by ``load``, the Rust crate and ``safetensors.numpy.load_file``."""
        self._machine.save(str(path))

    def save_npz(self, path) -> None:
        """Writes ``W1…``, ``b0…`` as a NumPy ``.npz``."""
        self._machine.save_npz(str(path))

    def __getstate__(self):
        return {"units": self.units, "weights": self.weights, "biases": self.biases,
                "extra": self._extra_state()}

    def __setstate__(self, state):
        v, h = state["units"]
        self._machine = _core.Machine.from_parameters(v, h, state["weights"], state["biases"])
        self._restore_extra(state["extra"])

    def _extra_state(self):
        return {"log_z": getattr(self, "log_z_", None), "fits": self._fits}

    def _restore_extra(self, extra):
        self.log_z_ = extra["log_z"]
        self._fits = extra["fits"]

    # ---- inference ----------------------------------------------------------------------
    def _check(self, X, name="X") -> np.ndarray:
        return _rows(X, self.layer_sizes[0], name)

    def log_partition(self, method: str = "auto", runs: int = 100, betas=None, seed=0,
                      reverse: bool = False, data=None, initial=None, sweeps: int = 1,
                      blocks: Optional[Sequence[int]] = None):
        """``ln Z``, exactly or by annealed importance sampling.

        method: "exact" (enumeration; for models with few states in one parity), "ais", or
            "auto" (exact when small enough, else AIS).
        runs, betas, seed: AIS runs (the paper: 100), schedule (a count, a sequence of
            inverse temperatures from 0 to 1, or None for the paper's 14,501) and seed.
        data: rows whose base rates make AIS's start model (recommended; default: uniform).
        reverse: anneal from the model back to the start (an upper estimate); runs start at
            ``initial`` (rows of visible states) moved by ``sweeps`` Gibbs sweeps, by default
            the first ``runs`` rows of ``data``.
        blocks: ``(first, end)`` to compute only blocks ``first … end−1`` of :data:`AIS_BLOCK`
            runs each; returns an :class:`AISShard` for :func:`merge_ais`.

        Returns a :class:`LogPartition` (and remembers it as ``log_z_`` for ``score``).
        """
        if method not in ("auto", "exact", "ais"):
            raise ValueError(f"method {method!r}; expected 'auto', 'exact' or 'ais'")
        if method in ("auto", "exact") and blocks is None and not reverse:
            try:
                result = LogPartition("exact", self._machine.log_partition_exact())
                self.log_z_ = result
                return result
            except ValueError:
                if method == "exact":
                    raise
        runs = _positive(runs, "runs")
        seed = _seed(seed)
        d = None if data is None else self._check(data, "data")
        start_states = None
        if reverse:
            source = initial if initial is not None else d
            if source is None:
                raise ValueError("reverse AIS needs `initial` or `data` rows to start from")
            source = self._check(source, "initial")[:runs]
            start_states = self._machine.sample(0, int(sweeps), seed + 1, source, None, None)
        b = None if blocks is None else (int(blocks[0]), int(blocks[1]))
        text = self._machine.ais(runs, _betas(betas), seed, d, start_states, b)
        if b is not None:
            return AISShard(text)
        result = merge_ais([AISShard(text)])
        if not reverse:
            self.log_z_ = result
        return result

    def _log_z(self, log_z) -> float:
        if log_z is not None:
            return float(log_z)
        if getattr(self, "log_z_", None) is not None:
            return self.log_z_.log_z
        try:
            return self.log_partition(method="exact").log_z
        except ValueError:
            raise ValueError("ln Z is not known: call log_partition(method='ais', data=X) "
                             "first, or pass log_z") from None

    def score_samples(self, X, log_z=None) -> np.ndarray:
        """``ln p(v)`` of each row in nats given ``ln Z`` (``log_z``, or the last
        ``log_partition`` result, or the exact value for small models). For DBMs: the
        mean-field lower bound of each."""
        return self._log_unnormalised(self._check(X)) - self._log_z(log_z)

    def score(self, X, y=None, log_z=None) -> float:
        """The average log-likelihood of the rows of ``X`` in nats (see ``score_samples``)."""
        return float(np.mean(self.score_samples(X, log_z)))

    def evaluate(self, X_test, X_train, runs: int = 100, betas=None, seed=0,
                 reverse: bool = True, sweeps: int = 1) -> Evaluation:
        """Evaluates the model as the literature does: ``ln Ẑ`` by AIS from the base rates of
        ``X_train`` (and reverse AIS from the first ``runs`` test rows after ``sweeps`` Gibbs
        sweeps), and the average test and training log-probabilities it gives."""
        text = self._machine.evaluate(self._check(X_test, "X_test"),
                                      self._check(X_train, "X_train"), _positive(runs, "runs"),
                                      _betas(betas), _seed(seed), bool(reverse), int(sweeps))
        result = Evaluation(text)
        self.log_z_ = result.forward
        return result

    def sample(self, n: int = 100, sweeps: int = 1000, clamp=None, start=None, seed=0,
               return_layers: bool = False):
        """Draws ``n`` samples by ``sweeps`` blocked Gibbs sweeps of ``n`` chains started at
        random (or at the rows of ``start``).

        clamp: ``(mask, values)`` holds the visible units where ``mask`` (a boolean array of
            length ``n_visible``) is true at ``values`` (rows, one per chain, or one row for
            all): conditional sampling and inpainting.
        Returns the visible states, ``(n, n_visible)``; with ``return_layers`` every layer's.
        """
        nv = self.layer_sizes[0]
        s = None
        if start is not None:
            s = self._check(start, "start")
            n = s.shape[0]
        n = _positive(n, "n")
        mask = values = None
        if clamp is not None:
            mask, values = clamp
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (nv,):
                raise ValueError(f"clamp mask must have shape ({nv},), not {mask.shape}")
            values = np.asarray(values, dtype=np.float32)
            if values.ndim == 1:
                values = np.broadcast_to(values, (n, nv))
            values = _rows(values, nv, "clamp values")
            mask = mask.tolist()
        if sweeps < 0:
            raise ValueError(f"sweeps {sweeps}; expected ≥ 0")
        layers = self._machine.sample(n, int(sweeps), _seed(seed), s, mask, values)
        return layers if return_layers else layers[0]

    def _log_unnormalised(self, X, iterations: int = 100) -> np.ndarray:
        return self._machine.log_unnormalised(X, iterations)

    def _fit(self, X, base: str, X_val, callback, verbose, settings) -> "_Layered":
        X = self._check(X)
        held = None if X_val is None else self._check(X_val, "X_val")
        if settings.get("init_visible_bias") is None:
            # Hinton's initialisation from the data, on the first fit only.
            settings["init_visible_bias"] = self._fits == 0 and self.units[0] == "bernoulli"
        if settings.get("seed") is None:
            settings["seed"] = self._fits
        config = _train_config(base, **settings)
        history = self._machine.fit(X, config, held, _callback(callback, verbose))
        self._fits += 1
        self.history_ = getattr(self, "history_", []) + _history(history)
        self.log_z_ = None
        return self


_FIT_DOC = """
        method: "cd" (CD-k), "pcd" (persistent CD), "fpcd" (fast PCD) or "pt" (parallel
            tempering with ``betas`` inverse temperatures from 1 down, default 10 linear to 0).
        k: Gibbs sweeps per update, or ``(from, to)`` growing linearly over the epochs.
        chains: persistent chains (PCD, fast PCD; per temperature for PT).
        learning_rate, momentum, weight_decay: momentum SGD (momentum default 0.5, then 0.9
            from epoch 6; weight decay is L2 on the weights only).
        centering: True (rate 0.01) or the offsets' rate: centered training.
        sparsity: ``(target, cost, decay)``; max_norm: bound on each hidden unit's weights.
        binarize: binarise grey levels in [0, 1] afresh for every minibatch.
        monitor_examples: training (and held-out) rows of the per-epoch metrics.
        X_val: held-out rows for the free-energy gap and held-out log-likelihood.
        seed: master seed of the run (default: the number of earlier fits).
        callback: called after every epoch with its metrics (a dict); return False to stop.
        verbose: print one line per epoch to stderr.
        Ctrl-C stops training after the current epoch with KeyboardInterrupt; the model keeps
        the last finished epoch. A diverging run raises DivergedError and keeps the last good
        epoch. The epochs' metrics accumulate in ``history_``."""


class RBM(_Layered):
    """A restricted Boltzmann machine, ``E(v, h) = E_v(v) + E_h(h) − vᵀWh``.

    n_visible, n_hidden: units per layer.
    visible, hidden: unit types, "bernoulli" ({0, 1}), "gaussian" (unit variance) or
        "softmax" (one-hot over the layer).
    seed: draws the initial weights, ``W ~ N(0, 0.01²)`` (biases 0).

    Parameters are NumPy arrays: ``W`` ``(n_visible, n_hidden)``, ``b_visible``, ``b_hidden``.
    """

    def __init__(self, n_visible: int, n_hidden: int, visible: str = "bernoulli",
                 hidden: str = "bernoulli", seed=0):
        self._machine = _core.Machine(_unit(visible, "visible"), _unit(hidden, "hidden"),
                                      [_positive(n_visible, "n_visible"),
                                       _positive(n_hidden, "n_hidden")], _seed(seed))
        self._fits = 0
        self.log_z_ = None

    @classmethod
    def _wrap(cls, machine) -> "RBM":
        if len(machine.layer_sizes()) != 2:
            raise ValueError(f"the file holds a machine of {len(machine.layer_sizes()) - 1} "
                             "hidden layers; load it with DBM.load")
        rbm = cls.__new__(cls)
        rbm._machine, rbm._fits, rbm.log_z_ = machine, 1, None
        return rbm

    @classmethod
    def load(cls, path) -> "RBM":
        """Reads a model file written by ``save`` (or by the Rust crate)."""
        return cls._wrap(_core.Machine.load(str(path)))

    @classmethod
    def load_npz(cls, path, visible: str = "bernoulli", hidden: str = "bernoulli") -> "RBM":
        """Reads ``W1``, ``b0``, ``b1`` from a NumPy ``.npz``."""
        return cls._wrap(_core.Machine.load_npz(_unit(visible, "visible"),
                                                _unit(hidden, "hidden"), str(path)))

    @property
    def n_visible(self) -> int:
        """The number of visible units."""
        return self.layer_sizes[0]

    @property
    def n_hidden(self) -> int:
        """The number of hidden units."""
        return self.layer_sizes[1]

    @property
    def W(self) -> np.ndarray:
        """The weights, ``(n_visible, n_hidden)`` float32 (a copy; assign to change)."""
        return self._machine.weights(0)

    @W.setter
    def W(self, value) -> None:
        self.set_weights(0, value)

    @property
    def b_visible(self) -> np.ndarray:
        """The visible biases, ``(n_visible,)`` float32 (a copy; assign to change)."""
        return self._machine.bias(0)

    @b_visible.setter
    def b_visible(self, value) -> None:
        self.set_bias(0, value)

    @property
    def b_hidden(self) -> np.ndarray:
        """The hidden biases, ``(n_hidden,)`` float32 (a copy; assign to change)."""
        return self._machine.bias(1)

    @b_hidden.setter
    def b_hidden(self, value) -> None:
        self.set_bias(1, value)

    def fit(self, X, method: str = "cd", k=1, epochs: int = 10, learning_rate: float = 0.002,
            momentum=None, weight_decay: float = 2e-4, centering=None, batch_size: int = 100,
            chains: int = 100, fast_learning_rate=None, betas=None, sparsity=None,
            max_norm=None, binarize: bool = False, monitor_examples: int = 1000, X_val=None,
            seed=None, callback: Optional[Callable] = None, verbose: bool = False) -> "RBM":
        """Trains on the rows of ``X`` (``(n, n_visible)``) from the current parameters and
        returns ``self``. The first fit sets Bernoulli visible biases from the data's means.
        A C-contiguous float32 ``X`` is read where it lies, without a copy: do not write to it
        from another thread (or the callback) while it trains.
        """
        settings = dict(method=method, k=k, epochs=epochs, learning_rate=learning_rate,
                        momentum=momentum, weight_decay=weight_decay, centering=centering,
                        batch_size=batch_size, chains=chains,
                        fast_learning_rate=fast_learning_rate, betas=betas, sparsity=sparsity,
                        max_norm=max_norm, binarize=binarize, seed=seed,
                        monitor_examples=monitor_examples)
        return self._fit(X, _core.default_train_config(), X_val, callback, verbose, settings)

    fit.__doc__ += _FIT_DOC

    def partial_fit(self, X, **settings) -> "RBM":
        """One epoch of ``fit`` on ``X`` (e.g. a chunk of a larger set), continuing from the
        current parameters; the optimiser's momentum and persistent chains start afresh."""
        settings["epochs"] = 1
        return self.fit(X, **settings)

    def free_energy(self, X) -> np.ndarray:
        """``F(v) = −ln Σ_h exp(−E(v, h))`` of each row (nats, float64)."""
        return -self._log_unnormalised(self._check(X))

    def transform(self, X) -> np.ndarray:
        """``E[h | v]`` of each row, ``(n, n_hidden)``: the hidden features (as scikit-learn's
        ``BernoulliRBM.transform``)."""
        return self._machine.hidden_means(self._check(X), 1)[0]

    @classmethod
    def from_sklearn(cls, estimator) -> "RBM":
        """The RBM of a fitted ``sklearn.neural_network.BernoulliRBM`` (same energy: same free
        energies)."""
        W = np.asarray(estimator.components_).T
        rbm = cls(W.shape[0], W.shape[1])
        rbm.W = W
        rbm.b_visible = estimator.intercept_visible_
        rbm.b_hidden = estimator.intercept_hidden_
        rbm._fits = 1
        return rbm

    def to_sklearn(self):
        """A fitted ``sklearn.neural_network.BernoulliRBM`` with these parameters (Bernoulli
        units only)."""
        if self.units != ("bernoulli", "bernoulli"):
            raise ValueError(f"scikit-learn's BernoulliRBM has Bernoulli units, not {self.units}")
        from sklearn.neural_network import BernoulliRBM

        est = BernoulliRBM(n_components=self.n_hidden)
        est.components_ = self.W.T.astype(np.float64)
        est.intercept_hidden_ = self.b_hidden.astype(np.float64)
        est.intercept_visible_ = self.b_visible.astype(np.float64)
        est.h_samples_ = np.zeros((est.batch_size, self.n_hidden))
        est.n_features_in_ = self.n_visible
        return est

    def __repr__(self) -> str:
        v, h = self.units
        return f"RBM({self.n_visible}, {self.n_hidden}, visible={v!r}, hidden={h!r})"


class DBM(_Layered):
    """A deep Boltzmann machine ``v — W1 — h1 — W2 — h2 …`` (Salakhutdinov & Hinton 2009).

    layers: units per layer, visible first (at least one hidden layer).
    visible, hidden: unit types of the visible layer and of every hidden layer.
    seed: draws the initial weights, ``W ~ N(0, 0.01²)``.

    ``weights[l]`` is ``(layers[l], layers[l+1])``; ``biases[l]`` has ``layers[l]`` values.
    Log-probabilities of DBMs are mean-field lower bounds.
    """

    def __init__(self, layers: Sequence[int], visible: str = "bernoulli",
                 hidden: str = "bernoulli", seed=0):
        sizes = [_positive(n, "layer size") for n in layers]
        if len(sizes) < 2:
            raise ValueError(f"layers {list(layers)}; expected a visible and ≥ 1 hidden layer")
        self._machine = _core.Machine(_unit(visible, "visible"), _unit(hidden, "hidden"),
                                      sizes, _seed(seed))
        self._fits = 0
        self.log_z_ = None

    @classmethod
    def load(cls, path) -> "DBM":
        """Reads a model file written by ``save`` (an RBM's file loads as a one-layer DBM)."""
        dbm = cls.__new__(cls)
        dbm._machine, dbm._fits, dbm.log_z_ = _core.Machine.load(str(path)), 1, None
        return dbm

    @classmethod
    def load_npz(cls, path, visible: str = "bernoulli", hidden: str = "bernoulli") -> "DBM":
        """Reads ``W1, W2, …`` and ``b0, b1, …`` from a NumPy ``.npz``."""
        dbm = cls.__new__(cls)
        dbm._machine = _core.Machine.load_npz(_unit(visible, "visible"),
                                              _unit(hidden, "hidden"), str(path))
        dbm._fits, dbm.log_z_ = 1, None
        return dbm

    def pretrain(self, X, epochs: int = 100, learning_rate: float = 0.05, batch_size: int = 100,
                 k=1, momentum=None, seed=0, callback: Optional[Callable] = None,
                 verbose: bool = False) -> "DBM":
        """Greedy layer-wise pretraining (Bernoulli hidden units): one CD-k RBM per hidden
        layer with inputs doubled where the DBM gives a layer two neighbours; replaces the
        parameters by the composed stack. ``callback(layer, metrics)`` after every epoch."""
        X = self._check(X)
        configs = []
        for l in range(len(self.layer_sizes) - 1):
            configs.append(_train_config(_core.default_train_config(), method="cd", k=k,
                                         epochs=epochs, learning_rate=learning_rate,
                                         momentum=momentum, batch_size=batch_size,
                                         seed=_seed(seed) + l,
                                         init_visible_bias=(l == 0)))

        def report(layer, text):
            metrics = json.loads(text)
            if verbose:
                print(f"layer {layer} epoch {metrics['epoch']:4d}  recon "
                      f"{metrics['recon_error']:.4f}", file=sys.stderr, flush=True)
            if callback is not None:
                callback(layer, metrics)

        self._machine.pretrain(X, configs, report if (callback or verbose) else None)
        self._fits += 1
        self.log_z_ = None
        return self

    def fit(self, X, method: str = "pcd", k=5, epochs: int = 20, learning_rate=None,
            momentum=None, weight_decay=None, centering=None, batch_size: int = 100,
            chains: int = 100, fast_learning_rate=None, betas=None, sparsity=None,
            max_norm=None, binarize: bool = False, mean_field_iterations: int = 10,
            monitor_examples: int = 1000, X_val=None, seed=None,
            callback: Optional[Callable] = None, verbose: bool = False) -> "DBM":
        """Joint training (mean-field positive phase, persistent chains started at the data;
        Salakhutdinov & Hinton's settings by default: PCD-5 with 100 chains, a rate from 0.001
        decaying geometrically to 1e-4, 20 epochs) from the current parameters."""
        settings = dict(method=method, k=k, epochs=epochs, learning_rate=learning_rate,
                        momentum=momentum, weight_decay=weight_decay, centering=centering,
                        batch_size=batch_size, chains=chains,
                        fast_learning_rate=fast_learning_rate, betas=betas, sparsity=sparsity,
                        max_norm=max_norm, binarize=binarize, seed=seed,
                        mean_field_iterations=mean_field_iterations, init_visible_bias=False,
                        monitor_examples=monitor_examples)
        return self._fit(X, _core.joint_train_config(), X_val, callback, verbose, settings)

    fit.__doc__ += _FIT_DOC

    def transform(self, X, iterations: int = 100) -> list:
        """Mean-field posterior means of every hidden layer given each row: a list of
        ``(n, layers[l])`` arrays."""
        return self._machine.hidden_means(self._check(X), _positive(iterations, "iterations"))

    def __repr__(self) -> str:
        v, h = self.units
        return f"DBM({self.layer_sizes}, visible={v!r}, hidden={h!r})"


class ClassRBM:
    """A classification RBM (Larochelle & Bengio 2008): inputs ``x`` and a one-hot label
    ``y`` side by side below one hidden layer, ``E = −xᵀWh − yᵀUh − biases``, with the exact
    ``p(y | x)``.

    n_inputs, n_hidden, n_classes: sizes; seed draws the initial weights.
    Parameters: ``W`` ``(n_inputs, n_hidden)``, ``U`` ``(n_classes, n_hidden)``, ``b_input``,
    ``b_label``, ``b_hidden``.
    """

    def __init__(self, n_inputs: int, n_hidden: int, n_classes: int, seed=0):
        self._model = _core.Classifier(_positive(n_inputs, "n_inputs"),
                                       _positive(n_hidden, "n_hidden"),
                                       _positive(n_classes, "n_classes"), _seed(seed))

    @classmethod
    def load(cls, path) -> "ClassRBM":
        """Reads a classification RBM's model file written by ``save``."""
        c = cls.__new__(cls)
        c._model = _core.Classifier.load(str(path))
        return c

    def save(self, path) -> None:
        """Writes the crate's model file (machine "class-rbm")."""
        self._model.save(str(path))

    @property
    def sizes(self) -> tuple:
        """``(n_inputs, n_hidden, n_classes)``."""
        return self._model.sizes()

    @property
    def classes_(self) -> np.ndarray:
        """The class labels, ``0 … n_classes − 1`` (as scikit-learn's classifiers)."""
        return np.arange(self.sizes[2])

    def _params(self, i):
        return self._model.parameters()[i]

    W = property(lambda self: self._params(0), doc="Input weights, (n_inputs, n_hidden).")
    U = property(lambda self: self._params(1), doc="Label weights, (n_classes, n_hidden).")
    b_input = property(lambda self: self._params(2), doc="Input biases, (n_inputs,).")
    b_label = property(lambda self: self._params(3), doc="Label biases, (n_classes,).")
    b_hidden = property(lambda self: self._params(4), doc="Hidden biases, (n_hidden,).")

    def _labels(self, y, n: int) -> list:
        y = np.asarray(y)
        if y.shape != (n,):
            raise ValueError(f"y must have shape ({n},), one label per row, not {y.shape}")
        if y.dtype.kind not in "iu" or (y.size and (y.min() < 0 or y.max() >= self.sizes[2])):
            raise ValueError(f"labels must be integers in 0..{self.sizes[2] - 1}")
        return y.astype(np.int64).tolist()

    def fit(self, X, y, objective: str = "hybrid", alpha: float = 0.01, epochs: int = 10,
            learning_rate: float = 0.05, momentum: float = 0.5, weight_decay: float = 0.0,
            batch_size: int = 20, method: str = "cd", k=1, chains: int = 100, X_val=None,
            y_val=None, seed=0, callback: Optional[Callable] = None,
            verbose: bool = False) -> "ClassRBM":
        """Trains on rows ``X`` (``(n, n_inputs)``, values in [0, 1]) with integer labels
        ``y``. objective: "discriminative" (``ln p(y|x)``), "generative" (``ln p(x, y)`` by
        ``method``) or "hybrid" (``ln p(y|x) + alpha · ln p(x, y)``). Other settings as
        ``RBM.fit``; the metrics report training and held-out error."""
        X = _rows(X, self.sizes[0])
        labels = self._labels(y, X.shape[0])
        held = None
        if X_val is not None:
            Xv = _rows(X_val, self.sizes[0], "X_val")
            held = (Xv, self._labels(y_val, Xv.shape[0]))
        objectives = {"generative": "Generative", "discriminative": "Discriminative",
                      "hybrid": {"Hybrid": {"alpha": float(alpha)}}}
        if objective not in objectives:
            raise ValueError(f"objective {objective!r}; expected one of {', '.join(objectives)}")
        config = _train_config(_core.classifier_train_config(self.sizes[2]), method=method,
                               k=k, epochs=epochs, learning_rate=learning_rate,
                               momentum=momentum, weight_decay=weight_decay,
                               batch_size=batch_size, chains=chains, seed=_seed(seed),
                               objective=objectives[objective])
        history = self._model.fit(X, labels, config, held, _callback(callback, verbose))
        self.history_ = getattr(self, "history_", []) + _history(history)
        return self

    def predict_log_proba(self, X) -> np.ndarray:
        """``ln p(y | x)`` of every class for each row, ``(n, n_classes)`` float64."""
        return self._model.class_log_probabilities(_rows(X, self.sizes[0]))

    def predict_proba(self, X) -> np.ndarray:
        """``p(y | x)`` of every class for each row, ``(n, n_classes)``."""
        return np.exp(self.predict_log_proba(X))

    def predict(self, X) -> np.ndarray:
        """The most probable class of each row."""
        return np.argmax(self.predict_log_proba(X), axis=1)

    def score(self, X, y) -> float:
        """Accuracy on ``(X, y)``, as scikit-learn's classifiers."""
        X = _rows(X, self.sizes[0])
        return float(np.mean(self.predict(X) == np.asarray(self._labels(y, X.shape[0]))))

    def __repr__(self) -> str:
        return "ClassRBM(%d, %d, %d)" % self.sizes


def load(path):
    """Reads any model file: an :class:`RBM`, a :class:`DBM` or a :class:`ClassRBM`."""
    try:
        machine = _core.Machine.load(str(path))
    except ValueError as e:
        # Not a layered machine of one unit type per layer: perhaps a classifier's file.
        try:
            return ClassRBM.load(path)
        except ValueError:
            raise e from None
    if len(machine.layer_sizes()) == 2:
        return RBM._wrap(machine)
    dbm = DBM.__new__(DBM)
    dbm._machine, dbm._fits, dbm.log_z_ = machine, 1, None
    return dbm
