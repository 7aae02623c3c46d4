"""The ``audit`` protocol: audits of decisions that already exist (no model in the run).

The reference for COMPAS is ProPublica's own analysis notebook ("Compas Analysis.ipynb" in
propublica/compas-analysis): its truth tables of COMPAS's "higher risk" (Medium or High)
against two-year recidivism, computed from ``cox-parsed.csv`` over 7,214 people, which is the
population of the two-year file unfiltered. Their counts are written out here.
"""

from __future__ import annotations

import csv
import random
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

import paralab
from paralab import SpecError, load_dataset
from paralab_fairness.table import FairnessWarning, fairness_table

# ProPublica's truth tables: (low risk & survived, high & survived, low & recidivated,
# high & recidivated), i.e. (tn, fp, fn, tp) with "higher risk" the positive decision.
PROPUBLICA = {
    "African-American": (990, 805, 532, 1369),
    "Caucasian": (1139, 349, 461, 505),
}
PROPUBLICA_ALL = (2681, 1282, 1216, 2035)


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.filterwarnings("ignore", category=FairnessWarning)


def audit_spec(dataset: Any, method: dict[str, Any], **protocol: Any) -> dict[str, Any]:
    return {"name": "audit", "dataset": dataset, "model": None, "output": None,
            "protocol": {"name": "audit", **protocol}, "method": method,
            "metrics": ["accuracy"],
            "auditors": [{"name": "fairness", "sensitive": "race", "bootstrap": 0}]}


HIGHER_RISK = {"name": "positive_labels", "column": "score_text", "labels": ["Medium", "High"]}


def race_table(result: Any, split: str = "all") -> dict[str, Any]:
    return result.phases[-1]["audits"][f"fairness/{split}"]["race"]


def test_compas_scores_give_propublicas_truth_tables_exactly(data_root: Path) -> None:
    result = paralab.run(audit_spec({"name": "compas", "filter": "none"}, HIGHER_RISK))
    assert result.status == "completed"
    table = race_table(result)
    groups = table["groups"]
    for race, (tn, fp, fn, tp) in PROPUBLICA.items():
        at = groups.index(race)
        assert table["metrics"]["count"][at] == tn + fp + fn + tp
        assert table["denominators"]["false_positive_rate"][at] == tn + fp
        assert table["denominators"]["false_negative_rate"][at] == fn + tp
        assert table["metrics"]["false_positive_rate"][at] == pytest.approx(fp / (tn + fp), abs=1e-12)
        assert table["metrics"]["false_negative_rate"][at] == pytest.approx(fn / (fn + tp), abs=1e-12)
    # The notebook's rounded figures, as the article quotes them.
    fpr = dict(zip(groups, table["metrics"]["false_positive_rate"]))
    fnr = dict(zip(groups, table["metrics"]["false_negative_rate"]))
    assert round(100 * fpr["African-American"], 2) == 44.85
    assert round(100 * fpr["Caucasian"], 2) == 23.45
    assert round(100 * fnr["African-American"], 2) == 27.99
    assert round(100 * fnr["Caucasian"], 2) == 47.72
    tn, fp, fn, tp = PROPUBLICA_ALL
    assert result.metrics["all/accuracy"] == pytest.approx((tn + tp) / (tn + fp + fn + tp), abs=1e-6)
    assert result.phases[-1]["info"]["positive"] == fp + tp


def test_the_default_filter_keeps_propublicas_regression_rows(data_root: Path) -> None:
    filtered = load_dataset("compas")
    everyone = load_dataset("compas", filter="none")
    assert len(filtered.y) == 6172 and len(everyone.y) == 7214
    assert set(filtered.features["id"].tolist()) < set(everyone.features["id"].tolist())
    assert everyone.categories["score_text"] == ("Low", "Medium", "High")
    # COMPAS's outputs are features for audits, never model inputs.
    assert not [name for name in everyone.feature_names if "score" in name]
    with pytest.raises(SpecError, match="filter"):
        paralab.run(audit_spec({"name": "compas", "filter": "some"}, HIGHER_RISK))


