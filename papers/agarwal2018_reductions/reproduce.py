"""Agarwal et al. 2018, "A Reductions Approach to Fair Classification": error vs disparity.

Every point is one paralab run: protocol ``estimator`` (logistic regression, the paper's base
learner), method ``exponentiated_gradient`` with a demographic-parity bound ``eps`` or
``unmitigated``, and the ``fairness`` auditor. The paper's epsilon is fairlearn's constraint
``difference_bound`` (and ``eps = epsilon``, which bounds the multipliers by ``1/epsilon``). As in the paper, the randomized classifier's
error and disparity are its expected values on the test split (from its expected predictions
``P(h(x) = 1)``): error ``E|h(x) - y|``, disparity ``max_a |E[h | A = a] - E[h]|`` (the
paper's DP violation) and the between-group difference the audit reports.

Data: Adult (protected attribute: sex) and COMPAS (race, restricted to African-American and
Caucasian defendants, as in the paper). The trade-off plot is written to
``runs/papers/agarwal2018_reductions/tradeoff.png``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

import paralab
from paralab import DatasetSpec, SharedDataset, grouped_mean, hookimpl, load_dataset

EPS_FULL = (0.005, 0.01, 0.02, 0.05, 0.1)
EPS_QUICK = (0.005, 0.01, 0.02, 0.1)
QUICK_ADULT_ROWS = 5000
OUTPUT = Path("runs") / "papers" / "agarwal2018_reductions"


def compas_black_white(root: str | None = None, seed: int = 0) -> Any:
    """COMPAS rows of African-American and Caucasian defendants only (the paper's subset)."""
    full = load_dataset("compas", root=root, seed=seed)
    labels = full.categories["race"]
    keep_codes = torch.tensor([labels.index("African-American"), labels.index("Caucasian")])
    keep = torch.isin(full.features["race"], keep_codes)
    position = torch.cumsum(keep.long(), 0) - 1
    race = (full.features["race"][keep] == keep_codes[1]).long()
    return SharedDataset(
        name="compas_black_white", x=full.x[keep], y=full.y[keep],
        splits={k: position[v[keep[v]]] for k, v in full.splits.items()},
        features={"race": race, "sex": full.features["sex"][keep]},
        sensitive=("race", "sex"),
        categories={"race": ("African-American", "Caucasian"), "sex": full.categories["sex"]},
        class_names=full.class_names, feature_names=full.feature_names,
        meta={"source": "compas, rows of African-American and Caucasian defendants"},
    )


def adult_sample(root: str | None = None, rows: int = QUICK_ADULT_ROWS, seed: int = 0) -> Any:
    """Adult with a random ``rows`` of its training rows (all test rows): quick mode only."""
    full = load_dataset("adult", root=root)
    generator = torch.Generator().manual_seed(seed)
    train = full.splits["train"]
    train = train[torch.randperm(len(train), generator=generator)[:rows]].sort().values
    return SharedDataset(
        name="adult_sample", x=full.x, y=full.y,
        splits={"train": train, "test": full.splits["test"]},
        features=dict(full.features), sensitive=full.sensitive,
        categories=dict(full.categories), class_names=full.class_names,
        feature_names=full.feature_names, meta={"source": f"adult, {rows} training rows"},
    )


class PaperPlugin:
    """The paper's COMPAS subset, quick mode's Adult sample, and a probe keeping each run's
    test predictions."""

    PARALAB_API = "1.0"

    def __init__(self) -> None:
        self.predictions: Any = None

    @hookimpl
    def paralab_datasets(self) -> list[DatasetSpec]:
        return [
            DatasetSpec("compas_black_white", compas_black_white,
                        "COMPAS, African-American and Caucasian defendants.",
                        {"seed": 0}, needs_root=True, sensitive=("race", "sex")),
            DatasetSpec("adult_sample", adult_sample, "Adult, a sample of the training rows.",
                        {"rows": QUICK_ADULT_ROWS, "seed": 0}, needs_root=True,
                        sensitive=("sex", "race")),
        ]

    @hookimpl
    def paralab_after_evaluation(self, run: Any, phase: Any, evaluation: Any) -> None:
        self.predictions = evaluation.predictions


def expected_point(predictions: Any, sensitive: str, randomized: bool) -> dict[str, float]:
    """Expected error and demographic-parity violation of a (randomized) classifier: for a
    randomized one, from ``P(h(x) = 1)``; for a deterministic one, from its labels."""
    if randomized:
        p = predictions.probabilities[:, 1].double()
    else:
        p = predictions.labels.double()
    y = predictions.targets.double()
    groups = predictions.feature(sensitive)
    rates = grouped_mean(p, groups)
    rates = rates[~torch.isnan(rates)]
    return {
        "error": float((p * (1 - y) + (1 - p) * y).mean()),
        "violation": float((rates - p.mean()).abs().max()),
        "dp_difference": float(rates.max() - rates.min()),
    }


def run_point(probe: PaperPlugin, dataset: str, sensitive: str, method: dict[str, Any],
              root: str | None) -> dict[str, float]:
    result = paralab.run({
        "name": f"agarwal2018-{dataset}",
        "dataset": {"name": dataset, "root": root},
        "protocol": {"name": "estimator", "estimator": "logistic_regression",
                     "sensitive": [sensitive]},
        "method": method,
        "auditors": [{"name": "fairness", "sensitive": [sensitive], "bootstrap": 0}],
        "output": None,
    })
    point = expected_point(probe.predictions, sensitive, method["name"] != "unmitigated")
    audit = result.phases[-1]["audits"]["fairness/test"][sensitive]["disparities"]
    point["sampled_dp_difference"] = audit["demographic_parity_difference"]
    return point


def plot(points: dict[str, list[tuple[str, dict[str, float]]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(points), figsize=(5.5 * len(points), 4), squeeze=False)
    for axis, (dataset, rows) in zip(axes[0], points.items()):
        eg = [(r["violation"], r["error"], label) for label, r in rows if label != "unmitigated"]
        axis.plot([v for v, _, _ in eg], [e for _, e, _ in eg], "o-",
                  label="exponentiated gradient (DP)")
        for violation, error, label in eg:
            axis.annotate(label, (violation, error), fontsize=7, xytext=(3, 3),
                          textcoords="offset points")
        base = next(r for label, r in rows if label == "unmitigated")
        axis.plot([base["violation"]], [base["error"]], "s", color="black",
                  label="unmitigated logistic regression")
        axis.set_xlabel("DP violation  max_a |E[h|A=a] - E[h]|  (test)")
        axis.set_ylabel("error (test)")
        axis.set_title(dataset)
        axis.legend(fontsize=7)
    figure.suptitle("Agarwal et al. 2018: error vs disparity, paralab + fairlearn")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def reproduce(quick: bool, datasets: tuple[str, ...] = ("adult", "compas"),
              epsilons: tuple[float, ...] | None = None) -> dict[str, float]:
    """Every point of both trade-offs. ``quick``: Adult with 5,000 training rows, four
    epsilons, 10 iterations of exponentiated gradient (instead of 50)."""
    import warnings

    root_folder = os.environ.get("PARALAB_DATA")
    epsilons = epsilons or (EPS_QUICK if quick else EPS_FULL)
    names = {"adult": ("adult_sample" if quick else "adult", "sex"),
             "compas": ("compas_black_white", "race")}
    chosen = dict(names[name] for name in datasets)
    registry = paralab.get_registry()
    probe = PaperPlugin()
    registry.add("agarwal2018_paper", probe)
    ours: dict[str, float] = {}
    points: dict[str, list[tuple[str, dict[str, float]]]] = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for dataset, sensitive in chosen.items():
                root = None
                if root_folder:
                    root = str(Path(root_folder) / ("compas" if "compas" in dataset else "adult"))
                rows = [("unmitigated", run_point(probe, dataset, sensitive, {"name": "unmitigated"},
                                                  root))]
                for eps in epsilons:
                    method = {"name": "exponentiated_gradient", "difference_bound": eps,
                              "eps": eps, "max_iter": 10 if quick else 50}
                    rows.append((f"eps={eps}", run_point(probe, dataset, sensitive, method, root)))
                points[dataset] = rows
                tag = "compas" if "compas" in dataset else "adult"
                for label, row in rows:
                    key = "unmitigated" if label == "unmitigated" else f"eg_{label}"
                    for name, value in row.items():
                        ours[f"{tag}/{key}/{name}"] = value
    finally:
        registry.remove("agarwal2018_paper")
    plot(points, OUTPUT / "tradeoff.png")
    return ours
