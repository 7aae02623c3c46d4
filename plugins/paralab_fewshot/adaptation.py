"""Inner-loop adaptation for a whole meta-batch at once, with ``torch.func``.

learn2learn's MAML clones the module for every task and adapts it in a Python loop
(``clone()``/``adapt()``, learn2learn #230). Here the model is a pure function of a parameter
dictionary (``functional_call``); ``grad`` differentiates the support loss, and ``vmap`` runs
the same inner loop for every task of the meta-batch in one batched computation. Because the
gradients ``grad`` returns stay on the outer autograd graph, backpropagating the query loss
through the adapted parameters gives second-order MAML; detaching them gives first-order MAML.

A model that ``vmap`` cannot batch (in-place ops, a simulator that is not a torch op) falls
back to a loop over tasks running the very same function, so results are the same either way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

Params = dict[str, torch.Tensor]
Forward = Callable[[Params, torch.Tensor], torch.Tensor]

logger = logging.getLogger("paralab.fewshot")


def sgd_adapt(
    forward: Forward,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    lr: float,
    first_order: bool,
) -> Params:
    """``steps`` steps of gradient descent on ``cross_entropy(forward(params, x), y)``.

    Only ``params`` adapt; ``forward`` closes over anything else. With ``first_order`` the
    gradients are detached, so the result depends on ``params`` through the identity only.
    """

    def loss(current: Params) -> torch.Tensor:
        return F.cross_entropy(forward(current, x), y)

    step = grad(loss)
    for _ in range(steps):
        gradients = step(params)
        if first_order:
            gradients = {key: value.detach() for key, value in gradients.items()}
        params = {key: params[key] - lr * gradients[key] for key in params}
    return params


class TaskMap:
    """Apply a per-task function to every task of a meta-batch: ``vmap``, else a loop.

    The first call tries ``vmap``; if the model cannot be batched, it logs why once and loops
    from then on (``vectorize=False`` loops from the start).
    """

    def __init__(self, vectorize: bool = True) -> None:
        self.vectorize = vectorize

    def __call__(
        self, function: Callable[..., torch.Tensor], shared: object, *batched: torch.Tensor
    ) -> torch.Tensor:
        if self.vectorize:
            try:
                in_dims = (None,) + (0,) * len(batched)
                return vmap(function, in_dims=in_dims, randomness="different")(shared, *batched)
            except (RuntimeError, NotImplementedError, ValueError) as error:
                logger.warning("vmap cannot batch this model (%s); looping over tasks", error)
                self.vectorize = False
        outputs = [
            function(shared, *(tensor[i] for tensor in batched)) for i in range(len(batched[0]))
        ]
        return torch.stack(outputs)


def model_forward(model: nn.Module, ways: int, frozen: Params | None = None) -> Forward:
    """``forward(params, x)``: the model's first ``ways`` logits with these parameters.

    ``frozen`` holds buffers and any parameters that do not adapt. Slicing the logits makes
    any classifier with at least ``ways`` outputs an N-way one: the unused rows of the head get
    no gradient, exactly as if the head had ``ways`` outputs.
    """
    constant = dict(frozen or {})

    def forward(params: Params, x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, {**constant, **params}, (x,))[..., :ways]

    return forward


def linear_forward(ways: int) -> Forward:
    """``forward(params, features)`` of a linear head stored as ``weight`` and ``bias``."""

    def forward(params: Params, features: torch.Tensor) -> torch.Tensor:
        return F.linear(features, params["weight"][:ways], params["bias"][:ways])

    return forward


def adapted_query_logits(
    forward: Forward,
    params: Params,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    query_x: torch.Tensor,
    *,
    steps: int,
    lr: float,
    first_order: bool,
    task_map: TaskMap,
) -> torch.Tensor:
    """``(tasks, queries, ways)``: adapt ``params`` on each task's support set, then score
    its queries."""

    def one_task(
        start: Params,
        task_support_x: torch.Tensor,
        task_support_y: torch.Tensor,
        task_query_x: torch.Tensor,
    ) -> torch.Tensor:
        adapted = sgd_adapt(
            forward,
            start,
            task_support_x,
            task_support_y,
            steps=steps,
            lr=lr,
            first_order=first_order,
        )
        return forward(adapted, task_query_x)

    return task_map(one_task, params, support_x, support_y, query_x)


def adapted_params(
    forward: Forward,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    lr: float,
    task_map: TaskMap,
) -> Params:
    """Each task's parameters after first-order adaptation on ``(x, y)`` (Reptile's inner loop).

    Returns a dictionary of ``(tasks, *shape)`` tensors.
    """
    keys = list(params)

    def one_task(start: Params, task_x: torch.Tensor, task_y: torch.Tensor) -> torch.Tensor:
        adapted = sgd_adapt(forward, start, task_x, task_y, steps=steps, lr=lr, first_order=True)
        return torch.cat([adapted[key].reshape(-1) for key in keys])

    flat = task_map(one_task, params, x, y)
    result, offset = {}, 0
    for key in keys:
        size = params[key].numel()
        result[key] = flat[:, offset : offset + size].reshape(-1, *params[key].shape)
        offset += size
    return result
