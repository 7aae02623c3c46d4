"""Benchmark: a fairness audit with paralab against fairlearn's MetricFrame, same inputs.

Work (issue 6 / BENCHMARKS.md): 1,000,000 and 100,000 rows, three sensitive features whose
intersection has 100 groups (5 x 4 x 5), six metrics (selection rate, accuracy, true positive
rate, false positive rate, false negative rate, precision) per group, and the between-group
differences. fairlearn: ``MetricFrame`` construction + ``by_group`` + ``difference()``. A
pandas ``groupby`` over confusion counts is timed as a second reference. Every value of both
sides is compared (they must agree within 1e-9).

AIF360 (issue 22), when installed: ``ClassificationMetric``'s disparate impact, average odds
difference, Theil and generalised entropy (alpha 2) indices and between-group index for one
binary feature (race codes 0 against 1, the other races left out), against paralab's whole
audit of the same rows, values compared within 1e-9.

Reductions (issue 22): fairlearn's ``ExponentiatedGradient`` (demographic parity, eps 0.01) on
a paralab torch MLP (``ParalabClassifier``: mlp [16], Adam, 5 epochs of 256-row batches per
fit) against the same reduction on scikit-learn's ``MLPClassifier`` (16 hidden units, Adam,
60 iterations), on ``biased_synthetic`` (2,000 rows, bias 1.5): fit time, the train and test
demographic parity differences of the expected predictions, and test accuracy, unmitigated and
mitigated, for both. ``--parts reductions`` runs only this (well under 2 minutes).

Run: ``python benchmarks/fairness.py [--rows 1000000 100000] [--repeats 5]
[--parts audit,aif360,reductions]``. The last line
printed is one JSON object; ``speedup_*`` > 1 means paralab is faster.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch

from paralab_fairness.table import fairness_table

METRICS = ("selection_rate", "accuracy", "true_positive_rate", "false_positive_rate",
           "false_negative_rate", "precision")
CARDINALITIES = {"race": 5, "age": 4, "region": 5}


def make_rows(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Labels, a biased classifier's predictions and three sensitive features."""
    rng = np.random.default_rng(seed)
    features = {name: rng.integers(0, k, n) for name, k in CARDINALITIES.items()}
    base = 0.25 + 0.05 * features["race"] + 0.03 * features["age"]
    y = (rng.random(n) < base).astype(np.int64)
    flip = rng.random(n) < 0.15 + 0.02 * features["region"]
    y_pred = np.where(flip, 1 - y, y).astype(np.int64)
    return {"y": y, "y_pred": y_pred, **features}


def fairlearn_frame(rows: dict[str, np.ndarray]) -> tuple[pd.DataFrame, pd.Series, float]:
    from fairlearn.metrics import (
        MetricFrame,
        false_negative_rate,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score, precision_score

    metrics = {
        "selection_rate": selection_rate,
        "accuracy": accuracy_score,
        "true_positive_rate": lambda t, p: true_positive_rate(t, p, pos_label=1),
        "false_positive_rate": lambda t, p: false_positive_rate(t, p, pos_label=1),
        "false_negative_rate": lambda t, p: false_negative_rate(t, p, pos_label=1),
        "precision": lambda t, p: precision_score(t, p, zero_division=0),
    }
    sensitive = pd.DataFrame({name: rows[name] for name in CARDINALITIES})
    frame = MetricFrame(metrics=metrics, y_true=rows["y"], y_pred=rows["y_pred"],
                        sensitive_features=sensitive)
    return frame.by_group, frame.difference(), float(frame.overall["accuracy"])


def paralab_audit(rows: dict[str, np.ndarray], device: torch.device) -> Any:
    table = fairness_table(
        torch.from_numpy(rows["y"]).to(device),
        torch.from_numpy(rows["y_pred"]).to(device),
        {name: torch.from_numpy(rows[name]).to(device) for name in CARDINALITIES},
    )
    return table


def pandas_groupby(rows: dict[str, np.ndarray]) -> pd.DataFrame:
    """The fast pandas way: count (group, y, y_pred) cells once, derive the rates."""
    frame = pd.DataFrame(rows)
    cells = frame.groupby([*CARDINALITIES, "y", "y_pred"]).size().unstack(["y", "y_pred"],
                                                                           fill_value=0)
    tn, fp, fn, tp = (cells.get((a, b), 0) for a, b in ((0, 0), (0, 1), (1, 0), (1, 1)))
    n = tn + fp + fn + tp
    return pd.DataFrame({
        "selection_rate": (fp + tp) / n, "accuracy": (tn + tp) / n,
        "true_positive_rate": tp / (tp + fn), "false_positive_rate": fp / (fp + tn),
        "false_negative_rate": fn / (tp + fn), "precision": tp / (tp + fp),
    })


def timed(function: Any, repeats: int, sync: Any = None) -> tuple[float, float, Any]:
    """Median and best wall time of ``repeats`` calls, and the last value."""
    times, value = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        value = function()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times), value


