"""Toy datasets, made with numpy alone."""

import numpy as np
from numpy.typing import NDArray


def make_moons(
    n_samples: int = 100, noise: float | None = 0.1, seed: int | None = 1337
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Two interleaving half circles, built as scikit-learn's make_moons builds them.

    Returns X, an (n_samples, 2) float array, and y, an int array of labels in {-1, 1} (the
    demo notebook's `y = y*2 - 1`). With the same seed, X and y equal
    `np.random.seed(seed); X, y = sklearn.datasets.make_moons(n_samples, noise=noise)`, the
    dataset of micrograd's demo.ipynb. seed=None draws from numpy's global random state.
    """
    rng = np.random if seed is None else np.random.RandomState(seed)
    n_out = n_samples // 2
    n_in = n_samples - n_out
    outer = np.linspace(0, np.pi, n_out)
    inner = np.linspace(0, np.pi, n_in)
    X = np.vstack(
        [
            np.append(np.cos(outer), 1 - np.cos(inner)),
            np.append(np.sin(outer), 1 - np.sin(inner) - 0.5),
        ]
    ).T
    y = np.hstack([np.zeros(n_out, dtype=np.intp), np.ones(n_in, dtype=np.intp)])
    order = np.arange(n_samples)
    rng.shuffle(order)
    X, y = X[order], y[order]
    if noise is not None:
        X += rng.normal(scale=noise, size=X.shape)
    return X, y * 2 - 1


def load_digits(
    n_test: int = 360, seed: int = 0
) -> tuple[NDArray[np.float64], NDArray[np.intp], NDArray[np.float64], NDArray[np.intp]]:
    """scikit-learn's 8x8 handwritten digits, which ship inside its package (nothing is
    downloaded): (X_train, y_train, X_test, y_test).

    Each row of X is an image's 64 pixels scaled from 0..16 to [0, 1]; y holds its digit, 0 to
    9. The 1,797 images are shuffled by np.random.RandomState(seed) and the last n_test kept
    for testing: the default leaves 1,437 to train on (an 80/20 split). Needs scikit-learn:
    pip install 'micrograd-cpp[digits]'.
    """
    try:
        from sklearn import datasets
    except ImportError as error:
        raise ImportError(
            "the digits data set ships with scikit-learn, which is not installed: "
            "pip install 'micrograd-cpp[digits]'"
        ) from error
    digits = datasets.load_digits()
    X = np.asarray(digits.data, dtype=np.float64) / 16.0
    y = np.asarray(digits.target, dtype=np.intp)
    if not 0 < n_test < len(y):
        raise ValueError(f"n_test must be between 1 and {len(y) - 1}, not {n_test}")
    order = np.random.RandomState(seed).permutation(len(y))
    train, test = order[:-n_test], order[-n_test:]
    return X[train], y[train], X[test], y[test]
