"""The demo (python -m micrograd_cpp) replays micrograd's demo.ipynb, exactly, on both backends."""

import gc
import math
import os
import random
import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest
from helpers import cpp_nn

with warnings.catch_warnings():  # without the extension the package warns; the oracle still runs
    warnings.simplefilter("ignore", RuntimeWarning)
    from micrograd_cpp import demo, losses
    from micrograd_cpp.datasets import make_moons
    from micrograd_cpp.pure import nn as pure_nn
    from micrograd_cpp.pure.engine import Value as PureValue

STEPS = 20
# demo.ipynb's output: `step k loss ..., accuracy ...%` for k = 0..19, and k = 99
NOTEBOOK_LOSSES = [
    0.8958441028683222, 1.7235905336972022, 0.7429006313851131, 0.7705641260584198,
    0.3692793385976538, 0.313545481918522, 0.2814234349772435, 0.26888733313983904,
    0.2567147286057417, 0.2704862551637922, 0.24507023853658053, 0.2509905529791503,
    0.21560951851922952, 0.23090378446402726, 0.20152151227899445, 0.22574506279282217,
    0.19447987596204114, 0.21089496199246363, 0.159830773563036, 0.1845374874688392,
]  # fmt: skip
NOTEBOOK_ACCURACIES = [
    50,
    81,
    77,
    82,
    84,
    86,
    89,
    91,
    91,
    91,
    91,
    92,
    91,
    93,
    92,
    93,
    92,
    93,
    94,
    93,
]
NOTEBOOK_LAST_LOSS = 0.010978370135492717


def notebook(MLP, Value, steps=STEPS):
    """demo.ipynb's cells, verbatim but for the classes passed in: (history, final parameters)."""
    np.random.seed(1337)
    random.seed(1337)
    X, y = make_moons(n_samples=100, noise=0.1, seed=None)  # numpy's global state, as sklearn
    # Python floats: the same doubles, but upstream's Values would compute in slow numpy scalars
    X, y = X.tolist(), y.tolist()
    model = MLP(2, [16, 16, 1])

    def loss(batch_size=None):
        Xb, yb = X, y
        inputs = [list(map(Value, xrow)) for xrow in Xb]
        scores = list(map(model, inputs))
        losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(yb, scores, strict=True)]
        data_loss = sum(losses) * (1.0 / len(losses))
        alpha = 1e-4
        reg_loss = alpha * sum(p * p for p in model.parameters())
        total_loss = data_loss + reg_loss
        accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(yb, scores, strict=True)]
        return total_loss, sum(accuracy) / len(accuracy)

    history = []
    gc.disable()  # upstream's nodes are reference cycles: free them once a step, not rescan them
    try:
        for k in range(steps):
            total_loss, acc = loss()
            model.zero_grad()
            total_loss.backward()
            learning_rate = 1.0 - 0.9 * k / 100
            for p in model.parameters():
                p.data -= learning_rate * p.grad
            history.append((total_loss.data, acc))
            del total_loss
            gc.collect()
    finally:
        gc.enable()
    return history, [p.data for p in model.parameters()]


@pytest.fixture(scope="module")
def oracle_run():
    """The notebook on the pure-Python oracle."""
    return notebook(pure_nn.MLP, PureValue)


@pytest.fixture(scope="module")
def upstream_run():
    """The notebook on upstream micrograd, when installed."""
    upstream = pytest.importorskip("micrograd.nn")
    return notebook(upstream.MLP, upstream.Value)


@pytest.fixture(scope="module", params=["cpp", "pure"])
def demo_run(request):
    """demo.run for 20 steps: (history, final parameters)."""
    if request.param == "cpp":
        cpp_nn()
    model, _, _, history, _ = demo.run(STEPS, backend=request.param)
    return history, [p.data for p in model.parameters()]


def test_twenty_steps_equal_the_oracles_exactly(demo_run, oracle_run):
    assert demo_run == oracle_run


