"""The counterfactual flip test: would the decision change if only the sensitive attribute did?

For each row and each other value of a sensitive feature, the model is run again on the row's
inputs with the feature's one-hot columns (named ``"<feature>=<label>"`` in
``dataset.feature_names``, as the host's tabular loaders and ``biased_synthetic`` name them)
set to that value. A model whose decisions ignore the attribute flips none; one that decides
by it flips all. What it cannot see: the attribute's proxies (``biased_synthetic``'s ``x0``)
stay as they were, so this tests the model's direct use of the attribute, not the causal
counterfactual of Kusner et al. 2017.

The ``fairness`` auditor with ``counterfactual = true`` reports per feature and group the share of rows whose decision
changes for some other value (``flip_rate``), per pair of groups the share that changes
(``flip_rate_to``) and the mean change in the probability of ``positive_class``
(``probability_change_to``), with each group's ``count``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from paralab import Predictions, RunContext, SharedDataset


def sensitive_columns(dataset: SharedDataset, feature: str, owner: str) -> list[int]:
    """The input columns one-hot encoding ``feature``, in the order of its labels.

    :raises ValueError: the inputs do not carry the feature (``drop_sensitive``, or a
        dataset that names no input columns), naming what was looked for.
    """
    labels = tuple(str(label) for label in dataset.categories.get(feature, ()))
    names = list(dataset.feature_names)
    wanted = [f"{feature}={label}" for label in labels]
    missing = [name for name in wanted if name not in names]
    if not labels or missing:
        raise ValueError(
            f"{owner}: the inputs of dataset {dataset.name!r} do not one-hot encode {feature!r} "
            f"(looked for columns {wanted or [feature + '=<label>']} in its feature_names; "
            "missing: " f"{missing or 'its labels'}); a flip test needs the attribute in the "
            "inputs (with drop_sensitive = false)"
        )
    return [names.index(name) for name in wanted]


def _outputs(model: torch.nn.Module, x: torch.Tensor, indices: torch.Tensor,
             transform: Callable[..., torch.Tensor] | None, batch_size: int) -> torch.Tensor:
    was_training = model.training
    model.eval()
    parts = []
    try:
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                chunk, index = x[start:start + batch_size], indices[start:start + batch_size]
                parts.append(model(transform(chunk, index) if transform is not None else chunk))
    finally:
        model.train(was_training)
    return torch.cat(parts).float()


def counterfactual_flips(
    model: torch.nn.Module,
    x: torch.Tensor,
    codes: torch.Tensor,
    columns: Sequence[int],
    *,
    labels: Sequence[str] = (),
    positive_class: int = 1,
    indices: torch.Tensor | None = None,
    transform: Callable[..., torch.Tensor] | None = None,
    batch_size: int = 4096,
) -> dict[str, Any]:
    """Run ``model`` on ``x`` with the one-hot ``columns`` set to each value in turn.

    :param codes: each row's group code (its position in ``columns``).
    :returns: JSON-ready ``groups``, ``count``, ``flip_rate`` (per group),
        ``flip_rate_to`` and ``probability_change_to`` (``[from][to]``, NaN on the diagonal),
        ``overall_flip_rate``.
    """
    k = len(columns)
    indices = torch.arange(len(x), device=x.device) if indices is None else indices
    names = [str(label) for label in labels] or [str(v) for v in range(k)]
    original = _outputs(model, x, indices, transform, batch_size)
    labels_now = original.argmax(dim=-1)
    p_now = torch.softmax(original, dim=-1)[:, positive_class]
    flipped_any = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    rate = [[math.nan] * k for _ in range(k)]
    change = [[math.nan] * k for _ in range(k)]
    counts = [int((codes == g).sum()) for g in range(k)]
    block = torch.tensor(list(columns), device=x.device)
    for value in range(k):
        moved = codes != value
        if not bool(moved.any()):
            continue
        changed = x[moved].clone()
        changed[:, block] = 0.0
        changed[:, block[value]] = 1.0
        outputs = _outputs(model, changed, indices[moved], transform, batch_size)
        flips = outputs.argmax(dim=-1) != labels_now[moved]
        delta = torch.softmax(outputs, dim=-1)[:, positive_class] - p_now[moved]
        flipped_any[torch.nonzero(moved).flatten()[flips]] = True
        sources = codes[moved]
        for group in range(k):
            inside = sources == group
            if group != value and bool(inside.any()):
                rate[group][value] = float(flips[inside].double().mean())
                change[group][value] = float(delta[inside].double().mean())
    per_group = [float(flipped_any[codes == g].double().mean()) if counts[g] else math.nan
                 for g in range(k)]
    return {"groups": names, "count": counts, "flip_rate": per_group,
            "flip_rate_to": rate, "probability_change_to": change,
            "overall_flip_rate": float(flipped_any.double().mean()) if len(x) else math.nan}


OWNER = "auditor fairness (counterfactual = true)"


def check_counterfactual(run: RunContext, names: Sequence[str]) -> None:
    """Before training: the run has a model to re-run and its inputs carry every feature.

    :raises ValueError: naming what is missing.
    """
    if run.model is None:
        raise ValueError(f"{OWNER}: the flip test re-runs the model, and protocol "
                         f"{run.spec.protocol.name!r} trains none")
    for name in names:
        sensitive_columns(run.dataset, name, OWNER)


def flip_audit(run: RunContext, predictions: Predictions, names: Sequence[str],
               positive_class: int, batch_size: int = 4096) -> dict[str, Any]:
    """The flip test of each feature in ``names`` on the rows of ``predictions``."""
    dataset = predictions.dataset
    model = predictions.extras.get("model") or run.model
    if dataset is None or model is None:
        raise ValueError(f"{OWNER}: these predictions carry no dataset or model")
    transform = predictions.extras.get("transform")
    indices = predictions.indices.to(dataset.x.device)
    x = dataset.x[indices]
    return {
        name: counterfactual_flips(
            model, x, dataset.features[name][indices].to(x.device),
            sensitive_columns(dataset, name, OWNER), labels=dataset.categories.get(name, ()),
            positive_class=positive_class, indices=indices, transform=transform,
            batch_size=batch_size)
        for name in names
    }
