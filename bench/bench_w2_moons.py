"""W2: one training step of micrograd's demo.ipynb (100 moons, MLP(2, [16, 16, 1]), SVM loss with
1e-4 L2, zero_grad, backward, SGD): ~65,800 graph nodes a step.

Variants: the notebook's code verbatim (w2_moons.w2_notebook) on each backend ('notebook'); the
step written with micrograd-cpp's losses.svm_loss and optim.SGD ('optim'); the notebook's graph
built once and replayed with micrograd_cpp.compile ('compiled'); and torch as torch
users write it, on a 100x2 tensor with nn.Linear layers ('batched'). Each round is one step of a
continuing run, and the run's losses must be the notebook's.

The tape anchor runs the step's graph (forward and backward only) with bench/tape_anchor.cpp,
the plainest C++ one would write for it. The notebook benchmark records in extra_info the
anchor's step recorded afresh and backpropagated (its floor); the replay benchmark times
micrograd-cpp's replay of the graph and records the anchor's replay of it. Both are measured in
the same run.
"""

import pytest
import w2_moons


@pytest.mark.benchmark(group="W2 moons step: notebook")
def test_w2_notebook(timed, backend, w2_tape_anchor, quick):
    steps = w2_moons.Steps("notebook", backend.name)
    steps.verify(timed.steps(steps, backend))
    if w2_tape_anchor is not None:
        anchor_ms = w2_tape_anchor.record(3 if quick else 50)
        timed.benchmark.extra_info["tape anchor record-and-backward ms"] = anchor_ms


@pytest.mark.benchmark(group="W2 moons step: optim.SGD")
@pytest.mark.parametrize("backend_name", ["cpp", "pure"])
def test_w2_optim(timed, backend):
    steps = w2_moons.Steps("optim", backend.name)
    steps.verify(timed.steps(steps, backend))


@pytest.mark.benchmark(group="W2 moons step: compiled")
@pytest.mark.parametrize("backend_name", ["cpp", "pure"])
def test_w2_compiled(timed, backend):
    steps = w2_moons.Steps("compiled", backend.name)
    steps.verify(timed.steps(steps, backend))


@pytest.mark.benchmark(group="W2 moons step: torch batched")
@pytest.mark.parametrize("backend_name", ["torch"])
def test_w2_torch_batched(timed, backend):
    steps = w2_moons.Steps("batched", backend.name)
    steps.verify(timed.steps(steps, backend))


@pytest.mark.benchmark(group="W2 graph: replay forward+backward")
def test_w2_replay_against_the_tape_anchor(benchmark, w2_tape_anchor, quick):
    anchor = w2_tape_anchor
    if anchor is None:
        pytest.skip("no C++ compiler to build bench/tape_anchor.cpp")
    rounds = 3 if quick else 50
    anchor_ms = anchor.run(rounds)
    root, prog = anchor.replay()

    def replay():
        prog.forward()
        prog.zero_grad()
        prog.backward()

    benchmark.pedantic(replay, rounds=rounds)
    anchor.check(root)
    benchmark.extra_info["tape anchor ms"] = anchor_ms
    benchmark.extra_info["nodes"] = anchor.nodes


def test_w2_graph_size():
    assert 65_000 < w2_moons.w2_nodes() < 66_000
