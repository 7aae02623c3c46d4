"""Summaries of a batch of attributions: global, per class, per sensitive group, and drift.

All are scatter-means on the device (``paralab.evaluation.grouped_mean``); only the small
per-player tables come back to the CPU, as JSON-ready dicts keyed by player name.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from paralab import grouped_mean


def table(names: Sequence[str], values: torch.Tensor, digits: int = 6) -> dict[str, float]:
    return {name: round(float(value), digits) for name, value in zip(names, values)}


def importance(values: torch.Tensor) -> torch.Tensor:
    """Global importance: mean ``|attribution|`` of each player over the explained rows."""
    return values.abs().mean(dim=0)


def grouped_importance(
    values: torch.Tensor, groups: torch.Tensor, n_groups: int
) -> torch.Tensor:
    """Mean ``|attribution|`` per (group, player): ``(n_groups, M)``, NaN for empty groups."""
    return torch.stack(
        [grouped_mean(values[:, player].abs(), groups, n_groups) for player in range(values.shape[1])],
        dim=1,
    )


def per_label(
    values: torch.Tensor, codes: torch.Tensor, labels: Sequence[str], names: Sequence[str]
) -> dict[str, dict[str, float]]:
    """``{label: {player: mean |attr|}}`` for the labels that occur among the explained rows."""
    grid = grouped_importance(values, codes.to(values.device), len(labels))
    present = torch.bincount(codes.to(values.device), minlength=len(labels)) > 0
    return {labels[i]: table(names, grid[i]) for i in range(len(labels)) if bool(present[i])}


def sensitive_players(names: Sequence[str], feature: str) -> list[int]:
    """The players that encode sensitive ``feature``: named ``feature`` or ``feature=value``."""
    return [i for i, name in enumerate(names) if name == feature or name.startswith(f"{feature}=")]


def sensitive_report(
    values: torch.Tensor,
    codes: torch.Tensor,
    labels: Sequence[str],
    names: Sequence[str],
    feature: str,
) -> dict[str, object]:
    """How much a sensitive attribute drives decisions, overall and for each of its groups.

    ``share`` is the fraction of all ``|attribution|`` that falls on the attribute's own players
    (absent when the attribute is not an input of the model); ``groups`` gives, per group, the
    mean signed attribution of those players (which way they push) and the importance table.
    """
    own = sensitive_players(names, feature)
    magnitude = values.abs()
    total = magnitude.sum(dim=1).clamp(min=1e-12)
    report: dict[str, object] = {}
    n_groups = max(len(labels), int(codes.max()) + 1 if codes.numel() else 0)
    labels = list(labels) + [str(i) for i in range(len(labels), n_groups)]
    codes = codes.to(values.device)
    if own:
        share = magnitude[:, own].sum(dim=1) / total
        report["share"] = round(float(share.mean()), 6)
        push = values[:, own].sum(dim=1)
        group_share = grouped_mean(share, codes, n_groups)
        group_push = grouped_mean(push, codes, n_groups)
    groups = {}
    grid = grouped_importance(values, codes, n_groups)
    counts = torch.bincount(codes, minlength=n_groups)
    for code in range(n_groups):
        if int(counts[code]) == 0:
            continue
        entry: dict[str, object] = {"rows": int(counts[code])}
        if own:
            entry["share"] = round(float(group_share[code]), 6)
            entry["push"] = round(float(group_push[code]), 6)
        entry["importance"] = table(names, grid[code])
        groups[labels[code]] = entry
    report["groups"] = groups
    return report


def drift(history: Sequence[torch.Tensor]) -> dict[str, list[float]]:
    """Change of global importance between consecutive phases.

    ``cosine_distance``: 1 - cosine similarity of the importance vectors; ``rank_correlation``:
    Spearman's correlation of the players' ranks (1 = same order).
    """
    distances, correlations = [], []
    for before, after in zip(history, history[1:]):
        cosine = torch.nn.functional.cosine_similarity(before.double(), after.double(), dim=0)
        distances.append(round(1.0 - float(cosine), 6))
        correlations.append(round(_spearman(before, after), 6))
    return {"cosine_distance": distances, "rank_correlation": correlations}


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.numel() < 2:
        return 1.0
    ranks_a = a.double().argsort().argsort().double()
    ranks_b = b.double().argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ranks_a, ranks_b]))[0, 1])
