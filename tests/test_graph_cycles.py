"""Reference cycles that run through the graph itself (an attribute of a Value holding a Value
computed from it) are freed by Python's cycle collector, on both backends, and collecting them
never frees or changes anything that is still reachable."""

import gc

import micrograd_cpp
import pytest
from helpers import Finalized, cpp_nn, graph, run_isolated, under_sanitizer


def slotted(backend):
    class Slotted(backend):
        __slots__ = ("parent", "witness")

    return Slotted


def parent_as_attribute(backend, witness):
    a = backend(1.0)
    a.parent, a.witness = a * 2.0, witness


def parent_in_a_dict(backend, witness):
    a = backend(1.0)
    a.meta = {"b": a * 2.0, "witness": witness}


def parent_in_a_slot(backend, witness):
    a = slotted(backend)(1.0)
    a.parent, a.witness = a * 2.0, witness


def backward_returning_its_output(backend, witness):
    a = backend(1.0)
    out = a.tanh()
    a._backward = lambda: out
    a.witness = witness


def parent_made_by_dot(backend, witness):  # C++: the sums and products between have no object
    w = [backend(1.0), backend(2.0), backend(3.0)]
    w[0].out, w[0].witness = micrograd_cpp.dot(w, [4.0, 5.0, 6.0], backend(0.5)), witness


CYCLES = [
    parent_as_attribute,
    parent_in_a_dict,
    parent_in_a_slot,
    backward_returning_its_output,
    parent_made_by_dot,
]


@pytest.mark.parametrize("make_cycle", CYCLES)
def test_a_cycle_through_the_graph_is_collected(backend, make_cycle, no_gc):
    freed = []
    make_cycle(backend, Finalized(freed, "cycle"))
    assert freed == []  # the cycle holds it
    gc.collect()
    assert freed == ["cycle"]


def test_a_cycle_through_a_fused_neuron_is_collected(no_gc):
    nn = cpp_nn()
    freed = []

    def make_cycle():
        neuron = nn.Neuron(3)
        out = neuron([1.0, -2.0, 0.5])
        neuron.w[1].out, neuron.w[1].witness = out, Finalized(freed, "neuron")

    make_cycle()
    assert freed == []
    gc.collect()
    assert freed == ["neuron"]


@pytest.mark.parametrize("marked", ["before the forward", "after the forward"])
def test_a_cycle_through_an_mlps_hidden_outputs_is_collected(marked, no_gc):
    """The hidden layers' outputs have no objects (Note [Hidden outputs stay nodes]); they get
    one when a weight below them may reach outside the graph, so that the cycle is collected."""
    nn = cpp_nn()
    freed = []

    def make_cycle():
        model = nn.MLP(2, [3, 3, 1])
        w = model.layers[0].neurons[0].w[0]
        if marked == "before the forward":
            w.box, w.witness = [None], Finalized(freed, "mlp")
        out = model([1.0, -2.0])
        if marked == "before the forward":
            w.box[0] = out
        else:
            w.out, w.witness = out, Finalized(freed, "mlp")

    make_cycle()
    assert freed == []
    gc.collect()
    assert freed == ["mlp"]


def test_a_cycle_through_a_compiled_graph_is_collected_once_the_program_is_gone(no_gc):
    from micrograd_cpp._core import Value

    freed = []

    def make_cycle():
        x = Value(1.0)
        y = (x * 2.0 + 1.0).tanh()
        x.out, x.witness = y, Finalized(freed, "cycle")
        return micrograd_cpp.compile(y)

    program = make_cycle()
    gc.collect()
    assert freed == []  # the program holds the graph
    del program
    gc.collect()
    assert freed == ["cycle"]


def test_what_a_living_value_reaches_through_the_graph_survives_collection(backends):
    def build(Value):  # a cycle through dot's inner nodes, kept alive from outside by `out`
        w = [Value(1.5), Value(-2.0), Value(0.25)]
        out = micrograd_cpp.dot(w, [4.0, 5.0, w[2]], Value(0.5)).tanh() * w[1]
        w[0].out, w[0].tag = out, "w0"
        return out

    graphs = []
    for Value in backends:
        out = build(Value)
        gc.collect()  # w is gone but for the graph: nothing of it may be freed
        out.backward()
        graphs.append(graph(out))
        [w0] = [v for v in every_node(out) if getattr(v, "tag", "") == "w0"]
        assert w0.out is out
    assert graphs[0] == graphs[1]


