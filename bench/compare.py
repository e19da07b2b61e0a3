"""Run every workload on every installed backend and print one table of medians, with ratios
against micrograd, measured side by side in one run: python bench/compare.py [--quick].

Backends take turns within each repeat, so a slow patch of a shared machine hits them all; each
cell is the median over its repeats (for W2, over every step timed). Every measured result is
checked as the pytest benchmarks check it. The README's performance table is this output.
"""

import argparse
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib import metadata

import harness
import tape
import w1_expr
import w2_moons
import w3_deep
import w4_memory
import w5_digits
import w6_dropped

COLUMNS = (
    ("cpp", "micrograd-cpp"),
    ("pure", "micrograd-cpp pure"),
    ("micrograd", "micrograd"),
    ("micrograd-nogc", "micrograd, gc off"),
    ("torch", "torch scalar"),
    ("batched", "torch batched"),
    ("tape", "C++ tape anchor"),
)
BASELINE = "micrograd"
CELL_BUDGET = 8.0  # seconds a cell may take: slower cells run fewer repeats


def machine():
    """Lines describing when and where this runs."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = []
    for dist in ("micrograd-cpp", "micrograd", "torch", "numpy"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{dist} not installed")
    return [
        f"date: {time.strftime('%a %b %d %H:%M:%S %Z %Y')}",
        f"machine: {cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}",
        f"python: {platform.python_implementation()} {platform.python_version()}",
        "packages: " + ", ".join(versions),
    ]


class Table:
    """Timings (or bytes) per row and column; notes explain empty cells."""

    def __init__(self):
        self.rows, self.cells, self.notes = [], {}, []
        self.baseline_rows = {}  # row -> the row whose micrograd cell its ratios are against

    def add(self, row, column, value):
        if row not in self.rows:
            self.rows.append(row)
        self.cells.setdefault((row, column), []).append(value)

    def skip(self, row, column, reason):
        if row not in self.rows:
            self.rows.append(row)
        self.cells[(row, column)] = reason
        if reason not in self.notes:
            self.notes.append(reason)

    def text(self, row, column, text):
        """A cell shown as it is, without a ratio."""
        if row not in self.rows:
            self.rows.append(row)
        self.cells[(row, column)] = ("text", text)

    def median(self, row, column):
        values = self.cells.get((row, column))
        return statistics.median(values) if isinstance(values, list) else None

    def render(self):
        header = ["workload", *(title for _, title in COLUMNS)]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in self.rows:
            base = self.median(self.baseline_rows.get(row, row), BASELINE)
            cells = [row]
            for column, _ in COLUMNS:
                value = self.median(row, column)
                cell = self.cells.get((row, column))
                if isinstance(cell, tuple):  # text as it was measured: Table.text
                    cells.append(cell[1])
                elif value is None:
                    cells.append(f"skipped [{self.notes.index(cell) + 1}]" if cell else "")
                elif base is None or column == BASELINE:
                    cells.append(number(value))
                else:
                    cells.append(f"{number(value)} ({ratio(base / value)})")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def number(x):
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def ratio(x):
    return f"{x:,.0f}x" if x >= 10 else f"{x:.1f}x"


def loaded_backends():
    backends, missing = {}, []
    for name in harness.BACKENDS:
        try:
            backends[name] = harness.load(name)
        except ImportError as error:
            missing.append(f"{name}: not installed ({error})")
    return backends, missing


def repeats_for(seconds, repeats):
    return max(1, min(repeats, int(CELL_BUDGET / max(seconds, 1e-9))))


def run_passes(table, label, passes, repeats, unit):
    """Forward and backward of each backend's Pass, the backends taking turns each repeat."""
    counts = {name: repeats_for(2 * p.seconds(), repeats) for name, p in passes.items()}
    forward, backward = f"{label}: forward (ns/{unit})", f"{label}: backward (ns/{unit})"
    for r in range(repeats):
        for name, p in passes.items():
            if r >= counts[name]:
                continue
            with p.be.running():
                inputs = p.setup()
                t0 = time.perf_counter_ns()
                graph = p.forward(*inputs)
                t1 = time.perf_counter_ns()
                p.backward(graph)
                t2 = time.perf_counter_ns()
                p.verify(*p.result(graph))
                del inputs, graph
            table.add(forward, name, (t1 - t0) / p.count)
            table.add(backward, name, (t2 - t1) / p.count)


def run_steps(table, steps, backends, quick, repeats):
    """Training steps of W2 or W5, {(row, column): Steps}: a few steps of each in turn each
    repeat (slow ones in fewer repeats), every step timed, then each run's results checked."""
    history = {key: [] for key in steps}
    for r in range(repeats):
        for (row, column), s in steps.items():
            if r >= repeats_for(s.seconds(), repeats):
                continue
            be = backends[s.name]
            with be.running():
                for _ in range(max(1, min(3 if quick else 10, int(0.05 / s.seconds())))):
                    if not be.gc:
                        gc.collect()  # the previous step's graph
                    t0 = time.perf_counter_ns()
                    result = s.step()
                    t1 = time.perf_counter_ns()
                    history[(row, column)].append(result)
                    table.add(row, column, (t1 - t0) / 1e6)
    for key, s in steps.items():
        s.verify(history[key])


