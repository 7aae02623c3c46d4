"""Exact MAML inner loops for stacks of linear layers, with per-task updates kept factored.

The gradient of a linear layer's weight on a support set of ``k`` examples is a sum of ``k``
outer products, ``delta^T a`` (backpropagated output signal times layer input). After ``s``
inner steps a task's weight is ``W - U^T V`` with ``U`` and ``V`` of rank ``k * s`` (25 for
5-way 1-shot and 5 steps), far below the layer's width. So instead of materialising a copy of
every weight per task, as a loop over cloned modules (learn2learn) or ``vmap`` does, the
forward pass computes ``x W^T`` for the inputs of **all** tasks as one matrix product with the
shared weight, and subtracts the thin per-task correction ``(x V^T) U``. The factors come from
``autograd.grad`` with respect to each layer's *outputs* (``delta``), not its weight. The
arithmetic is MAML's, to rounding, second order included (every step is a differentiable
torch op); the parity tests compare it with learn2learn and with the ``vmap`` path.

Applies to ``nn.Sequential`` models made of ``Linear`` layers, element-wise activations and
``Flatten`` (paralab's ``mlp``); :func:`supports` says whether a model qualifies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.Identity)


def supports(model: nn.Module) -> bool:
    """Whether ``model`` is a sequential stack of linear layers and element-wise activations."""
    if not isinstance(model, nn.Sequential) or not any(isinstance(m, nn.Linear) for m in model):
        return False
    for module in model:
        if isinstance(module, nn.Dropout) and module.p == 0:
            continue
        if not isinstance(module, (nn.Linear, nn.Flatten, *ELEMENTWISE)):
            return False
    return True


class _TaskLinear:
    """One linear layer of every task: the shared weight plus per-task factors and bias."""

    def __init__(
        self, layer: nn.Linear, tasks: int, weight: torch.Tensor, bias: torch.Tensor | None
    ):
        self.weight = weight
        out_features = layer.out_features
        self.bias = (
            bias.expand(tasks, out_features)
            if bias is not None
            else weight.new_zeros(tasks, out_features)
        )
        self.has_bias = bias is not None
        self.shared_bias = bias
        self.u: torch.Tensor | None = None  # (tasks, rank, out_features)
        self.v: torch.Tensor | None = None  # (tasks, rank, in_features)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        tasks, rows, width = x.shape
        flat = x.reshape(tasks * rows, width)
        if self.u is None or self.v is None:  # before the first step every task shares W, b
            if self.has_bias and self.shared_bias is not None:
                return torch.addmm(self.shared_bias, flat, self.weight.T).reshape(tasks, rows, -1)
            shared = (flat @ self.weight.T).reshape(tasks, rows, -1)
            return shared + self.bias[:, None, :]
        shared = (flat @ self.weight.T).reshape(tasks, rows, -1) + self.bias[:, None, :]
        return torch.baddbmm(shared, torch.bmm(x, self.v.transpose(1, 2)), self.u, alpha=-1)

    def step(
        self, inputs: torch.Tensor, delta: torch.Tensor, bias_grad: torch.Tensor, lr: float
    ) -> None:
        """Take ``W_t -= lr * delta_t^T inputs_t`` (kept factored) and the bias step."""
        scaled = lr * delta
        self.u = scaled if self.u is None else torch.cat([self.u, scaled], dim=1)
        self.v = inputs if self.v is None else torch.cat([self.v, inputs], dim=1)
        if self.has_bias:
            self.bias = self.bias - lr * bias_grad
            self.shared_bias = None


class FactoredMAML:
    """MAML's adapted query logits for a sequential linear model, all tasks at once."""

    def __init__(self, model: nn.Sequential) -> None:
        if not supports(model):
            raise ValueError(
                f"{type(model).__name__} is not a sequential stack of Linear layers and "
                "element-wise activations; use the vmap engine"
            )
        self.model = model

    def _layers(self, tasks: int, params: dict[str, torch.Tensor]) -> list[object]:
        layers: list[object] = []
        for index, module in enumerate(self.model):
            if isinstance(module, nn.Linear):
                layers.append(
                    _TaskLinear(
                        module,
                        tasks,
                        params[f"{index}.weight"],
                        params.get(f"{index}.bias"),
                    )
                )
            elif isinstance(module, nn.Flatten):
                layers.append(lambda x: x.flatten(2))
            else:
                layers.append(module)
        return layers

    @staticmethod
    def _forward(layers: list[object], x: torch.Tensor, keep: bool):
        """Logits, plus (layer, input, output) of each linear layer when ``keep``."""
        record = []
        for layer in layers:
            if isinstance(layer, _TaskLinear):
                out = layer(x)
                if keep:
                    record.append((layer, x, out))
                x = out
            else:
                x = layer(x)  # type: ignore[operator]
        return x, record

    def query_logits(
        self,
        params: dict[str, torch.Tensor],
        support_x: torch.Tensor,
        support_y: torch.Tensor,
        query_x: torch.Tensor,
        ways: int,
        *,
        steps: int,
        lr: float,
        first_order: bool,
    ) -> torch.Tensor:
        """``(tasks, queries, ways)`` logits after ``steps`` inner steps on each support set."""
        tasks = support_x.shape[0]
        layers = self._layers(tasks, params)
        support_x = (
            support_x.reshape(tasks, support_x.shape[1], -1) if support_x.dim() > 3 else support_x
        )
        query_x = query_x.reshape(tasks, query_x.shape[1], -1) if query_x.dim() > 3 else query_x
        outer = torch.is_grad_enabled() and any(p.requires_grad for p in params.values())
        create_graph = outer and not first_order
        if not outer:  # evaluation: the inner loop still needs gradients, the result does not
            params = {key: value.detach().requires_grad_() for key, value in params.items()}
            layers = self._layers(tasks, params)
        with torch.enable_grad():
            for _ in range(steps):
                logits, record = self._forward(layers, support_x, keep=True)
                logits = logits[..., :ways]
                # the sum over tasks of each task's mean loss: per-task gradients
                loss = (
                    F.cross_entropy(
                        logits.reshape(-1, ways), support_y.reshape(-1), reduction="sum"
                    )
                    / support_y.shape[1]
                )
                outputs = [out for _, _, out in record]
                deltas = torch.autograd.grad(loss, outputs, create_graph=create_graph)
                for (layer, inputs, _), delta in zip(record, deltas):
                    if not create_graph:
                        delta, inputs = delta.detach(), inputs.detach()
                    layer.step(inputs, delta, delta.sum(dim=1), lr)  # type: ignore[union-attr]
        with torch.enable_grad() if outer else torch.no_grad():
            logits, _ = self._forward(layers, query_x, keep=False)
        return logits[..., :ways] if outer else logits[..., :ways].detach()
