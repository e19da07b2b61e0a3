"""SGD and AdamW over a list of Values, with torch.optim's conventions and arithmetic.

The Python loops below are the specification: the same float operations, in the same order, as
torch's single-tensor implementations on CPU. torch rounds some a + alpha*b once (a fused
multiply-add) where these loops round twice, so results agree with torch to an ulp or so per
step, not always bit for bit. On the C++ backend a step is one call into the extension when it
provides sgd_step / adamw_step, which must give exactly what these loops give.

`lr` is a plain attribute: change it between steps to follow a schedule.
"""

import math
from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar

from . import _backend
from .engine import Value


def _check(name: str, value: float, low: float = 0.0, below: float | None = None) -> None:
    """torch.optim's argument checks: a ValueError now rather than a bad step later."""
    x = float(value)
    if not (x >= low and (below is None or x < below)):
        bound = f"in [{low}, {below})" if below is not None else f">= {low}"
        raise ValueError(f"Invalid {name}: {value} (must be {bound})")


def _check_state(count: int, *buffers: list[float]) -> None:
    """The C++ step's check: one float per parameter, else nothing changes."""
    if any(not isinstance(b, list) or len(b) != count for b in buffers):
        raise ValueError("optimizer state must be a list with one float per parameter")


class _Optimizer:
    _core_name: ClassVar[str]  # the extension's function for a step
    _core_step: Callable[..., None] | None
    _core_zero: Callable[[Sequence[Value]], None] | None

    def __init__(self, params: Iterable[Value], lr: float) -> None:
        _check("learning rate", lr)
        self.params = list(params)
        self.lr = lr
        self.t = 0  # steps taken
        cpp_value = _backend.CppValue
        cpp = cpp_value is not None and all(type(p) is cpp_value for p in self.params)
        self._core_step = _backend.fused(self._core_name) if cpp else None
        self._core_zero = _backend.fused("zero_grads") if cpp else None

    def zero_grad(self) -> None:
        """Set every parameter's grad to 0."""
        if self._core_zero is not None:
            self._core_zero(self.params)
            return
        for p in self.params:
            p.grad = 0.0


class SGD(_Optimizer):
    """torch.optim.SGD(params, lr, momentum, weight_decay) with dampening 0, nesterov False.

    g = grad + weight_decay*p;  b = g on the first step, else momentum*b + g;  p = p - lr*b
    (without momentum, p = p - lr*g: the demo notebook's `p.data -= lr * p.grad`).
    """

    _core_name = "sgd_step"

    def __init__(
        self, params: Iterable[Value], lr: float, momentum: float = 0.0, weight_decay: float = 0.0
    ) -> None:
        super().__init__(params, lr)
        _check("momentum value", momentum)
        _check("weight_decay value", weight_decay)
        self.momentum, self.weight_decay = momentum, weight_decay
        self.buf = [0.0] * len(self.params)  # momentum buffers

    def step(self) -> None:
        """Update every parameter from its grad."""
        self.t += 1
        if self._core_step is not None:
            args = (float(self.lr), float(self.momentum), float(self.weight_decay))
            self._core_step(self.params, self.buf, self.t, *args)
            return
        lr, mu, wd = float(self.lr), float(self.momentum), float(self.weight_decay)
        params, buf = tuple(self.params), self.buf  # the step updates the Values it began with
        _check_state(len(params), buf)
        for i, p in enumerate(params):
            g = p.grad
            if wd != 0:
                g = g + wd * p.data
            if mu != 0:
                g = buf[i] = g if self.t == 1 else buf[i] * mu + g
            p.data = p.data - lr * g


class AdamW(_Optimizer):
    """torch.optim.AdamW(params, lr, betas, eps, weight_decay) (amsgrad False).

    p = p * (1 - lr*wd);  m = lerp(m, g, 1 - beta1);  v = v*beta2 + (1 - beta2)*g*g;
    p = p - lr/(1 - beta1**t) * m / (sqrt(v) / (1 - beta2**t)**0.5 + eps)
    """

    _core_name = "adamw_step"

    def __init__(
        self,
        params: Iterable[Value],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, lr)
        _check("epsilon value", eps)
        _check("beta parameter at index 0", betas[0], below=1.0)
        _check("beta parameter at index 1", betas[1], below=1.0)
        _check("weight_decay value", weight_decay)
        self.betas, self.eps, self.weight_decay = tuple(betas), eps, weight_decay
        self.m = [0.0] * len(self.params)  # first moments
        self.v = [0.0] * len(self.params)  # second moments

    def step(self) -> None:
        """Update every parameter from its grad."""
        self.t += 1
        lr, eps, wd = float(self.lr), float(self.eps), float(self.weight_decay)
        beta1, beta2 = (float(beta) for beta in self.betas)
        if self._core_step is not None:
            self._core_step(self.params, self.m, self.v, self.t, lr, beta1, beta2, eps, wd)
            return
        params, m, v = tuple(self.params), self.m, self.v  # the Values the step began with
        _check_state(len(params), m, v)
        t = float(self.t)
        step_size = lr / (1 - beta1**t)
        bias_correction2_sqrt = (1 - beta2**t) ** 0.5  # a pow, as torch computes it, not sqrt
        decay, w = 1 - lr * wd, 1 - beta1
        for i, p in enumerate(params):
            g = p.grad
            if wd != 0:
                p.data = p.data * decay
            # torch's lerp, which switches formula at weight 0.5 for accuracy
            m[i] = m[i] + w * (g - m[i]) if abs(w) < 0.5 else g - (g - m[i]) * (1 - w)
            v[i] = v[i] * beta2 + (1 - beta2) * g * g
            denom = math.sqrt(v[i]) / bias_correction2_sqrt + eps
            p.data = p.data + -step_size * m[i] / denom
