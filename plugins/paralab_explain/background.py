"""Background distributions: what "feature absent" means for Shapley estimators, as in SHAP.

A SHAP value is not the Shapley value of one baseline row: it is the expectation over a
background distribution ``D`` of the single-baseline values (the interventional game
``v(S) = E_{b ~ D} f(x_S, b_rest)``; Lundberg and Lee 2017, Janzing et al. 2020). Because the
Shapley value is linear in the game, that expectation equals the weighted mean of the values
computed against each background row, which is how :func:`paralab_explain.shapley.exact_shapley`
and :func:`paralab_explain.permutation.permutation_shapley` evaluate it: every coalition's input
is built against every background row in one batch, and the outputs are averaged with the
rows' weights.

The ``background`` option:

* ``None``: the single baseline row (``baseline``), weight 1;
* ``"sample:N"``: ``N`` rows drawn without replacement from the reference rows (the training
  split), seeded by the auditor's ``seed``, equal weights;
* ``"kmeans:K"``: ``K`` k-means centres weighted by how many rows each represents, each centre's
  values rounded to the nearest value the feature takes in the data, exactly as
  ``shap.kmeans`` summarises (scikit-learn's ``KMeans(n_clusters=K, random_state=0,
  n_init=10)``);
* ``"train"``: every reference row, equal weights;
* a tensor of rows ``(B, F)`` (the Python API), equal weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from paralab_explain.errors import ExplainError

_VALID = ("valid: None (the single baseline row), 'sample:<rows>', 'kmeans:<centres>', 'train' "
          "or a tensor of background rows")


@dataclass(frozen=True)
class Background:
    """Background rows ``(B, F)`` and their weights ``(B,)`` summing to one."""

    rows: torch.Tensor
    weights: torch.Tensor

    def __len__(self) -> int:
        return len(self.rows)

    def to(self, device: Any) -> Background:
        return Background(self.rows.to(device), self.weights.to(device))

    def expected(self, values: torch.Tensor) -> torch.Tensor:
        """Weighted mean over the background axis (the last one) of ``values``."""
        return values @ self.weights.to(values.dtype)


def single(baseline: torch.Tensor) -> Background:
    """The one-row background of a baseline ``(F,)``."""
    row = baseline.reshape(1, -1)
    return Background(row, torch.ones(1, dtype=row.dtype, device=row.device))


def parse_background(option: Any) -> tuple[str, int] | None:
    """``"kmeans:10"`` -> ``("kmeans", 10)``; ``"train"`` -> ``("train", 0)``; ``None`` ->
    ``None``. Raises :class:`ExplainError` naming the valid forms."""
    if option is None:
        return None
    if not isinstance(option, str):
        raise ExplainError(f"background: cannot read {option!r}; {_VALID}")
    if option == "train":
        return ("train", 0)
    kind, _, size = option.partition(":")
    if kind not in ("sample", "kmeans") or not size:
        raise ExplainError(f"background: {option!r} unknown; {_VALID}")
    try:
        count = int(size)
    except ValueError:
        raise ExplainError(f"background: {option!r} needs a whole number after ':'; {_VALID}"
                           ) from None
    if count < 1:
        raise ExplainError(f"background: {option!r} needs at least 1 row; {_VALID}")
    return (kind, count)


def resolve_background(
    option: Any, reference: torch.Tensor | None, *, seed: int = 0, n_features: int | None = None
) -> Background | None:
    """The background the ``background`` option names (see the module docstring)."""
    if isinstance(option, Background):
        return option
    if isinstance(option, torch.Tensor):
        rows = option.reshape(len(option), -1).float()
        if n_features is not None and rows.shape[1] != n_features:
            raise ExplainError(f"background: rows have {rows.shape[1]} features, the inputs "
                               f"{n_features}")
        if len(rows) == 0:
            raise ExplainError(f"background: no rows; {_VALID}")
        return Background(rows, torch.full((len(rows),), 1.0 / len(rows), device=rows.device))
    parsed = parse_background(option)
    if parsed is None:
        return None
    if reference is None or len(reference) == 0:
        raise ExplainError(f"background: {option!r} needs reference rows (the training split)")
    data = reference.reshape(len(reference), -1).float()
    kind, count = parsed
    if kind == "train":
        return resolve_background(data, None)
    if kind == "sample":
        if count >= len(data):
            return resolve_background(data, None)
        generator = torch.Generator().manual_seed(seed)
        chosen = torch.randperm(len(data), generator=generator)[:count].sort().values
        return resolve_background(data[chosen.to(data.device)], None)
    return kmeans(data, count)


def kmeans(data: torch.Tensor, centres: int) -> Background:
    """``shap.kmeans``'s summary: k-means centres, rounded per feature to the nearest value in
    the data, weighted by cluster size (tests/test_explain_background.py checks equality)."""
    from sklearn.cluster import KMeans

    if centres > len(data):
        raise ExplainError(f"background: kmeans:{centres} asks for more centres than the "
                           f"{len(data)} reference rows")
    values = data.detach().double().cpu().numpy()
    fitted = KMeans(n_clusters=centres, random_state=0, n_init=10).fit(values)
    summary = fitted.cluster_centers_.copy()
    nearest = np.abs(values[None, :, :] - summary[:, None, :]).argmin(axis=1)  # (K, F)
    summary = values[nearest, np.arange(values.shape[1])[None, :]]
    weights = np.bincount(fitted.labels_, minlength=centres).astype(np.float64)
    weights /= weights.sum()
    return Background(torch.as_tensor(summary, dtype=torch.float32, device=data.device),
                      torch.as_tensor(weights, dtype=torch.float32, device=data.device))
