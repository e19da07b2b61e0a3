"""W3: a deep chain, y = y*1.0001 + 0.0001 repeated n times."""

from functools import lru_cache

from harness import UPSTREAM, Pass

W3_DEPTHS = (10**3, 10**4, 10**5, 10**6)


def w3_skip_reason(backend, n):
    """Why backend does not run W3 at depth n, or None."""
    if backend in UPSTREAM and n > 10**5:
        return (
            "micrograd's recursive topological sort would recurse 2e6 levels deep, "
            "and its 4e6 nodes take ~3 GB"
        )
    if backend == "torch" and n > 10**5:
        return "torch: 2e6 one-element tensor ops take ~20 s a round"
    return None


def w3_forward(Value, n):
    """x = 0.5 and y = x*1.0001 + 0.0001 applied n times: (y, [x])."""
    x = Value(0.5)
    y = x
    for _ in range(n):
        y = y * 1.0001 + 0.0001
    return y, [x]


@lru_cache(maxsize=8)
def w3_expected(n):
    """(y, dy/dx), computed in floats as the engines compute them."""
    data, grad = 0.5, 1.0
    for _ in range(n):
        data = data * 1.0001 + 0.0001
        grad = 1.0001 * grad
    return data, grad


def w3_pass(be, n):
    """W3 at depth n; its graph has 4n + 1 nodes (x; per step two constants and two ops), the
    count timings are divided by."""
    return Pass(
        be,
        4 * n + 1,
        setup=lambda: (be.Value, n),
        forward=w3_forward,
        want_data=lambda: w3_expected(n)[0],
        want_grads=lambda: [w3_expected(n)[1]],
    )
