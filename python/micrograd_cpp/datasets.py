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
