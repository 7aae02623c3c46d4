"""What a DatasetSpec declares holds for the loaded data (the fairness auditor reads it)."""

from __future__ import annotations

import pytest
import torch

import paralab
from paralab import host
from paralab.data.cache import clear_cache, load_dataset
from paralab_registry import LoadSettings


def _groups(n: int = 120) -> paralab.SharedDataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=generator)
    y = (x[:, 0] > 0).long()
    group = (x[:, 1] > 0).long()
    order = torch.randperm(n, generator=generator)
    return paralab.SharedDataset(
        name="declared_groups", x=x, y=y, splits={"train": order[:80], "test": order[80:]},
        features={"group": group}, categories={"group": ("a", "b")})  # sensitive not set here


def _missing() -> paralab.SharedDataset:
    data = _groups()
    data.features.pop("group")
    return data


class _Plugin:
    PARALAB_API = "1.0"

    @paralab.hookimpl
    def paralab_datasets(self):
        return [paralab.DatasetSpec("declared_groups", _groups, "groups", sensitive=("group",)),
                paralab.DatasetSpec("declares_missing", _missing, "lacks its group",
                                    sensitive=("group",))]


@pytest.fixture
def registry():
    clear_cache()
    registry = host.make_registry(LoadSettings()).load()
    registry.add("declarations_under_test", _Plugin())
    yield registry
    clear_cache()


def test_declared_sensitive_features_are_the_datasets(registry) -> None:
    assert load_dataset("declared_groups", registry=registry).sensitive == ("group",)


def test_the_fairness_auditor_audits_a_feature_declared_only_in_the_spec(registry) -> None:
    pytest.importorskip("fairlearn")
    result = paralab.run({"dataset": "declared_groups", "model": "mlp", "output": None,
                          "protocol": {"name": "supervised", "epochs": 2},
                          "auditors": ["fairness"]}, registry=registry)
    audit = result.audits.get("fairness") or result.phases[-1]["audits"]
    assert "group" in repr(audit), audit


def test_a_declared_feature_the_data_lacks_names_the_plugin(registry) -> None:
    with pytest.raises(TypeError, match=r"declares_missing.*declares sensitive features \['group'\]"):
        load_dataset("declares_missing", registry=registry)
