"""The Python package against an independent NumPy enumeration, and its behaviour at the door.

Tolerances: exact quantities agree to float32 rounding (the core's products are float32);
Monte-Carlo checks use fixed seeds and the 99.9 % quantile of the statistic's distribution.
"""

import itertools
import math
import pickle
import signal

import numpy as np
import pytest

import boltzmann


# ---- an independent enumeration in NumPy ---------------------------------------------------

def states(n):
    """Every binary vector of n units, one per row."""
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


def logsumexp(a, axis=None):
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def softplus(x):
    return np.logaddexp(0.0, x)


def rbm_free_energy(W, b, c, V):
    """F(v) of a Bernoulli-Bernoulli RBM, in float64."""
    W, b, c, V = (np.asarray(a, dtype=np.float64) for a in (W, b, c, V))
    return -V @ b - softplus(V @ W + c).sum(axis=1)


def rbm_log_z(W, b, c):
    return logsumexp(-rbm_free_energy(W, b, c, states(len(b))))


def random_rbm(nv, nh, scale, seed):
    rng = np.random.default_rng(seed)
    rbm = boltzmann.RBM(nv, nh)
    rbm.W = rng.normal(0, scale, (nv, nh))
    rbm.b_visible = rng.normal(0, scale, nv)
    rbm.b_hidden = rng.normal(0, scale, nh)
    return rbm


def bars_and_stripes(n=3):
    rows = []
    for bits in itertools.product([0.0, 1.0], repeat=n):
        bars = np.repeat(np.array(bits)[:, None], n, axis=1)
        rows.append(bars.ravel())
        rows.append(bars.T.ravel())
    return np.unique(np.array(rows, dtype=np.float32), axis=0)


# ---- exact values ---------------------------------------------------------------------------

def test_exact_log_z_and_free_energies_match_numpy_enumeration():
    for seed in range(3):
        rbm = random_rbm(8, 5, 1.0, seed)
        W, b, c = rbm.W, rbm.b_visible, rbm.b_hidden
        assert rbm.log_partition(method="exact").log_z == pytest.approx(rbm_log_z(W, b, c),
                                                                       abs=1e-4)
        V = states(8)
        np.testing.assert_allclose(rbm.free_energy(V), rbm_free_energy(W, b, c, V), atol=1e-4)
        expected = -rbm_free_energy(W, b, c, V) - rbm_log_z(W, b, c)
        np.testing.assert_allclose(rbm.score_samples(V), expected, atol=1e-4)
        # p(v) over every state sums to one.
        assert np.exp(rbm.score_samples(V)).sum() == pytest.approx(1.0, abs=1e-4)


def test_gaussian_visible_log_z_matches_the_integral():
    # E = ½‖v‖² − bᵀv − vᵀWh − cᵀh: ∫ exp(−E) dv = (2π)^{n/2} exp(cᵀh + ½‖b + Wh‖²).
    rng = np.random.default_rng(4)
    rbm = boltzmann.RBM(4, 5, visible="gaussian")
    W, b, c = rng.normal(0, 0.5, (4, 5)), rng.normal(0, 1, 4), rng.normal(0, 1, 5)
    rbm.W, rbm.b_visible, rbm.b_hidden = W, b, c
    W, b, c = rbm.W.astype(float), rbm.b_visible.astype(float), rbm.b_hidden.astype(float)
    H = states(5)
    mean = H @ W.T + b
    log_terms = 2 * math.log(2 * math.pi) + H @ c + 0.5 * (mean ** 2).sum(axis=1)
    assert rbm.log_partition().log_z == pytest.approx(logsumexp(log_terms), abs=1e-4)


def test_softmax_visible_units_are_one_hot():
    rng = np.random.default_rng(5)
    rbm = boltzmann.RBM(4, 3, visible="softmax")
    rbm.W = rng.normal(0, 1, (4, 3))
    W, b, c = rbm.W.astype(float), rbm.b_visible.astype(float), rbm.b_hidden.astype(float)
    V = np.eye(4)
    expected = logsumexp(-rbm_free_energy(W, b, c, V))
    assert rbm.log_partition().log_z == pytest.approx(expected, abs=1e-5)
    x = rbm.sample(200, sweeps=5, seed=3)
    assert np.all(x.sum(axis=1) == 1) and set(np.unique(x)) <= {0.0, 1.0}