def compare(n: int, repeats: int, fairlearn_repeats: int, device: torch.device) -> dict[str, Any]:
    rows = make_rows(n)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    paralab_audit(rows, device)  # warm up (allocations, kernels)
    ours_seconds, ours_best, table = timed(lambda: paralab_audit(rows, device), repeats, sync)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs_seconds, theirs_best, (by_group, differences, fairlearn_accuracy) = timed(
            lambda: fairlearn_frame(rows), fairlearn_repeats)
    pandas_seconds, pandas_best, grouped = timed(lambda: pandas_groupby(rows), repeats)
    # The same audit with one torch thread: on a shared, overloaded machine every parallel
    # region of the 2-thread run can stall on a descheduled thread; this shows how much.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    one_thread_seconds, _, _ = timed(lambda: paralab_audit(rows, device), repeats, sync)
    torch.set_num_threads(threads)
    # Every value, both sides, in the same group order (sorted codes).
    worst = 0.0
    for metric in METRICS:
        ours = np.array(table.metrics[metric])
        worst = max(worst, float(np.max(np.abs(ours - by_group[metric].to_numpy()))))
        worst = max(worst, float(np.max(np.abs(ours - grouped[metric].to_numpy()))))
        ours_difference = float(np.nanmax(ours) - np.nanmin(ours))
        worst = max(worst, abs(ours_difference - float(differences[metric])))
    assert len(table.groups) == len(by_group) == 100
    return {
        "rows": n,
        "groups": len(table.groups),
        "paralab_seconds": round(ours_seconds, 5),
        "fairlearn_metricframe_seconds": round(theirs_seconds, 4),
        "pandas_groupby_seconds": round(pandas_seconds, 4),
        "speedup_vs_metricframe": round(theirs_seconds / ours_seconds, 1),
        "speedup_vs_pandas_groupby": round(pandas_seconds / ours_seconds, 2),
        "paralab_best_seconds": round(ours_best, 5),
        "pandas_groupby_best_seconds": round(pandas_best, 4),
        "speedup_best_vs_metricframe": round(theirs_best / ours_best, 1),
        "paralab_1thread_seconds": round(one_thread_seconds, 5),
        "speedup_1thread_vs_metricframe": round(theirs_seconds / one_thread_seconds, 1),
        "speedup_1thread_vs_pandas_groupby": round(pandas_seconds / one_thread_seconds, 2),
        "paralab_accuracy": table.overall["accuracy"],
        "fairlearn_accuracy": fairlearn_accuracy,
        "max_abs_difference": worst,
        "identical_within_1e-9": worst <= 1e-9,
    }


