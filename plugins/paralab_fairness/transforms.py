"""Pre-processing mitigations as dataset transforms: any dataset in, a derived dataset out.

* ``decorrelated`` (fairlearn's ``CorrelationRemover``): every input column is replaced by
  its residual after a least-squares regression on the one-hot sensitive groups (fitted on the
  train split), blended with the original by ``alpha``; the columns that encode the sensitive
  features are dropped. Linear proxies of the group (``biased_synthetic``'s ``x0``) lose
  their group signal; what is left of the group is non-linear.
* ``reweighed`` (Kamiran and Calders 2012): rows of group ``g`` and label ``y`` weigh
  ``W = n_g n_y / (n n_gy)`` (AIF360's ``Reweighing``), so group and label are independent
  under the weights. paralab's protocols train on index tensors, not weighted losses, so the
  train split is redrawn with those weights (their "uniform sampling": each cell keeps
  ``round(W n_gy)`` rows, its rows repeated or subsampled), which every protocol then uses;
  the exact weights are kept as the feature ``reweighing_weight``.

Both keep the base dataset's rows, splits (but ``reweighed``'s train), features and sensitive
declarations, so the fairness auditor audits the result on the original groups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from paralab import SharedDataset


def _base(base: str, base_options: Mapping[str, Any] | None, owner: str) -> SharedDataset:
    from paralab import load_dataset

    if base in ("decorrelated", "reweighed"):
        raise ValueError(f"{owner}: base must be another dataset, got {base!r}")
    return load_dataset(base, **dict(base_options or {}))


def _names(dataset: SharedDataset, sensitive: Sequence[str] | str, owner: str) -> list[str]:
    names = [sensitive] if isinstance(sensitive, str) else list(sensitive)
    names = names or list(dataset.sensitive)
    if not names:
        raise ValueError(f"{owner}: dataset {dataset.name!r} declares no sensitive features; "
                         f"set sensitive = [...] to some of {sorted(dataset.features)}")
    missing = [n for n in names if n not in dataset.features]
    if missing:
        raise ValueError(f"{owner}: sensitive names {missing}, which dataset {dataset.name!r} "
                         f"does not have; its features: {sorted(dataset.features)}")
    for name in names:
        if dataset.features[name].dtype.is_floating_point:
            raise ValueError(f"{owner}: feature {name!r} is continuous; a sensitive feature "
                             "must be integer group codes")
    return names


def one_hot_groups(dataset: SharedDataset, names: Sequence[str]) -> torch.Tensor:
    """``(rows, sum of cardinalities)`` float64 one-hot codes of the features."""
    blocks = []
    for name in names:
        codes = dataset.features[name].long().cpu()
        size = max(len(dataset.categories.get(name, ())), int(codes.max()) + 1)
        blocks.append(torch.nn.functional.one_hot(codes, size).double())
    return torch.cat(blocks, dim=1)


def encoding_columns(dataset: SharedDataset, names: Sequence[str]) -> list[int]:
    """Input columns named ``"<feature>=<label>"`` for any of ``names`` (the one-hot encoding
    of the tabular loaders and ``biased_synthetic``)."""
    prefixes = tuple(f"{name}=" for name in names)
    return [i for i, column in enumerate(dataset.feature_names) if column.startswith(prefixes)]


def remove_correlation(x: torch.Tensor, groups: torch.Tensor, fit_rows: torch.Tensor,
                       alpha: float) -> torch.Tensor:
    """``alpha * (x - (s - mean s) beta) + (1 - alpha) * x`` with ``beta`` the least-squares
    fit of ``x`` on the centred groups ``s`` over ``fit_rows`` (fairlearn's
    ``CorrelationRemover.fit`` on those rows, ``transform`` on all)."""
    x64, s = x.double().cpu(), groups.double().cpu()
    mean = s[fit_rows].mean(dim=0)
    centred = s - mean
    beta = torch.linalg.lstsq(centred[fit_rows], x64[fit_rows], driver="gelsd").solution
    filtered = x64 - centred @ beta
    return alpha * filtered + (1.0 - alpha) * x64


def decorrelated(base: str = "biased_synthetic", base_options: Mapping[str, Any] | None = None,
                 sensitive: Sequence[str] | str = (), alpha: float = 1.0,
                 fit_split: str = "train") -> SharedDataset:
    """``base`` with its inputs decorrelated from the sensitive groups (see the module)."""
    from paralab import SharedDataset

    owner = "dataset decorrelated"
    data = _base(base, base_options, owner)
    names = _names(data, sensitive, owner)
    if fit_split not in data.splits:
        raise ValueError(f"{owner}: fit_split = {fit_split!r}; the splits of {base!r}: "
                         f"{sorted(data.splits)}")
    dropped = set(encoding_columns(data, names))
    kept = [i for i in range(data.x.shape[1]) if i not in dropped]
    x = data.x.reshape(len(data.x), -1)[:, kept]
    fit_rows = data.splits[fit_split].cpu()
    cleaned = remove_correlation(x, one_hot_groups(data, names), fit_rows, alpha)
    feature_names = tuple(data.feature_names[i] for i in kept) if data.feature_names else ()
    return SharedDataset(
        name="decorrelated", x=cleaned.to(data.x.dtype), y=data.y, splits=dict(data.splits),
        features=dict(data.features), sensitive=data.sensitive,
        categories=dict(data.categories), class_names=data.class_names,
        feature_names=feature_names,
        meta={**data.meta, "base": base, "decorrelated_from": names, "alpha": alpha},
    )


def reweighing_weights(groups: torch.Tensor, y: torch.Tensor, fit_rows: torch.Tensor
                       ) -> torch.Tensor:
    """Per row, ``n_g n_y / (n n_gy)`` counted over ``fit_rows`` (NaN for a (group, label)
    cell that the fit rows lack)."""
    groups, y = groups.long().cpu(), y.long().cpu()
    n_labels = int(y.max()) + 1
    cell = groups * n_labels + y
    size = (int(groups.max()) + 1) * n_labels
    n_gy = torch.bincount(cell[fit_rows], minlength=size).double()
    n_g = n_gy.view(-1, n_labels).sum(dim=1)
    n_y = n_gy.view(-1, n_labels).sum(dim=0)
    n = float(len(fit_rows))
    expected = (n_g.unsqueeze(1) * n_y.unsqueeze(0)).flatten() / n
    weight = torch.where(n_gy > 0, expected / n_gy.clamp(min=1.0),
                         torch.full_like(n_gy, float("nan")))
    return weight[cell]


def resample_by_weight(rows: torch.Tensor, cell: torch.Tensor, weight: torch.Tensor,
                       generator: torch.Generator) -> torch.Tensor:
    """Kamiran and Calders' uniform sampling: each cell of ``rows`` keeps
    ``round(weight * n_cell)`` rows, all of them repeated as often as fits and the rest drawn
    without replacement."""
    chosen = []
    for value in torch.unique(cell[rows]).tolist():
        members = rows[cell[rows] == value]
        target = int(round(float(weight[members[0]]) * len(members)))
        whole, rest = divmod(target, len(members))
        order = torch.randperm(len(members), generator=generator)
        chosen += [members.repeat(whole), members[order[:rest]]]
    return torch.cat(chosen).sort().values


def reweighed(base: str = "biased_synthetic", base_options: Mapping[str, Any] | None = None,
              sensitive: Sequence[str] | str = (), split: str = "train",
              seed: int = 0) -> SharedDataset:
    """``base`` with ``split`` redrawn by the reweighing weights (see the module)."""
    from paralab import SharedDataset

    owner = "dataset reweighed"
    data = _base(base, base_options, owner)
    names = _names(data, sensitive, owner)
    if split not in data.splits:
        raise ValueError(f"{owner}: split = {split!r}; the splits of {base!r}: "
                         f"{sorted(data.splits)}")
    groups = torch.zeros(len(data.y), dtype=torch.long)
    for name in names:  # the intersection of the features, numbered in place
        codes = data.features[name].long().cpu()
        groups = groups * (int(codes.max()) + 1) + codes
    rows = data.splits[split].cpu()
    weight = reweighing_weights(groups, data.y, rows)
    cell = groups * (int(data.y.max()) + 1) + data.y.long().cpu()
    redrawn = resample_by_weight(rows, cell, weight, torch.Generator().manual_seed(seed))
    return SharedDataset(
        name="reweighed", x=data.x, y=data.y,
        splits={**data.splits, split: redrawn.to(data.splits[split].device)},
        features={**data.features, "reweighing_weight": weight.to(data.y.device)},
        sensitive=data.sensitive, categories=dict(data.categories),
        class_names=data.class_names, feature_names=data.feature_names,
        meta={**data.meta, "base": base, "reweighed_by": names},
    )