def w1(table, backends, quick, repeats):
    n = w1_expr.W1_QUICK_OPS if quick else w1_expr.W1_OPS
    label = f"W1 expr, {n:,} ops"
    run_passes(
        table, label, {k: w1_expr.w1_pass(be, n) for k, be in backends.items()}, repeats, "op"
    )
    replays = {k: w1_expr.Replay(be, n) for k, be in backends.items() if k in harness.EXACT}
    row = f"{label}: compiled replay, forward+backward (ns/node)"
    for r in range(repeats):
        for name, replay in replays.items():
            if r >= repeats_for(replay.seconds(), repeats):
                continue
            with replay.be.running():
                (prog,) = replay.setup()
                t0 = time.perf_counter_ns()
                replay.run(prog)
                t1 = time.perf_counter_ns()
                replay.verify(*replay.result())
            table.add(row, name, (t1 - t0) / replay.count)
    with tempfile.TemporaryDirectory() as tmpdir:
        try:
            anchor = w1_expr.W1TapeAnchor(tape.build_tape_anchor(tmpdir), n)
        except ImportError as error:
            for phase in ("forward", "backward"):
                table.skip(f"{label}: {phase} (ns/op)", "tape", str(error))
        else:
            for _ in range(repeats):
                record_ns, backward_ns = anchor.measure(3 if quick else 10)
                table.add(f"{label}: forward (ns/op)", "tape", record_ns)
                table.add(f"{label}: backward (ns/op)", "tape", backward_ns)
    program = w1_expr.w1_program(n)
    floats_ns = statistics.median(w1_expr.w1_forward_on_floats(n) for _ in range(repeats))
    return (
        f"W1: {n:,} ops over {w1_expr.N_LEAVES} leaves make {program.nodes():,} nodes; the "
        "tape anchor's forward records them (bench/tape_anchor.cpp record); the same forward "
        f"on plain Python floats (relu a Python function) takes {floats_ns:.1f} ns/op"
    )


def w2(table, backends, quick, repeats):
    """One row per variant; the torch batched step shares the notebook's row."""
    notebook, optim = "W2 moons step, notebook code (ms/step)", "W2 moons step, optim.SGD (ms/step)"
    compiled = "W2 moons step, compiled replay (ms/step)"
    table.baseline_rows[optim] = table.baseline_rows[compiled] = notebook
    runs = [(notebook, "notebook", b, b) for b in backends]
    if "torch" in backends:
        runs.append((notebook, "batched", "torch", "batched"))
    runs += [(optim, "optim", b, b) for b in ("cpp", "pure") if b in backends]
    runs += [(compiled, "compiled", b, b) for b in ("cpp", "pure") if b in backends]
    steps = {(row, column): w2_moons.Steps(variant, b) for row, variant, b, column in runs}
    run_steps(table, steps, backends, quick, repeats)
    replay = "W2 graph, replay forward+backward (ms)"
    with tempfile.TemporaryDirectory() as tmpdir:
        try:
            anchor = w2_moons.TapeAnchor(tape.build_tape_anchor(tmpdir))
        except ImportError as error:
            table.skip(replay, "tape", str(error))
            table.skip(notebook, "tape", str(error))
        else:
            for _ in range(repeats):
                anchor_ms, replay_ms = anchor.measure(3 if quick else 20)
                table.add(replay, "tape", anchor_ms)
                table.add(replay, "cpp", replay_ms)
                table.add(notebook, "tape", anchor.record(3 if quick else 20))
    return (
        f"W2: {w2_moons.w2_nodes():,} nodes a step; optim.SGD: the step with micrograd-cpp's "
        "losses.svm_loss and optim.SGD; compiled replay: the notebook's graph built once and "
        "replayed (micrograd_cpp.compile) with optim.SGD; replay forward+backward: that graph's "
        "prog.forward() and prog.backward() alone, against the same graph on "
        "bench/tape_anchor.cpp; the tape anchor's notebook cell: that graph recorded afresh "
        "and backpropagated each step (bench/tape_anchor.cpp record; no optimizer step)"
    )


def w3(table, backends, quick, repeats):
    depths = (10**3, 10**4, 10**6) if quick else w3_deep.W3_DEPTHS
    for n in depths:
        label = f"W3 chain, {n:.0e}".replace("+0", "")
        passes = {}
        for name, be in backends.items():
            reason = w3_deep.w3_skip_reason(name, n)
            if quick and n > 10**4 and name != "cpp" and not reason:
                reason = "--quick: 1e6 deep on cpp only"
            if reason:
                for phase in ("forward", "backward"):
                    table.skip(f"{label}: {phase} (ns/node)", name, reason)
            else:
                passes[name] = w3_deep.w3_pass(be, n)
        run_passes(table, label, passes, repeats, "node")
    return "W3: 4n + 1 nodes at depth n"


