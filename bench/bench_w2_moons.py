"""W2: one training step of micrograd's demo.ipynb (100 moons, MLP(2, [16, 16, 1]), SVM loss with
1e-4 L2, zero_grad, backward, SGD): ~65,800 graph nodes a step.

Variants: the notebook's code verbatim (workloads.w2_notebook) on each backend ('notebook'); the
step written with micrograd-cpp's losses.svm_loss and optim.SGD ('optim'); the notebook's graph
built once and replayed with micrograd_cpp.compile ('compiled'); and torch as torch
users write it, on a 100x2 tensor with nn.Linear layers ('batched'). Each round is one step of a
continuing run, and the run's losses must be the notebook's.
"""

import pytest
import workloads


@pytest.mark.benchmark(group="W2 moons step: notebook")
def test_w2_notebook(timed, backend):
    steps = workloads.Steps("notebook", backend.name)
    steps.verify(timed.steps(steps, backend))


@pytest.mark.benchmark(group="W2 moons step: optim.SGD")
@pytest.mark.parametrize("backend_name", ["cpp", "pure"])
def test_w2_optim(timed, backend):
    steps = workloads.Steps("optim", backend.name)
    steps.verify(timed.steps(steps, backend))


@pytest.mark.benchmark(group="W2 moons step: compiled")
@pytest.mark.parametrize("backend_name", ["cpp", "pure"])
def test_w2_compiled(timed, backend):
    steps = workloads.Steps("compiled", backend.name)
    steps.verify(timed.steps(steps, backend))


@pytest.mark.benchmark(group="W2 moons step: torch batched")
@pytest.mark.parametrize("backend_name", ["torch"])
def test_w2_torch_batched(timed, backend):
    steps = workloads.Steps("batched", backend.name)
    steps.verify(timed.steps(steps, backend))


def test_w2_graph_size():
    assert 65_000 < workloads.w2_nodes() < 66_000
