"""Sensitive features declared only by a plugin's ``DatasetSpec`` are the ones every fairness
component uses by default (issue 22: "DatasetSpec.sensitive is ignored by the auditor").

The test plugin's factory returns a ``SharedDataset`` whose own ``sensitive`` is empty (or
names one feature); only its ``DatasetSpec`` declares the others. Without the host merging the
declaration into the loaded dataset, the auditor would fail with "declares no sensitive
features" (the first test) or audit only the data's own feature (the second).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import paralab
from paralab import DatasetSpec, SharedDataset, hookimpl
from tests.fairness_helpers import fairness_registry

_ROWS = 800


def _data(name: str, own_sensitive: tuple[str, ...]) -> SharedDataset:
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(_ROWS, 4, generator=generator)
    group = (torch.rand(_ROWS, generator=generator) < 0.4).long()
    band = torch.randint(0, 3, (_ROWS,), generator=generator)
    # Labels favour group 0, so the audit has a gap to find.
    y = ((x[:, 0] + 1.2 * (1 - 2 * group.double()).float()) > 0).long()
    order = torch.randperm(_ROWS, generator=generator)
    return SharedDataset(
        name=name, x=x, y=y, splits={"train": order[:500], "test": order[500:]},
        features={"group": group, "band": band, "batch": torch.arange(_ROWS) % 2},
        categories={"group": ("g0", "g1"), "band": ("b0", "b1", "b2")},
        sensitive=own_sensitive,
    )


def spec_only() -> SharedDataset:
    """The data declares no sensitive feature itself."""
    return _data("declared_by_spec_only", ())


def spec_and_data() -> SharedDataset:
    """The data declares ``band``; its spec adds ``group``."""
    return _data("declared_by_spec_and_data", ("band",))


def undeclared() -> SharedDataset:
    return _data("declared_nowhere", ())


class DeclaringPlugin:
    PARALAB_API = "1.0"

    @hookimpl
    def paralab_datasets(self) -> list[DatasetSpec]:
        return [
            DatasetSpec("declared_by_spec_only", spec_only, "sensitive only in its spec", {},
                        sensitive=("group", "band")),
            DatasetSpec("declared_by_spec_and_data", spec_and_data, "band in the data, group "
                        "in the spec", {}, sensitive=("group",)),
            DatasetSpec("declared_nowhere", undeclared, "no sensitive declaration", {}),
        ]


def _run(dataset: str, **extra: object) -> tuple[paralab.Result, list]:
    with fairness_registry(("declaring_plugin", DeclaringPlugin())) as (_, probe):
        result = paralab.run({
            "dataset": dataset, "model": {"name": "mlp", "hidden": [8]},
            "protocol": {"name": "supervised", "epochs": 2, "batch_size": 100},
            "method": {"name": "adam", "lr": 0.02}, "device": "cpu", "output": None,
            "auditors": [{"name": "fairness", "bootstrap": 0, "min_group_size": 0}],
            **extra,
        })
    return result, probe.evaluations


def _selection_rates(labels: np.ndarray, codes: np.ndarray) -> list[float]:
    return [float(labels[codes == code].mean()) for code in np.unique(codes)]


def test_features_declared_only_by_the_spec_are_audited_by_default() -> None:
    result, evaluations = _run(
        "declared_by_spec_only",
        metrics=["accuracy", "demographic_parity_difference"],
        losses=[{"name": "fairness_penalty", "weight": 0.1}],
    )
    audit = result.phases[-1]["audits"]["fairness/test"]
    assert set(audit) == {"group", "band", "group*band"}
    assert audit["group"]["groups"] == ["g0", "g1"]
    predictions = evaluations[-1].predictions
    labels = predictions.labels.numpy()
    for name in ("group", "band"):
        codes = predictions.feature(name).numpy()
        assert audit[name]["metrics"]["selection_rate"] == pytest.approx(
            _selection_rates(labels, codes), abs=1e-12)
    # The metric reads the spec's first declared feature, as the auditor's "group" table.
    rates = _selection_rates(labels, predictions.feature("group").numpy())
    assert result.metrics["test/demographic_parity_difference"] == pytest.approx(
        max(rates) - min(rates), abs=1e-12)
    assert audit["group"]["disparities"]["demographic_parity_difference"] == pytest.approx(
        max(rates) - min(rates), abs=1e-12)


def test_the_spec_adds_to_what_the_data_declares() -> None:
    result, _ = _run("declared_by_spec_and_data")
    audit = result.phases[-1]["audits"]["fairness/test"]
    assert set(audit) == {"band", "group", "band*group"}  # the data's first, then the spec's


def test_a_dataset_declaring_nothing_still_needs_the_option() -> None:
    with pytest.raises(paralab.SpecError, match="'declared_nowhere' declares no sensitive"):
        _run("declared_nowhere")
    result, _ = _run("declared_nowhere", auditors=[
        {"name": "fairness", "bootstrap": 0, "sensitive": "group"}])
    assert set(result.phases[-1]["audits"]["fairness/test"]) == {"group"}