def test_twenty_steps_match_upstream_micrograd(demo_run, upstream_run):
    history, params = upstream_run
    assert len(demo_run[0]) == len(history) and len(demo_run[1]) == len(params)
    for (loss, acc), (ref_loss, ref_acc) in zip(demo_run[0], history, strict=True):
        assert math.isclose(loss, ref_loss, rel_tol=1e-9) and acc == ref_acc
    assert all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(demo_run[1], params, strict=True))


def test_twenty_steps_reproduce_the_notebooks_output(demo_run):
    losses_, accuracies = zip(*demo_run[0], strict=True)
    assert all(
        math.isclose(a, b, rel_tol=1e-9) for a, b in zip(losses_, NOTEBOOK_LOSSES, strict=True)
    )
    assert [round(a * 100) for a in accuracies] == NOTEBOOK_ACCURACIES


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_hundred_steps_reach_full_training_accuracy(optimizer):
    """The demo's promise, on the C++ backend (the oracle needs about a minute for it)."""
    cpp_nn()
    model, X, y, history, _ = demo.run(100, backend="cpp", optimizer=optimizer)
    assert history[-1][1] == 1.0 and losses.svm_loss(model, X, y)[1] == 1.0
    if optimizer == "sgd":
        assert math.isclose(history[-1][0], NOTEBOOK_LAST_LOSS, rel_tol=1e-9)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_compiled_training_equals_rebuilding_exactly(optimizer):
    """The loss graph built once and replayed each step: the very same steps as rebuilding it."""
    cpp_nn()
    rebuilt = demo.run(10, backend="cpp", optimizer=optimizer)
    compiled = demo.run(10, backend="cpp", optimizer=optimizer, compiled=True)
    assert compiled[3] == rebuilt[3]
    assert [p.data for p in compiled[0].parameters()] == [p.data for p in rebuilt[0].parameters()]


def test_compiled_training_is_the_notebooks(oracle_run):
    cpp_nn()
    model, _, _, history, _ = demo.run(STEPS, backend="cpp", compiled=True)
    assert (history, [p.data for p in model.parameters()]) == oracle_run


def test_compiled_training_on_the_oracle(oracle_run):
    """The pure backend's Program, on the notebook's first steps."""
    history = demo.run(3, backend="pure", compiled=True)[3]
    assert history == oracle_run[0][:3]


def test_learning_rate_schedule():
    assert [demo.learning_rate(k, 20) for k in (0, 10)] == [1.0, 1.0 - 0.9 * 10 / 100]
    assert demo.learning_rate(99, 100) == 1.0 - 0.9 * 99 / 100
    assert demo.learning_rate(299, 300) == 1.0 - 0.9 * 299 / 300 > 0  # stretched, stays positive


def test_a_shorter_run_replays_a_longer_ones_first_steps():
    """With the longer run's horizon, as the demo times the pure backend."""
    cpp_nn()
    longer = demo.run(4, backend="cpp", horizon=300)[3]
    assert demo.run(3, backend="cpp", horizon=300)[3] == longer[:3]
    assert demo.run(3, backend="cpp")[3][2] != longer[2]  # another schedule from step 1 on


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="optimizer"):
        demo.train(pure_nn.MLP(2, [1]), [[0.0, 0.0]], [1], 1, optimizer="adam")


