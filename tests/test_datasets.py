"""make_moons: scikit-learn's two moons with numpy alone, labels in {-1, 1}."""

import warnings

import numpy as np
import pytest

with warnings.catch_warnings():  # without the extension the package warns; the oracle still runs
    warnings.simplefilter("ignore", RuntimeWarning)
    from micrograd_cpp.datasets import make_moons


@pytest.mark.parametrize("n", [100, 7, 2])
def test_shapes_and_labels(n):
    X, y = make_moons(n)
    assert X.shape == (n, 2) and X.dtype == np.float64 and y.shape == (n,)
    assert set(y.tolist()) <= {-1, 1}
    assert (y == -1).sum() == n // 2 and (y == 1).sum() == n - n // 2


def test_without_noise_the_points_lie_on_the_half_circles():
    X, y = make_moons(50, noise=None, seed=0)
    outer, inner = X[y == -1], X[y == 1]
    assert np.allclose(np.hypot(outer[:, 0], outer[:, 1]), 1) and (outer[:, 1] >= 0).all()
    assert np.allclose(np.hypot(inner[:, 0] - 1, inner[:, 1] - 0.5), 1)
    assert (inner[:, 1] <= 0.5 + 1e-12).all()
    assert np.isclose(sorted(outer[:, 0])[0], -1) and np.isclose(sorted(inner[:, 0])[-1], 2)


def test_noise_is_gaussian_around_the_moons():
    X, _ = make_moons(2000, noise=0.1, seed=3)
    clean, _ = make_moons(2000, noise=None, seed=3)
    residual = X - clean  # the same shuffle: noise is drawn after it
    assert abs(residual.std() - 0.1) < 0.005 and abs(residual.mean()) < 0.01


def test_seeding():
    X1, y1 = make_moons(30, seed=5)
    X2, y2 = make_moons(30, seed=5)
    assert (X1 == X2).all() and (y1 == y2).all()
    assert not (make_moons(30, seed=6)[0] == X1).all()
    np.random.seed(5)  # seed=None draws from numpy's global state, as the notebook does
    X3, y3 = make_moons(30, seed=None)
    assert (X3 == X1).all() and (y3 == y1).all()


def test_same_as_scikit_learn():
    datasets = pytest.importorskip("sklearn.datasets")
    for n, noise, seed in [(100, 0.1, 1337), (31, 0.3, 0), (10, None, 2)]:
        X, y = make_moons(n, noise=noise, seed=seed)
        X_ref, y_ref = datasets.make_moons(n, noise=noise, random_state=seed)
        assert (X == X_ref).all() and (y == y_ref * 2 - 1).all()