def every_node(root):
    seen, stack = {}, [root]
    while stack:
        v = stack.pop()
        if id(v) not in seen:
            seen[id(v)] = v
            stack.extend(v._children)
    return list(seen.values())


def test_a_cycles_finalizer_reads_its_graph_whole(backend, no_gc):
    results = []

    class Reader:  # a member of the cycle that backpropagates through it when freed
        def __init__(self, a, out):
            self.a, self.out = a, out

        def __del__(self):
            self.out.backward()
            results.append((self.a.grad, self.out.data, len(self.out._children)))

    def make_cycle():
        a = backend(3.0)
        out = a * a + 1.0
        a.reader = Reader(a, out)

    make_cycle()
    gc.collect()
    assert results == [(6.0, 10.0, 2)]


LEAK = """
    import gc
    from micrograd_cpp.{module} import Value

    class Slotted(Value):
        __slots__ = ("parent",)

    def parent_as_attribute():
        a = Value(1.0)
        a.parent = a * 2.0

    def parent_in_a_dict():
        a = Value(1.0)
        a.meta = {{"b": a * 2.0}}

    def parent_in_a_slot():
        a = Slotted(1.0)
        a.parent = a * 2.0

    def backward_returning_its_output():
        a = Value(1.0)
        out = a.tanh()
        a._backward = lambda: out

    def resident_bytes():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    growth = []
    for make_cycle in (parent_as_attribute, parent_in_a_dict, parent_in_a_slot,
                       backward_returning_its_output):
        for _ in range(5_000):  # warm-up: the collector's and the allocators' own memory
            make_cycle()
        gc.collect()
        before = resident_bytes()
        for _ in range(100_000):  # about 30-65 MiB if no cycle were freed
            make_cycle()
        gc.collect()
        growth.append(resident_bytes() - before)
    print(growth)
"""


@pytest.mark.skipif(under_sanitizer(), reason="the sanitizer's quarantine inflates the size")
@pytest.mark.parametrize("module", ["_core", "pure.engine"])
def test_cycles_through_the_graph_leak_nothing(module):
    """The cycle collector, left to run as it does by default, keeps memory flat."""
    growth = run_isolated(LEAK.format(module=module))
    assert max(growth) < 4 * 2**20, f"resident memory grew by {growth} bytes"


FIRST_CYCLE = """
    import gc
    from micrograd_cpp._core import Value

    class Finalized:
        def __init__(self, freed):
            self.freed = freed

        def __del__(self):
            self.freed.append("cycle")

    gc.disable()
    freed, tracked = [], []
    x = Value(1.0)
    out = x * 2.0
    mid = out + 1.0
    tracked.append(gc.is_tracked(mid))  # no Value has a dict yet: none can be in a cycle
    {make_first_cycle}
    tracked.append(gc.is_tracked(out) and gc.is_tracked(mid))
    del x, out, mid
    gc.collect()
    print([tracked, freed])
"""


@pytest.mark.parametrize(
    "make_first_cycle",
    [
        "x.out, x.witness = mid, Finalized(freed)",
        "x.__dict__.update(out=mid, witness=Finalized(freed))",
        # a subclass's instance refers to its class, whose dict here refers to the graph
        "class Sub(Value): __slots__ = ()\n"
        "    x.__class__ = Sub\n"
        "    Sub.out, Sub.witness = mid, Finalized(freed)\n"
        "    del Sub",
    ],
    ids=["attribute", "__dict__", "__class__"],
)
def test_values_made_before_the_first_cycle_join_it(make_first_cycle):
    """Operators leave Values untracked until one below them refers outside the graph: then the
    Values made over it before are tracked too, so the cycle is collected."""
    tracked, freed = run_isolated(FIRST_CYCLE.format(make_first_cycle=make_first_cycle))
    assert tracked == [False, True]
    assert freed == ["cycle"]


