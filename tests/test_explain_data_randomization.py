"""The data randomisation test (Adebayo et al. 2018): a re-initialised copy trained on permuted
labels must explain differently from the trained model, and more differently than a control
copy trained the same way on the true labels; the adebayo2018_sanity paper entry's pieces."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import pytest
import torch

import paralab
import paralab_explain
from paralab.papers import find_papers_dir
from paralab.testing import TinyDataPlugin, isolated_registry
from paralab_explain.errors import ExplainError
from paralab_explain.explainers import explain
from paralab_explain.sanity import (
    data_randomization,
    parameter_randomization,
    retrained,
    shuffled_labels,
)
from tests.explain_helpers import trained_mlp


def _setting(method: str = "saliency"):
    model, data = trained_mlp("wine")
    x = data.x[data.splits["test"][:30]]
    target = model(x).argmax(dim=1)

    def attribute(candidate: torch.nn.Module, method: str = method) -> torch.Tensor:
        return explain(candidate, x, method=method, target=target, baseline="zeros").values

    train = data.splits["train"]
    return model, attribute, data.x[train], data.y[train]


def test_shuffled_labels_break_saliency_and_the_true_label_control_keeps_it():
    model, attribute, x, y = _setting()
    before = [p.detach().clone() for p in model.parameters()]
    report = data_randomization(model, {"saliency": attribute}, x, y, epochs=150,
                                batch_size=0, seed=0)
    entry = report["saliency"]
    assert report["shuffled_train_accuracy"] > 0.9  # wine's 142 rows are memorised
    assert report["control_train_accuracy"] > 0.95
    assert report["label_agreement"] < 0.6  # the labels really were permuted
    assert entry["rank_correlation_abs"] < 0.4
    assert entry["control_rank_correlation_abs"] > 0.8
    assert entry["control_rank_correlation_abs"] > entry["rank_correlation_abs"] + 0.4
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_the_same_labels_give_the_control_model_exactly():
    """With "shuffled" labels equal to the true ones the two copies are one model: the test
    compares like with like, and nothing but the labels differs between them."""
    model, attribute, x, y = _setting()
    first, accuracy = retrained(model, x, y, epochs=20, lr=0.01, batch_size=32, seed=4)
    again, _ = retrained(model, x, y, epochs=20, lr=0.01, batch_size=32, seed=4)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), again.parameters()))
    assert 0.0 <= accuracy <= 1.0
    assert sorted(shuffled_labels(y, 0).tolist()) == sorted(y.tolist())
    assert not torch.equal(shuffled_labels(y, 0), y)


def test_retraining_leaves_the_global_random_stream_alone():
    model, attribute, x, y = _setting()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    retrained(model, x, y, epochs=2, lr=0.01, batch_size=16, seed=1)
    assert torch.equal(torch.rand(3), expected)


def test_parameter_randomization_refuses_data():
    model, attribute, _, _ = _setting()
    with pytest.raises(ExplainError, match="data_randomization"):
        parameter_randomization(model, attribute, randomization="data")


def _registry():
    return isolated_registry(("paralab_tiny", TinyDataPlugin()),
                             ("paralab_explain", paralab_explain))


def _spec(**more):
    return {"dataset": "wine", "model": {"name": "mlp", "hidden": [32]}, "device": "cpu",
            "protocol": {"name": "supervised", "epochs": 15, "batch_size": 32},
            "method": {"name": "adam", "lr": 0.01}, "output": None,
            "auditors": [{"name": "sanity", "methods": ["saliency", "integrated_gradients"],
                          "rows": 24, "steps": 16, "randomization": "data",
                          "data_epochs": 100, "data_batch_size": 0, **more}]}


def test_sanity_auditor_runs_the_data_randomization_test():
    audit = paralab.run(_spec(), registry=_registry()).phases[-1]["audits"]["sanity/test"]
    assert audit["randomization"] == "data" and audit["rows"] == 24
    assert audit["train_rows"] == 142
    saliency = audit["saliency"]
    assert saliency["rank_correlation_abs"] < saliency["control_rank_correlation_abs"] - 0.3
    ig = audit["integrated_gradients"]
    assert ig["rank_correlation_abs"] < ig["control_rank_correlation_abs"]


def test_unknown_train_split_is_a_spec_error():
    with pytest.raises(paralab.SpecError, match="train_split"):
        paralab.run(_spec(train_split="nope"), registry=_registry())


def _paper():
    folder = Path(find_papers_dir()) / "adebayo2018_sanity"
    spec = importlib.util.spec_from_file_location("adebayo2018_reproduce",
                                                  folder / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, tomllib.loads((folder / "paper.toml").read_text("utf-8"))


def test_paper_entry_produces_every_claimed_metric_and_its_orderings_hold():
    """One dataset of the quick setting: every claim and ordering on it is produced and the
    qualitative findings (orderings, the saliency thresholds) hold."""
    module, config = _paper()
    ours = module.sanity("breast_cancer", hidden=(32, 32), epochs=100, rows=16,
                         retrain_epochs=150)
    claimed = {c["metric"] for c in config["claims"]}
    for ordering in config["orderings"]:
        claimed |= set(ordering["metrics"])
    assert {m for m in claimed if "/breast_cancer/" in m} <= set(ours)
    assert {m.replace("/digits/", "/breast_cancer/") for m in claimed} <= set(ours)
    for ordering in config["orderings"]:
        metrics = ordering["metrics"]
        if "/breast_cancer/" in metrics[0]:
            values = [ours[m] for m in metrics]
            assert values == sorted(values, reverse=True), metrics
    assert ours["data/breast_cancer/saliency"] < 0.5
    assert ours["model/breast_cancer/saliency_all_layers"] < 0.5


def test_data_options_without_data_randomization_are_a_spec_error(tmp_path: Path) -> None:
    """``data_epochs`` with ``randomization = "cascading"`` would silently do nothing."""
    spec = _spec(randomization="cascading")
    spec["output"] = str(tmp_path)
    with pytest.raises(paralab.SpecError, match=(
            r"auditors\[0\]\.data_epochs: auditor 'sanity' .* only when randomization = "
            r"'data', and here randomization = 'cascading'")) as raised:
        paralab.run(spec, registry=_registry())
    assert "data_batch_size" in str(raised.value)  # each unused option is named
    assert list(tmp_path.iterdir()) == []
    declared = _registry().component("auditor", "sanity").describe()["used_when"]
    assert declared["data_lr"] == {"randomization": ["data"]}


def test_used_when_must_name_declared_options() -> None:
    with pytest.raises(ValueError, match=r"used_when names \['colour'\]"):
        paralab.MetricSpec("m", lambda: None, options={"mode": "a"},
                           used_when={"mode": {"colour": ("red",)}})
