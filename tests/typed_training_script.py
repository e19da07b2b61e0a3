"""A training script as a user writes it, from micrograd-cpp's documented API only.

tests/test_typing.py type-checks it with mypy --strict: it must pass without a cast, and each
`reveal_type(...)  # expect: T` must reveal T. It runs, too (on a small dataset).
"""

import micrograd_cpp
from micrograd_cpp import Value, dot, optim
from micrograd_cpp.datasets import make_moons
from micrograd_cpp.losses import accuracy, cross_entropy, mse, svm_loss, svm_loss_graph
from micrograd_cpp.nn import MLP, Layer, Module, Neuron
from typing_extensions import reveal_type

# The README's example
a = Value(-4.0)
b = Value(2.0)
c = a + b
d = a * b + b**3
c += c + 1
c += 1 + c + (-a)
d += d * 2 + (b + a).relu()
d += 3 * d + (b - a).relu()
e = c - d
f = e**2
g = f / 2.0
g += 10.0 / f
print(f"{g.data:.4f}")
g.backward()
print(f"{a.grad:.4f}", f"{b.grad:.4f}")
reveal_type(g)  # expect: micrograd_cpp._core.Value

# The demo notebook: the moons, an MLP, the max-margin loss, SGD
X, y = make_moons(n_samples=20, noise=0.1)
model = MLP(2, [16, 16, 1])
print(model, "number of parameters", len(model.parameters()))
reveal_type(model.parameters())  # expect: list[micrograd_cpp._core.Value]
inputs = [list(map(Value, xrow)) for xrow in X]
scores = list(map(model, inputs))
losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(y, scores, strict=True)]
reveal_type(model(inputs[0]))  # expect: micrograd_cpp._core.Value | Any
reveal_type(Neuron(2)([1.0, Value(2.0)]))  # expect: micrograd_cpp._core.Value
reveal_type(Layer(2, 3)([1.0, 2.0]))  # expect: micrograd_cpp._core.Value | Any
hidden = Layer(2, 3)([1.0, 2.0])
assert isinstance(hidden, list)  # several outputs: a list, once narrowed
print([h.relu().data for h in hidden], len(hidden))
data_loss = micrograd_cpp.sum(losses) * (1.0 / len(losses))
reg_loss = 1e-4 * dot(model.parameters(), model.parameters())
reveal_type(micrograd_cpp.sum(model.parameters()))  # expect: micrograd_cpp._core.Value
reveal_type(dot(model.parameters(), [1.0] * 337))  # expect: micrograd_cpp._core.Value
reveal_type(micrograd_cpp.sum([1.0, 2.0]))  # expect: float
reveal_type(dot([1.0, 2.0], [3.0, 4.0]))  # expect: float
for k in range(3):
    total_loss, acc = svm_loss(model, X, y)
    reveal_type(total_loss)  # expect: micrograd_cpp._core.Value
    reveal_type(acc)  # expect: float
    model.zero_grad()
    total_loss.backward()
    for p in model.parameters():
        p.data -= (1.0 - 0.9 * k / 100) * p.grad
    print(f"step {k} loss {total_loss.data}, accuracy {acc * 100}%")

# The same with optimizers, and with the graph compiled once and replayed
opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
adamw = optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.0)
leaves = [[Value(x0), Value(x1)] for x0, x1 in X]
loss, outputs = svm_loss_graph(model, leaves, y)
prog = micrograd_cpp.compile(loss)
reveal_type(prog)  # expect: micrograd_cpp._core.Program
for k in range(3):
    if k:
        prog.forward()
    for optimizer in (opt, adamw):
        optimizer.zero_grad()
        prog.backward()
        optimizer.lr = 0.1 * (1.0 - 0.9 * k / 100)
        optimizer.step()
    reveal_type(accuracy(outputs, y))  # expect: float
    print(prog.root.data, len(prog))


# A model of one's own
class Scale(Module):
    def __init__(self) -> None:
        self.w = Value(0.5)

    def __call__(self, x: Value) -> Value:
        return self.w * x

    def parameters(self) -> list[Value]:
        return [self.w]


scale = Scale()
scale.zero_grad()
reveal_type(scale(Value(2.0)))  # expect: micrograd_cpp._core.Value
reveal_type(scale.parameters())  # expect: list[micrograd_cpp._core.Value]

# Other losses
logits = [Value(0.5), Value(-1.0), Value(2.0)]
reveal_type(cross_entropy(logits, 2))  # expect: micrograd_cpp._core.Value
reveal_type(mse(logits, [0.0, 1.0, 0.0]))  # expect: micrograd_cpp._core.Value