def dbm_log_p(dbm, V):
    """Exact ln p(v) of each row of V under a two-hidden-layer Bernoulli DBM, and ln Z."""
    W1, W2 = (w.astype(float) for w in dbm.weights)
    b0, b1, b2 = (b.astype(float) for b in dbm.biases)
    H1, H2 = states(len(b1)), states(len(b2))
    # h2 summed out: ln Σ_{h1} exp(vᵀW1h1 + b1ᵀh1 + Σ_k softplus((h1ᵀW2)_k + b2_k)) + b0ᵀv.
    top = softplus(H1 @ W2 + b2).sum(axis=1) + H1 @ b1
    log_p_star = lambda X: X @ b0 + logsumexp(X @ W1 @ H1.T + top, axis=1)
    log_z = logsumexp(log_p_star(states(len(b0))))
    return log_p_star(np.asarray(V, dtype=float)) - log_z, log_z


def test_dbm_log_z_and_bounds_match_enumeration():
    rng = np.random.default_rng(6)
    dbm = boltzmann.DBM([5, 4, 3])
    dbm.set_weights(0, rng.normal(0, 1, (5, 4)))
    dbm.set_weights(1, rng.normal(0, 1, (4, 3)))
    for l, n in enumerate([5, 4, 3]):
        dbm.set_bias(l, rng.normal(0, 0.5, n))
    V = states(5)
    log_p, log_z = dbm_log_p(dbm, V)
    assert dbm.log_partition(method="exact").log_z == pytest.approx(log_z, abs=1e-4)
    bounds = dbm.score_samples(V)
    # The mean-field bound never exceeds ln p(v), and is close to it on a small model.
    assert np.all(bounds <= log_p + 1e-4)
    assert np.all(bounds > log_p - 3.0)


# ---- estimators and samplers ---------------------------------------------------------------

def test_ais_brackets_the_exact_log_z():
    rbm = random_rbm(20, 10, 0.6, 7)
    exact = rbm.log_partition(method="exact").log_z
    est = rbm.log_partition(method="ais", runs=200, betas=2000, seed=1)
    assert est.log_z_lower <= exact <= est.log_z_upper, (est, exact)
    assert abs(est.log_z - exact) < 0.05
    assert est.log_weights.shape == (200,)
    assert 1 <= est.effective_sample_size <= 200
    # Reverse AIS from exact-ish samples: an estimate from above, near the exact value.
    V = rbm.sample(200, sweeps=500, seed=2)
    rev = rbm.log_partition(method="ais", runs=200, betas=2000, seed=3, reverse=True,
                            initial=V)
    assert rev.method == "reverse-ais"
    assert abs(rev.log_z - exact) < 0.1


def test_samples_follow_the_enumerated_distribution():
    rbm = random_rbm(5, 3, 1.0, 8)
    W, b, c = rbm.W, rbm.b_visible, rbm.b_hidden
    V = states(5)
    p = np.exp(-rbm_free_energy(W, b, c, V) - rbm_log_z(W, b, c))
    n = 20_000
    x = rbm.sample(n, sweeps=100, seed=9)
    counts = np.bincount((x @ (2 ** np.arange(4, -1, -1))).astype(int), minlength=32)
    chi2 = ((counts - n * p) ** 2 / (n * p)).sum()
    assert chi2 < 61.10, chi2  # χ²₀.₉₉₉ with 31 degrees of freedom


def test_clamped_sampling_follows_the_conditional():
    rbm = random_rbm(5, 3, 1.0, 10)
    W, b, c = rbm.W, rbm.b_visible, rbm.b_hidden
    V = states(5)
    p = np.exp(-rbm_free_energy(W, b, c, V))
    mask = np.array([True, True, False, False, False])
    keep = (V[:, 0] == 1) & (V[:, 1] == 0)
    p = np.where(keep, p, 0)
    p /= p.sum()
    n = 20_000
    x = rbm.sample(n, sweeps=100, clamp=(mask, np.array([1, 0, 0, 0, 0])), seed=11)
    assert np.all(x[:, 0] == 1) and np.all(x[:, 1] == 0)
    counts = np.bincount((x @ (2 ** np.arange(4, -1, -1))).astype(int), minlength=32)
    q = p[keep]
    chi2 = ((counts[keep] - n * q) ** 2 / (n * q)).sum()
    assert chi2 < 24.32, chi2  # χ²₀.₉₉₉ with 7 degrees of freedom


