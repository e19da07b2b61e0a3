"""W5: one training step of an MLP(64, [32, 10]) on scikit-learn's 8x8 digits with softmax
cross-entropy, batches of 32 (see w5_digits). Skipped without scikit-learn. Under
--benchmark-disable (as CI runs them) the batches hold 4 images."""

import pytest
import w5_digits


@pytest.fixture
def batch(quick):
    pytest.importorskip("sklearn", reason="W5 reads the digits that ship with scikit-learn")
    return 4 if quick else w5_digits.W5_BATCH


@pytest.mark.benchmark(group="W5 digits step: verbatim")
def test_w5_verbatim(timed, backend, batch):
    if backend.name == "torch":
        pytest.skip("W5 runs torch batched (test_w5_torch_batched), not on scalar tensors")
    steps = w5_digits.Steps("verbatim", backend.name, batch)
    steps.verify(timed.steps(steps, backend))


@pytest.mark.benchmark(group="W5 digits step: compiled")
@pytest.mark.parametrize("backend_name", ["cpp", "pure"])
def test_w5_compiled(timed, backend, batch):
    steps = w5_digits.Steps("compiled", backend.name, batch)
    steps.verify(timed.steps(steps, backend))


@pytest.mark.benchmark(group="W5 digits step: torch batched")
@pytest.mark.parametrize("backend_name", ["torch"])
def test_w5_torch_batched(timed, backend, batch):
    steps = w5_digits.Steps("batched", backend.name, batch)
    steps.verify(timed.steps(steps, backend))


def test_w5_graph_size():
    pytest.importorskip("sklearn", reason="W5 reads the digits that ship with scikit-learn")
    assert 155_000 < w5_digits.nodes() < 160_000