def w4(table, backends, quick, repeats):
    n = 100_000 if quick else w4_memory.W4_OPS
    row = f"W4 memory, W1 at {n:,} ops (bytes/node)"
    for name in w4_memory.W4_BACKENDS:
        if name not in backends:
            continue
        if not os.path.exists("/proc/self/statm"):
            table.skip(row, name, "W4 reads /proc/self/statm (Linux)")
            continue
        table.add(row, name, w4_memory.w4_check(w4_memory.w4_run(name, n)))
    return (
        "W4: resident memory (from /proc/self/statm) over the nodes of micrograd's graph of the "
        "program, in a fresh interpreter per backend"
    )


def w5(table, backends, quick, repeats):
    batch = 4 if quick else w5_digits.W5_BATCH
    verbatim = f"W5 digits step, batch of {batch}, code as written (ms/step)"
    compiled = f"W5 digits step, batch of {batch}, compiled replay (ms/step)"
    table.baseline_rows[compiled] = verbatim
    try:
        w5_digits.data()
    except ImportError as error:
        table.skip(verbatim, "cpp", f"W5: {error}")
        return "W5: skipped"
    runs = [(verbatim, "verbatim", b, b) for b in backends if b != "torch"]
    if "torch" in backends:
        runs.append((verbatim, "batched", "torch", "batched"))
    runs += [(compiled, "compiled", b, b) for b in ("cpp", "pure") if b in backends]
    steps = {(row, column): w5_digits.Steps(v, b, batch) for row, v, b, column in runs}
    run_steps(table, steps, backends, quick, repeats)
    cost = f"W5 digits, batch of {batch}: compile() of the compiled step's graph (ms)"
    for name in ("cpp", "pure"):
        if name in backends:
            rebuild_ms, compile_ms = w5_digits.compile_cost(name, batch, 2 if quick else repeats)
            table.text(cost, name, f"{compile_ms:.1f} = {compile_ms / rebuild_ms:.2f} rebuilds")
    return (
        f"W5: {w5_digits.nodes(batch):,} nodes a step (MLP(64, [32, 10]), EurekaLabs' "
        "cross-entropy); compiled replay: micrograd_cpp.digits' batch graph "
        "(losses.cross_entropy_graph) built once and replayed with optim.SGD; torch batched: "
        "the same weights as float64 nn.Linear layers, F.cross_entropy, one thread; compile(): "
        "its time, and over a rebuild of that graph, making it and dropping it (medians)"
    )


def w6(table, backends, quick, repeats):
    sizes = (1_000_000,) if quick else w6_dropped.W6_SIZES
    for n in sizes:
        for shape in w6_dropped.W6_SHAPES:
            row = f"W6 {shape}, {n:.0e} nodes: MiB at start / peak / after the drop"
            for name in w6_dropped.W6_BACKENDS:
                if name not in backends:
                    continue
                if n > w6_dropped.W6_LARGEST[name]:
                    table.skip(
                        row,
                        name,
                        f"W6: {name} is run up to {w6_dropped.W6_LARGEST[name]:,}"
                        " nodes here (time, memory)",
                    )
                    continue
                start, grown, kept = w6_dropped.w6_check(w6_dropped.w6_run(name, shape, n))
                table.text(row, name, f"{start:.0f} / +{grown:.0f} / +{kept:.1f}")
    return (
        "W6: resident memory of a fresh interpreter before the graph, its peak while the graph "
        "is built and backpropagated, and after it is dropped (the collector run), over the "
        "start: chain is W3's (4 nodes a step), wide is sum() of n/2 leaves, mlp is W2's graph "
        "built n/65,818 times and summed"
    )


WORKLOADS = {"w1": w1, "w2": w2, "w3": w3, "w4": w4, "w5": w5, "w6": w6}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 3 repeats")
    parser.add_argument("--repeats", type=int, help="repeats per cell (default 5, 3 with --quick)")
    parser.add_argument(
        "--only", default=",".join(WORKLOADS), help="comma-separated workloads (default: all)"
    )
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 5)

    print("\n".join(machine()), flush=True)
    backends, missing = loaded_backends()
    table, notes = Table(), []
    for workload in (WORKLOADS[name] for name in args.only.split(",")):
        start = time.perf_counter()
        notes.append(workload(table, backends, args.quick, repeats))
        seconds = time.perf_counter() - start
        print(f"{workload.__name__} done in {seconds:.0f} s", file=sys.stderr, flush=True)
        gc.collect()

    print()
    print(table.render())
    print()
    print(f"Medians over up to {repeats} repeats (W2: of every step timed), backends taking turns.")
    print(
        "(Nx) = micrograd's median / this one: how many times faster (smaller for W4); "
        "W2's optim.SGD and compiled rows against micrograd running the notebook, W5's compiled "
        "row against micrograd running the code as written. "
        "torch runs one thread."
    )
    for note in notes:
        print(note)
    for i, reason in enumerate(table.notes, 1):
        print(f"[{i}] {reason}")
    for line in missing:
        print(line)


if __name__ == "__main__":
    main()