def cli(tmp_path, *args):
    return subprocess.run(
        [sys.executable, "-m", "micrograd_cpp", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_cli_pure(tmp_path):
    result = cli(tmp_path, "--steps", "2", "--backend", "pure")
    assert result.returncode == 0, result.stderr
    assert "final accuracy" in result.stdout and "pure: " in result.stdout
    assert "speed-up" not in result.stdout


def test_cli_cpp_times_the_pure_backend(tmp_path):
    cpp_nn()
    result = cli(tmp_path, "--steps", "3", "--seed", "1337", "--backend", "cpp")
    assert result.returncode == 0, result.stderr
    assert "C++ speed-up" in result.stdout and "identical" in result.stdout
    assert "compiled" not in result.stdout


def final_accuracy(stdout):
    return next(line for line in stdout.splitlines() if line.startswith("final accuracy"))


def test_cli_compiled(tmp_path):
    """--compiled times the replay against rebuilding the graph (and the pure backend), and
    trains exactly as the default loop does."""
    cpp_nn()
    result = cli(tmp_path, "--compiled", "--steps", "3")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "cpp compiled: " in out and "ms/step" in out
    assert "x faster than rebuilding the graph each step" in out
    assert "compiled C++ speed-up" in out
    assert out.count("losses identical") == 2 and "DIFFERENT" not in out
    plain = cli(tmp_path, "--steps", "3")
    assert plain.returncode == 0, plain.stderr
    assert final_accuracy(out) == final_accuracy(plain.stdout)


def test_cli_compiled_pure(tmp_path):
    result = cli(tmp_path, "--compiled", "--steps", "2", "--backend", "pure")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "pure compiled: " in out and "x faster than rebuilding the graph each step" in out
    assert "losses identical" in out and "speed-up" not in out


def test_cli_adamw(tmp_path):
    result = cli(tmp_path, "--steps", "2", "--optimizer", "adamw", "--seed", "3")
    assert result.returncode == 0, result.stderr


def test_cli_plot(tmp_path):
    pytest.importorskip("matplotlib")
    result = cli(tmp_path, "--steps", "1", "--backend", "pure", "--plot", "moons.png")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "moons.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "decision boundary saved to moons.png\n" in result.stdout


def test_cli_plot_without_a_suffix_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    result = cli(tmp_path, "--steps", "1", "--backend", "pure", "--plot", "moons")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "moons.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "moons").exists()
    assert "decision boundary saved to moons.png\n" in result.stdout


@pytest.mark.parametrize("name", ["neuron.svg", "neuron"])
def test_cli_dot(tmp_path, name):
    """Without a suffix the graph is an SVG; the message names the file written."""
    pytest.importorskip("graphviz")
    result = cli(tmp_path, "--steps", "1", "--backend", "pure", "--dot", name)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) in (["neuron.svg"], ["neuron.dot"])
    if (tmp_path / "neuron.svg").exists():  # Graphviz's dot program is installed
        assert "<svg" in (tmp_path / "neuron.svg").read_text()
        assert "neuron graph saved to neuron.svg\n" in result.stdout
    else:
        assert "its DOT source is in neuron.dot\n" in result.stdout
        assert (tmp_path / "neuron.dot").read_text().startswith("digraph")


def test_cli_dot_source(tmp_path):
    pytest.importorskip("graphviz")
    result = cli(tmp_path, "--steps", "1", "--backend", "pure", "--dot", "neuron.dot")
    assert result.returncode == 0, result.stderr
    assert "neuron graph saved to neuron.dot\n" in result.stdout
    assert (tmp_path / "neuron.dot").read_text().startswith("digraph")


@pytest.mark.parametrize(
    ("flag", "path", "error"),
    [
        ("--plot", "no/such/dir/moons.png", "no/such/dir is not an existing directory"),
        ("--plot", "a_file/moons.png", "a_file is not an existing directory"),
        ("--plot", "moons.xyz", "unknown format 'xyz' (known: "),
        ("--plot", "a_dir", "a_dir.png is a directory"),
        ("--plot", "a_dir/", "'a_dir/' names no file"),
        ("--plot", "", "'' names no file"),
        ("--dot", "no/such/dir/neuron.svg", "no/such/dir is not an existing directory"),
        ("--dot", "n.xyz", "unknown format 'xyz' (known: "),
    ],
)
def test_bad_output_files_stop_the_demo_before_it_trains(
    tmp_path, monkeypatch, capsys, flag, path, error
):
    pytest.importorskip({"--plot": "matplotlib", "--dot": "graphviz"}[flag])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("")
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "a_dir.png").mkdir()
    monkeypatch.setattr(demo, "run", None)  # training would fail with a TypeError
    with pytest.raises(SystemExit) as excinfo:
        demo.main(["--backend", "pure", flag, path])
    assert excinfo.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    last = err.splitlines()[-1]
    assert last.startswith(f"python -m micrograd_cpp: error: {flag}: ") and error in last