def test_small_groups_keep_their_n_and_intervals_and_disparities_name_their_groups(
        data_root: Path) -> None:
    result = paralab.run(audit_spec({"name": "compas", "filter": "none"}, HIGHER_RISK))
    table = race_table(result)
    groups = table["groups"]
    assert table["excluded"] == ["Native American"]  # 18 people: under the default 30
    native = groups.index("Native American")
    assert table["metrics"]["count"][native] == 18  # still reported, with its n
    low, high = table["rate_intervals"]["false_negative_rate"][native]
    assert high - low > 0.3  # and an interval that says how little 18 rows tell
    fnr = dict(zip(groups, table["metrics"]["false_negative_rate"]))
    compared = {g: v for g, v in fnr.items() if g != "Native American"}
    assert table["set_by"]["equal_opportunity_difference"] == [
        min(compared, key=compared.get), max(compared, key=compared.get)]  # TPR = 1 - FNR
    everyone = paralab.run({**audit_spec({"name": "compas", "filter": "none"}, HIGHER_RISK),
                            "auditors": [{"name": "fairness", "sensitive": "race",
                                          "bootstrap": 0, "min_group_size": 0}]})
    assert race_table(everyone)["excluded"] == []


def test_wilson_intervals_equal_scipys() -> None:
    stats = pytest.importorskip("scipy.stats")
    y_true = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1])
    y_pred = torch.tensor([1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 1])
    group = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1])
    table = fairness_table(y_true, y_pred, {"g": group}, categories={"g": ["a", "b"]},
                           bootstrap=0, confidence=0.9)
    for at, rows in enumerate((group == 0, group == 1)):
        truth, pred = y_true[rows], y_pred[rows]
        k, n = int(((pred == 0) & (truth == 1)).sum()), int((truth == 1).sum())
        expected = stats.binomtest(k, n).proportion_ci(confidence_level=0.9, method="wilson")
        low, high = table.rate_intervals["false_negative_rate"][at]
        assert (low, high) == pytest.approx((expected.low, expected.high), abs=1e-12)
        assert table.denominators["false_negative_rate"][at] == n


def write_predictions(path: Path, rows: list[tuple[int, str]], column: str = "score") -> Path:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["id", column])
        writer.writerows(rows)
    return path


def test_a_csv_of_predictions_is_joined_on_the_id_and_audited_like_the_column(
        data_root: Path, tmp_path: Path) -> None:
    dataset = load_dataset("compas", filter="none")
    rows = list(zip(dataset.features["id"].tolist(), dataset.features["decile_score"].tolist()))
    random.Random(0).shuffle(rows)  # the join must not depend on the file's order
    file = write_predictions(tmp_path / "scores.csv", [(i, str(s)) for i, s in rows])
    from_csv = paralab.run(audit_spec({"name": "compas", "filter": "none"},
                                      {"name": "threshold", "column": "score", "at": 5},
                                      predictions=str(file)))
    from_column = paralab.run(audit_spec({"name": "compas", "filter": "none"},
                                         {"name": "threshold", "column": "decile_score",
                                          "at": 5}))
    by_label = paralab.run(audit_spec({"name": "compas", "filter": "none"}, HIGHER_RISK))
    # COMPAS's "Low" is deciles 1-4: all three are the same decisions.
    assert race_table(from_csv)["metrics"] == race_table(from_column)["metrics"]
    assert race_table(from_csv)["metrics"] == race_table(by_label)["metrics"]
    # The other direction decides the complement.
    lows = paralab.run(audit_spec({"name": "compas", "filter": "none"},
                                  {"name": "threshold", "column": "decile_score", "at": 4,
                                   "direction": "at_most"}))
    selected = race_table(lows)["metrics"]["selection_rate"]
    assert selected == pytest.approx([1 - s for s in race_table(by_label)["metrics"]["selection_rate"]])


def test_given_scores_of_the_synthetic_data_are_audited_per_split() -> None:
    spec = audit_spec({"name": "biased_synthetic", "n": 600},
                      {"name": "threshold", "column": "risk_score", "at": 0.5},
                      splits=["train", "test"])
    spec["auditors"] = [{"name": "fairness", "sensitive": "group", "bootstrap": 0}]
    result = paralab.run(spec)
    dataset = load_dataset("biased_synthetic", n=600)
    for split in ("train", "test"):
        rows = dataset.splits[split]
        decided = dataset.features["risk_score"][rows] >= 0.5
        group = dataset.features["group"][rows]
        table = result.phases[-1]["audits"][f"fairness/{split}"]["group"]
        expected = [float(decided[group == g].double().mean()) for g in (0, 1)]
        assert table["metrics"]["selection_rate"] == pytest.approx(expected, abs=1e-12)
        correct = (decided.long() == dataset.y[rows]).double().mean()
        assert result.metrics[f"{split}/accuracy"] == pytest.approx(float(correct), abs=1e-6)