def test_training_raises_the_exact_log_likelihood():
    # The crate's own test settings; uniform over the 14 patterns would be ln(1/14) = −2.64,
    # the start (and the pixels' base rates) −9·ln 2 = −6.24.
    X = bars_and_stripes(3)
    data = np.tile(X, (10, 1))
    for method in ["cd", "pcd", "fpcd", "pt"]:
        rbm = boltzmann.RBM(9, 12, seed=41)
        before = rbm.score(X)
        rbm.fit(data, method=method, epochs=300, batch_size=14, learning_rate=0.05,
                momentum=0.5, weight_decay=0.0, seed=42)
        after = rbm.score(X)
        assert before < -5.0 and after > before + 2.0, (method, before, after)
        assert len(rbm.history_) == 300


def test_same_seed_same_bits():
    X = bars_and_stripes(3)
    a = boltzmann.RBM(9, 8, seed=1).fit(X, method="pcd", epochs=5, batch_size=7, seed=3)
    b = boltzmann.RBM(9, 8, seed=1).fit(X, method="pcd", epochs=5, batch_size=7, seed=3)
    assert np.array_equal(a.W, b.W) and np.array_equal(a.b_hidden, b.b_hidden)
    assert np.array_equal(a.sample(10, seed=4), b.sample(10, seed=4))


def test_callback_sees_metrics_and_stops_training():
    X = bars_and_stripes(3)
    seen = []

    def callback(metrics):
        seen.append(metrics["epoch"])
        return metrics["epoch"] < 3

    rbm = boltzmann.RBM(9, 4).fit(X, epochs=50, batch_size=7, callback=callback)
    assert seen == [1, 2, 3] and len(rbm.history_) == 3

    def broken(metrics):
        raise RuntimeError("from the callback")

    with pytest.raises(RuntimeError, match="from the callback"):
        boltzmann.RBM(9, 4).fit(X, epochs=5, batch_size=7, callback=broken)