@pytest.mark.parametrize("value", ["-1", str(2**32), "1.5", "x"])
def test_cli_rejects_a_seed_numpy_cannot_take(capsys, value):
    with pytest.raises(SystemExit) as excinfo:
        demo.main(["--backend", "pure", "--seed", value])
    assert excinfo.value.code == 2
    assert "error: argument --seed: " in capsys.readouterr().err


def test_cli_takes_every_seed_numpy_takes():
    assert demo.seed("0") == 0 and demo.seed(str(2**32 - 1)) == 2**32 - 1
    assert demo.run(1, seed=2**32 - 1, backend="pure")[3][0][0] > 0


def test_final_line_says_when_its_accuracy_was_measured(monkeypatch, capsys):
    """After the last update; the last step's loss and accuracy were measured before it."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    assert demo.main(["--steps", "2", "--backend", "pure"]) == 0
    assert final_accuracy(capsys.readouterr().out) == (
        f"final accuracy {NOTEBOOK_ACCURACIES[2]:.1f}% after the last update (before it, step 1: "
        f"loss {NOTEBOOK_LOSSES[1]:.6g}, accuracy {NOTEBOOK_ACCURACIES[1]:.1f}%)"
    )


def test_progress_while_timing_the_pure_backend(monkeypatch, capsys):
    cpp_nn()
    monkeypatch.setitem(sys.modules, "tqdm", None)
    assert demo.main(["--steps", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    timing = [i for i, line in enumerate(out) if line.startswith("timing pure Python: ")]
    assert [out[i] for i in timing] == [f"timing pure Python: step {k} of 3" for k in (1, 2, 3)]
    assert out[timing[-1] + 1].startswith("pure: ")


def test_progress_bar_while_timing_the_pure_backend(capsys):
    cpp_nn()
    pytest.importorskip("tqdm")
    assert demo.main(["--steps", "2"]) == 0
    err = capsys.readouterr().err
    assert "timing pure Python: 100%" in err and "2/2" in err


def test_interrupt_stops_with_one_line(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setattr(demo, "run", interrupted)
    assert demo.main(["--backend", "pure"]) == 130
    assert capsys.readouterr() == ("", "interrupted\n")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT is POSIX's")
def test_ctrl_c_during_training(tmp_path):
    """A real SIGINT, once the first step is printed: one line, exit code 130."""
    code = (
        "import signal, sys\n"
        # as in a terminal, even where this test runs with SIGINT ignored (a background job)
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "sys.modules['tqdm'] = None\n"
        "from micrograd_cpp.demo import main\n"
        "sys.exit(main(['--backend', 'pure', '--steps', '1000']))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore::RuntimeWarning"},
    )
    try:
        assert process.stdout.readline().startswith("step 0 loss ")
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130
    assert err == "interrupted\n"


@pytest.mark.parametrize("args", [["--steps", "0"], ["--backend", "gpu"], ["--optimizer", "x"]])
def test_cli_rejects_bad_flags(tmp_path, args):
    assert cli(tmp_path, *args).returncode == 2


@pytest.mark.parametrize("compiled", [[], ["--compiled"]], ids=["rebuilt", "compiled"])
def test_progress_without_tqdm(monkeypatch, capsys, compiled):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    assert demo.main(["--steps", "2", "--backend", "pure", *compiled]) == 0
    out = capsys.readouterr().out
    assert f"step 0 loss {NOTEBOOK_LOSSES[0]}, accuracy 50.0%" in out and "step 1 loss" in out


@pytest.mark.parametrize(
    ("module", "flag", "extra"),
    [("matplotlib", "--plot", "plot"), ("graphviz", "--dot", "viz")],
)
def test_missing_optional_packages(monkeypatch, capsys, module, flag, extra):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(SystemExit) as excinfo:
        demo.main(["--steps", "1", "--backend", "pure", flag, "out.file"])
    assert excinfo.value.code == 2
    assert f"pip install 'micrograd-cpp[{extra}]'" in capsys.readouterr().err