def compare_aif360(n: int, repeats: int) -> dict[str, Any]:
    """AIF360's ClassificationMetric against paralab on the rows of races 0 and 1."""
    import logging

    logging.getLogger().setLevel(logging.ERROR)  # aif360 logs its missing optional extras
    from aif360.datasets import BinaryLabelDataset
    from aif360.metrics import ClassificationMetric

    rows = make_rows(n)
    keep = rows["race"] < 2
    rows = {key: values[keep] for key, values in rows.items()}

    def theirs() -> dict[str, float]:
        frame = pd.DataFrame({"label": rows["y"], "race": rows["race"]})
        truth = BinaryLabelDataset(df=frame, label_names=["label"],
                                   protected_attribute_names=["race"])
        classified = truth.copy()
        classified.labels = rows["y_pred"].reshape(-1, 1).astype(np.float64)
        metric = ClassificationMetric(truth, classified, unprivileged_groups=[{"race": 1}],
                                      privileged_groups=[{"race": 0}])
        return {"disparate_impact_ratio": metric.disparate_impact(),
                "average_odds_difference": metric.average_odds_difference(),
                "theil_index": metric.theil_index(),
                "generalized_entropy_index": metric.generalized_entropy_index(alpha=2),
                "between_group_generalized_entropy_index":
                    metric.between_group_generalized_entropy_index(alpha=2)}

    def ours() -> dict[str, float]:
        table = fairness_table(torch.from_numpy(rows["y"]), torch.from_numpy(rows["y_pred"]),
                               {"race": torch.from_numpy(rows["race"])}, reference="0")
        return {"disparate_impact_ratio": table.disparities["disparate_impact_ratio"],
                "average_odds_difference": table.disparities["average_odds_difference"],
                "theil_index": table.overall["theil_index"],
                "generalized_entropy_index": table.overall["generalized_entropy_index"],
                "between_group_generalized_entropy_index":
                    table.disparities["between_group_generalized_entropy_index"]}

    ours()
    ours_seconds, _, mine = timed(ours, repeats)
    theirs_seconds, _, reference = timed(theirs, max(1, repeats // 3))
    worst = float(max(abs(float(mine[key]) - float(reference[key])) for key in reference))
    return {"rows": int(keep.sum()), "paralab_seconds": round(ours_seconds, 5),
            "aif360_seconds": round(theirs_seconds, 4),
            "speedup_vs_aif360": round(theirs_seconds / ours_seconds, 1),
            "max_abs_difference": worst, "identical_within_1e-9": worst <= 1e-9}


def compare_reductions(max_iter: int = 30) -> dict[str, Any]:
    """ExponentiatedGradient on a torch model vs on MLPClassifier: time and disparity."""
    from fairlearn.reductions import DemographicParity, ExponentiatedGradient
    from sklearn.base import clone
    from sklearn.neural_network import MLPClassifier

    from paralab_fairness.synthetic import biased_synthetic
    from paralab_fairness.torch_estimator import ParalabClassifier

    data = biased_synthetic(n=2000, bias=1.5)

    def arrays(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = data.splits[split]
        return (data.x[rows].numpy(), data.y[rows].numpy(),
                data.features["group"][rows].numpy())

    (x, y, g), (xt, yt, gt) = arrays("train"), arrays("test")

    def gap(scores: np.ndarray, groups: np.ndarray) -> float:
        return float(max(abs(scores[groups == k].mean() - scores.mean())
                         for k in np.unique(groups)))

    estimators = {
        "torch": ParalabClassifier(model={"name": "mlp", "hidden": [16]},
                                   method={"name": "adam", "lr": 0.02}, epochs=5,
                                   batch_size=256),
        "sklearn": MLPClassifier(hidden_layer_sizes=(16,), max_iter=60, random_state=0),
    }
    result: dict[str, Any] = {"rows_train": len(x), "max_iter": max_iter}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, estimator in estimators.items():
            started = time.perf_counter()
            plain = clone(estimator).fit(x, y)
            result[f"{name}_unmitigated_seconds"] = round(time.perf_counter() - started, 3)
            result[f"{name}_unmitigated_test_dp"] = round(gap(plain.predict_proba(xt)[:, 1],
                                                              gt), 4)
            result[f"{name}_unmitigated_test_accuracy"] = round(
                float((plain.predict(xt) == yt).mean()), 4)
            started = time.perf_counter()
            mitigator = ExponentiatedGradient(estimator, DemographicParity(), eps=0.01,
                                              max_iter=max_iter)
            mitigator.fit(x, y, sensitive_features=g)
            result[f"{name}_eg_seconds"] = round(time.perf_counter() - started, 3)
            result[f"{name}_eg_fits"] = len(mitigator.predictors_)
            result[f"{name}_eg_train_dp"] = round(gap(mitigator._pmf_predict(x)[:, 1], g), 4)
            expected = mitigator._pmf_predict(xt)[:, 1]
            result[f"{name}_eg_test_dp"] = round(gap(expected, gt), 4)
            result[f"{name}_eg_test_accuracy"] = round(float(((expected > 0.5) == yt).mean()),
                                                       4)
    result["eg_speedup_torch_vs_sklearn"] = round(
        result["sklearn_eg_seconds"] / result["torch_eg_seconds"], 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 100_000])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--fairlearn-repeats", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--parts", default="audit,aif360,reductions",
                        help="what to compare: audit (MetricFrame), aif360, reductions")
    arguments = parser.parse_args()
    parts = set(arguments.parts.split(","))
    torch.set_num_threads(2)
    device = torch.device("cuda" if arguments.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if arguments.device == "auto" else arguments.device))
    report: dict[str, Any] = {"benchmark": "fairness", "device": str(device), "torch_threads": 2}
    for n in arguments.rows if "audit" in parts else ():
        result = compare(n, arguments.repeats, arguments.fairlearn_repeats, device)
        print(json.dumps(result))
        tag = f"{n // 1000}k" if n < 1_000_000 else f"{n // 1_000_000}m"
        report.update({f"{key}_{tag}": value for key, value in result.items() if key != "rows"})
    try:
        import aif360  # noqa: F401
    except ImportError:
        report["aif360"] = "not installed"
    if "aif360" in parts and "aif360" not in report:
        result = compare_aif360(min(arguments.rows), arguments.repeats)
        print(json.dumps({"aif360": result}))
        report.update({f"aif360_{key}": value for key, value in result.items()})
    if "reductions" in parts:
        result = compare_reductions()
        print(json.dumps({"reductions": result}))
        report.update({f"reductions_{key}": value for key, value in result.items()})
    report["identical_within_1e-9"] = all(
        value for key, value in report.items()
        if key.startswith(("identical_within_1e-9_", "aif360_identical_within_1e-9"))
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