@pytest.fixture
def ctrl_c_raises():
    """Python's own SIGINT handler, as in an interactive session.

    A process started in the background (CI runners, `nohup`, `cmd &`) inherits SIGINT as
    ignored, and then Python installs no handler; the tests below need the usual one.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_stops_training_and_keeps_a_valid_model(ctrl_c_raises):
    X = bars_and_stripes(3)
    rbm = boltzmann.RBM(9, 4)

    def interrupt(metrics):
        if metrics["epoch"] == 2:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        rbm.fit(X, epochs=100, batch_size=7, callback=interrupt)
    assert np.all(np.isfinite(rbm.W))
    assert np.isfinite(rbm.score(X))


def test_ctrl_c_stops_long_ais_and_sampling(ctrl_c_raises):
    import os
    import threading
    import time

    rbm = random_rbm(100, 50, 0.1, 19)

    def interrupt_soon():
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)

    for long_call in [
        lambda: rbm.log_partition(method="ais", runs=2000, betas=14_501),  # minutes
        lambda: rbm.sample(2000, sweeps=1_000_000),                         # hours
    ]:
        threading.Thread(target=interrupt_soon).start()
        started = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            long_call()
        assert time.perf_counter() - started < 20
    assert np.isfinite(rbm.log_partition(method="ais", runs=10, betas=100).log_z)


def test_dbm_pretraining_and_joint_training_run():
    # The crate's own test: pretraining, then joint training raises the exact log-likelihood.
    X = bars_and_stripes(3)
    data = np.tile(X, (10, 1))
    dbm = boltzmann.DBM([9, 8, 4], seed=1)
    dbm.pretrain(data, epochs=100, batch_size=14, learning_rate=0.05, momentum=0.5, seed=1)
    pretrained = dbm_log_p(dbm, X)[0].mean()
    dbm.fit(data, epochs=150, batch_size=14, learning_rate=0.02, momentum=0.5,
            weight_decay=0.0, seed=4)
    trained = dbm_log_p(dbm, X)[0].mean()
    assert trained > pretrained + 0.5, (pretrained, trained)
    # The monitor's exact figure (its subset: the first 1,000 rows) and the bound agree.
    assert dbm.history_[-1]["train_log_likelihood"] == pytest.approx(
        dbm_log_p(dbm, data)[0].mean(), abs=1e-3)
    assert dbm.score(X) <= trained + 1e-4
    means = dbm.transform(X)
    assert [m.shape for m in means] == [(len(X), 8), (len(X), 4)]


def test_classifier_probabilities_are_exact_and_it_learns():
    rng = np.random.default_rng(12)
    # Three classes: which third of the 12 inputs is on.
    y = rng.integers(0, 3, 300)
    X = (rng.random((300, 12)) < 0.1).astype(np.float32)
    for i, c in enumerate(y):
        X[i, 4 * c:4 * c + 4] = (rng.random(4) < 0.9)
    model = boltzmann.ClassRBM(12, 10, 3, seed=1)
    model.fit(X, y, epochs=20, learning_rate=0.05, batch_size=10, seed=2)
    assert model.score(X, y) > 0.9
    # p(y | x) ∝ exp(b_y + Σ_j softplus(c_j + U_yj + Σ_i W_ij x_i)).
    W, U = model.W.astype(float), model.U.astype(float)
    a = X[:5] @ W + model.b_hidden
    logits = np.stack([model.b_label[k] + softplus(a + U[k]).sum(axis=1) for k in range(3)], 1)
    expected = logits - logsumexp(logits, axis=1)[:, None]
    np.testing.assert_allclose(model.predict_log_proba(X[:5]), expected, atol=1e-3)


# ---- files and interop ---------------------------------------------------------------------

def test_save_load_round_trip_and_npz(tmp_path):
    rbm = random_rbm(7, 4, 1.0, 13)
    path = tmp_path / "rbm.safetensors"
    rbm.save(path)
    back = boltzmann.RBM.load(path)
    assert np.array_equal(back.W, rbm.W) and np.array_equal(back.b_visible, rbm.b_visible)
    assert isinstance(boltzmann.load(path), boltzmann.RBM)
    npz = tmp_path / "rbm.npz"
    rbm.save_npz(npz)
    arrays = np.load(npz)
    assert np.array_equal(arrays["W1"], rbm.W) and np.array_equal(arrays["b1"], rbm.b_hidden)
    # An .npz written by NumPy alone (float64) loads.
    np.savez(tmp_path / "numpy.npz", W1=arrays["W1"].astype(np.float64), b0=arrays["b0"],
             b1=arrays["b1"])
    assert np.array_equal(boltzmann.RBM.load_npz(tmp_path / "numpy.npz").W, rbm.W)
    dbm = boltzmann.DBM([6, 4, 3], seed=2)
    dbm.save(tmp_path / "dbm.safetensors")
    assert isinstance(boltzmann.load(tmp_path / "dbm.safetensors"), boltzmann.DBM)
    clf = boltzmann.ClassRBM(6, 4, 3, seed=3)
    clf.save(tmp_path / "clf.safetensors")
    again = boltzmann.load(tmp_path / "clf.safetensors")
    assert isinstance(again, boltzmann.ClassRBM) and np.array_equal(again.U, clf.U)
    # Pickling keeps the bits.
    assert np.array_equal(pickle.loads(pickle.dumps(rbm)).W, rbm.W)


def test_scikit_learn_interop():
    sklearn = pytest.importorskip("sklearn.neural_network")
    X = bars_and_stripes(3).astype(np.float64)
    est = sklearn.BernoulliRBM(n_components=5, n_iter=20, random_state=0).fit(X)
    rbm = boltzmann.RBM.from_sklearn(est)
    expected = rbm_free_energy(est.components_.T, est.intercept_visible_,
                               est.intercept_hidden_, X)
    np.testing.assert_allclose(rbm.free_energy(X), expected, atol=1e-4)
    np.testing.assert_allclose(rbm.transform(X), est.transform(X), atol=1e-5)
    back = rbm.to_sklearn()
    np.testing.assert_allclose(back.transform(X), est.transform(X), atol=1e-5)


# ---- bad input ------------------------------------------------------------------------------

def test_bad_input_raises_the_right_exception(tmp_path):
    rbm = boltzmann.RBM(4, 3)
    good = np.zeros((5, 4))
    cases = [
        (ValueError, lambda: rbm.free_energy(np.zeros((5, 3)))),
        (ValueError, lambda: rbm.free_energy(np.zeros(4))),
        (ValueError, lambda: rbm.free_energy(np.full((2, 4), np.nan))),
        (ValueError, lambda: rbm.fit(np.full((10, 4), np.inf))),
        (ValueError, lambda: rbm.fit(good, batch_size=50)),
        (ValueError, lambda: rbm.fit(good, method="sgd")),
        (ValueError, lambda: rbm.fit(good, epochs=0)),
        (ValueError, lambda: rbm.fit(good, k=0)),
        (ValueError, lambda: rbm.fit(good, learning_rate=float("nan"))),
        (TypeError, lambda: rbm.free_energy(np.array([["a"] * 4]))),
        (ValueError, lambda: boltzmann.RBM(4, 0)),
        (ValueError, lambda: boltzmann.RBM(4, 3, visible="poisson")),
        (ValueError, lambda: boltzmann.RBM(4, 3, seed=-1)),
        (ValueError, lambda: boltzmann.DBM([4])),
        (ValueError, lambda: rbm.sample(5, clamp=(np.ones(3, bool), np.zeros(4)))),
        (ValueError, lambda: rbm.log_partition(method="magic")),
        (ValueError, lambda: rbm.log_partition(method="ais", runs=10, betas=[0.0, 0.5, 0.2, 1])),
        (ValueError, lambda: rbm.log_partition(method="ais", runs=60, blocks=(0, 5))),
        (ValueError, lambda: rbm.log_partition(method="ais", reverse=True)),
        (ValueError, lambda: setattr(rbm, "W", np.zeros((3, 4)))),
        (ValueError, lambda: setattr(rbm, "W", np.full((4, 3), np.nan))),
        (IndexError, lambda: rbm.set_bias(2, np.zeros(3))),
        (OSError, lambda: boltzmann.RBM.load(tmp_path / "missing.safetensors")),
        (ValueError, lambda: boltzmann.ClassRBM(4, 3, 2).fit(good, [0, 1, 2, 0, 1])),
        (ValueError, lambda: boltzmann.DBM([4, 3, 2], hidden="gaussian").pretrain(good)),
    ]
    for exception, call in cases:
        with pytest.raises(exception):
            call()
    # The model is unchanged by the failed calls.
    assert np.all(np.isfinite(rbm.W))
    # Hostile files: truncated, corrupted, foreign.
    rbm.save(tmp_path / "m.safetensors")
    data = (tmp_path / "m.safetensors").read_bytes()
    for i, bad in enumerate([data[: len(data) // 2], data[:8] + b"{" * 40 + data[48:],
                             b"\xff" * 8 + data[8:], b"not a model"]):
        (tmp_path / f"bad{i}").write_bytes(bad)
        with pytest.raises(ValueError):
            boltzmann.RBM.load(tmp_path / f"bad{i}")
    flipped = bytearray(data)
    flipped[-1] ^= 0x40
    (tmp_path / "flipped").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="(?i)checksum|crc"):
        boltzmann.RBM.load(tmp_path / "flipped")
    with pytest.raises(ValueError):
        boltzmann.merge_ais([])


# ---- sharded AIS ------------------------------------------------------------------------------

def test_ais_shards_merge_into_the_one_process_estimate():
    rbm = random_rbm(16, 8, 0.8, 14)
    X = (np.random.default_rng(15).random((100, 16)) < 0.4).astype(np.float32)
    settings = dict(method="ais", runs=230, betas=500, seed=16, data=X)
    whole = rbm.log_partition(**settings)
    blocks = -(-230 // boltzmann.AIS_BLOCK)
    shards = [rbm.log_partition(blocks=(i, i + 1), **settings) for i in reversed(range(blocks))]
    merged = boltzmann.merge_ais(pickle.loads(pickle.dumps(shards)))
    assert merged.log_z == whole.log_z
    assert np.array_equal(merged.log_weights, whole.log_weights)
    with pytest.raises(ValueError):
        boltzmann.merge_ais(shards[1:])


def _shard(model, blocks, settings):
    return model.log_partition(blocks=blocks, **settings)


def test_ais_sharded_over_a_dask_cluster_equals_one_process():
    distributed = pytest.importorskip("dask.distributed")
    rbm = random_rbm(16, 8, 0.8, 17)
    settings = dict(method="ais", runs=200, betas=500, seed=18)
    whole = rbm.log_partition(**settings)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        model = client.scatter(rbm, broadcast=True)
        futures = [client.submit(_shard, model, (i, i + 1), settings, pure=False)
                   for i in range(4)]
        merged = boltzmann.merge_ais(client.gather(futures))
    assert merged.log_z == whole.log_z
    assert np.array_equal(merged.log_weights, whole.log_weights)


def test_the_readme_example_runs(tmp_path, monkeypatch):
    import pathlib

    readme = (pathlib.Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("## Python"):]
    code = section[section.index("```python") + len("```python"):]
    code = code[:code.index("```")]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "rbm.safetensors").exists()


def test_the_module_docstring_example_runs():
    import doctest

    failures, tried = doctest.testmod(boltzmann, verbose=False)
    assert tried > 0 and failures == 0