COLLECTOR_EVERYWHERE = """
    import gc
    from micrograd_cpp.{module} import Value

    class FirstDict:  # garbage whose finalizer gives a Value its first dict, mid-collection
        def __init__(self, value):
            self.value, self.me = value, self

        def __del__(self):
            self.value.tag = "set by a finalizer"

    gc.set_threshold(1)
    a, b = Value(0.5), Value(-0.25)
    y = a
    for i in range(3000):
        y = (y * a + b) * 0.5 + 0.125
        if i == 1000:
            FirstDict(y)
        if i % 500 == 0:
            y.out = y * 2.0  # a cycle through the graph, left for the collector
    y.backward()
    gc.collect()
    print([y.data, a.grad, b.grad])
"""


def test_the_collector_running_all_along_changes_no_result():
    """The collector runs at every allocation, Values join it mid-run, and cycles are freed
    while the graph grows: the results are the oracle's, bit for bit."""
    cpp = run_isolated(COLLECTOR_EVERYWHERE.format(module="_core"))
    pure = run_isolated(COLLECTOR_EVERYWHERE.format(module="pure.engine"))
    assert cpp == pure


TRACKED = """
    import gc
    from micrograd_cpp._core import Value

    class Sub(Value):
        pass

    def made_over(leaf):
        return (leaf * 2.0 + 1.0).tanh()

    a = Value(1.0, label="a")  # a label is a str: it refers to nothing that could lead back
    a.label, a.note, a.count = "a2", None, 3
    plain = made_over(a)
    plain.label = "out"
    tracked = {{"labelled": gc.is_tracked(plain)}}
    {step}
    print(tracked)
"""


@pytest.mark.parametrize(
    "step, expected",
    [
        ("", {"labelled": False}),
        (  # a Value of a subclass: the graph made over it is tracked, other graphs are not
            "s = Sub(2.0)\n"
            "    tracked['over a subclass'] = gc.is_tracked(made_over(s))\n"
            "    tracked['elsewhere'] = gc.is_tracked(made_over(Value(3.0)))",
            {"labelled": False, "over a subclass": True, "elsewhere": False},
        ),
        (  # a custom _backward on a Value that already has a graph made over it
            "x = Value(2.0)\n"
            "    before = made_over(x)\n"
            "    x._backward = lambda: None\n"
            "    tracked['made before'] = gc.is_tracked(before)\n"
            "    tracked['made after'] = gc.is_tracked(made_over(x))\n"
            "    tracked['elsewhere'] = gc.is_tracked(plain)",
            {"labelled": False, "made before": True, "made after": True, "elsewhere": False},
        ),
        (  # re-initialised over a subclass's Value: what was made over it joins
            "x = Value(2.0)\n"
            "    before = made_over(x)\n"
            "    Value.__init__(x, 0.5, (Sub(1.0),))\n"
            "    tracked['made before'] = gc.is_tracked(before)",
            {"labelled": False, "made before": True},
        ),
        (  # a list is not atomic, even an empty one
            "plain.history = []\n    tracked['given a list'] = gc.is_tracked(plain)",
            {"labelled": False, "given a list": True},
        ),
    ],
    ids=["labels", "subclass", "custom backward", "re-initialised", "list attribute"],
)
def test_only_values_that_can_be_in_a_cycle_are_tracked(step, expected):
    """The collector scans just the Values on which a cycle can run: those that refer outside
    the graph and those made over them."""
    assert run_isolated(TRACKED.format(step=step)) == expected


EVERY_VALUE = """
    import gc
    from micrograd_cpp._core import Value

    gc.disable()
    big = Value(1.0)
    for _ in range(200_000):
        big = big * 1.0001 + 0.5
    steps = 0
    while not gc.is_tracked(Value(1.0) * 2.0):  # each step walks every live node
        x = Value(1.0)
        x.out = x * 2.0
        steps += 1
        assert steps < 100
    print([steps > 1, gc.is_tracked(big)])
"""


def test_a_loop_of_new_cycles_over_a_big_graph_tracks_every_value():
    """Finding the Values made over one that refers outside walks every live node. Repeated
    often over a big graph, that would cost more than tracking everything: then every Value
    is tracked, including those that were never marked."""
    assert run_isolated(EVERY_VALUE) == [True, True]