@pytest.mark.parametrize(("method", "protocol", "match"), [
    ({"name": "threshold", "column": "nope"}, {}, r"method.column = 'nope'.*columns: \["),
    ({"name": "threshold", "column": ""}, {}, r"method.column is empty"),
    ({"name": "threshold", "column": "group"}, {}, r"holds labels \['majority', 'minority'\]"),
    ({"name": "positive_labels", "column": "group", "labels": ["nobody"]}, {},
     r"method.labels: \['nobody'\] never occur.*\['majority', 'minority'\]"),
    ({"name": "positive_labels", "column": "risk_score", "labels": ["1"]}, {},
     r"holds numbers, not labels; use method threshold"),
    ({"name": "positive_labels", "column": "group"}, {}, r"labels is empty"),
    ({"name": "threshold", "column": "risk_score"}, {"splits": ["validation"]},
     r"protocol.splits\[0\] = 'validation'.*\['all', 'test', 'train'\]"),
    ({"name": "threshold", "column": "risk_score"}, {"predictions": "no/such.csv"},
     r"protocol.predictions = 'no/such.csv': no such file"),
])
def test_bad_audits_are_spec_errors_naming_the_field(method: dict[str, Any],
                                                     protocol: dict[str, Any],
                                                     match: str) -> None:
    with pytest.raises(SpecError, match=match):
        paralab.run(audit_spec({"name": "biased_synthetic", "n": 200}, method, **protocol))


@pytest.mark.parametrize(("rows", "match"), [
    (lambda ids: [(i, "0.5") for i in ids[1:]], r"of the dataset's 200 ids have no row"),
    (lambda ids: [(i, "0.5") for i in ids] + [(ids[0], "0.1")], r"id \d+ appears twice"),
    (lambda ids: [(i, "0.5") for i in ids] + [(10**9, "0.1")], r"1 rows have ids that"),
    (lambda ids: [(i, "" if i == ids[3] else "0.5") for i in ids], r"has an empty 'score'"),
    (lambda ids: [(i, "nan" if i == ids[3] else "0.5") for i in ids], r"'score' = 'nan'"),
])
def test_a_bad_predictions_file_is_a_spec_error_naming_the_file(tmp_path: Path, rows: Any,
                                                                 match: str) -> None:
    from paralab import host
    from paralab_registry import LoadSettings

    registry = host.make_registry(LoadSettings()).load()
    registry.add("audit_ids_under_test", _WithIds())
    ids = list(range(100, 300))
    file = write_predictions(tmp_path / "p.csv", rows(ids))
    with pytest.raises(SpecError, match=match) as raised:
        paralab.run(audit_spec({"name": "with_ids"},
                               {"name": "threshold", "column": "score"},
                               predictions=str(file)), registry=registry)
    assert "p.csv" in str(raised.value)


def _with_ids(n: int = 200) -> Any:
    """biased_synthetic with a row id column 100.. (what a predictions file joins on)."""
    from paralab_fairness.synthetic import biased_synthetic

    dataset = biased_synthetic(n=n)
    dataset.features["id"] = torch.arange(len(dataset.y)) + 100
    return dataset


class _WithIds:
    PARALAB_API = "1.0"

    @paralab.hookimpl
    def paralab_datasets(self) -> list[Any]:
        return [paralab.DatasetSpec("with_ids", _with_ids, "biased_synthetic with row ids",
                                    {"n": 200}, sensitive=("group", "age_band"))]


def test_every_audited_split_keeps_its_own_group_plot(tmp_path: Path) -> None:
    spec = audit_spec({"name": "biased_synthetic", "n": 600},
                      {"name": "threshold", "column": "risk_score", "at": 0.5},
                      splits=["train", "test"])
    spec.update(output=str(tmp_path), auditors=[{"name": "fairness", "bootstrap": 0}])
    result = paralab.run(spec)
    folder = Path(result.path)
    for split in ("train", "test"):  # one used to overwrite the other
        name = f"fairness_groups_{split}.png"
        assert (folder / name).stat().st_size > 0
        assert result.artifacts[f"fairness_bars_{split}"] == name
    assert not (folder / "fairness_groups.png").exists()
