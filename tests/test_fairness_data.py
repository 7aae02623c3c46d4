"""Datasets that know their sensitive features: the real fairness sets and the generator."""

from __future__ import annotations

import pytest
import torch

import paralab
from paralab import load_dataset
from paralab_fairness.synthetic import biased_synthetic


def counts(dataset, feature: str) -> dict[str, int]:
    values = torch.bincount(dataset.features[feature], minlength=len(dataset.categories[feature]))
    return dict(zip(dataset.categories[feature], values.tolist()))


@pytest.mark.data
def test_compas_is_propublicas_filtered_file_with_its_sensitive_features(data_root) -> None:
    compas = load_dataset("compas", root=str(data_root / "compas"))
    assert len(compas) == 6172  # ProPublica's analysis after its filters
    assert compas.sensitive == ("race", "sex", "age_cat")
    assert counts(compas, "race") == {
        "African-American": 3175, "Asian": 31, "Caucasian": 2103, "Hispanic": 509,
        "Native American": 11, "Other": 343,
    }
    assert counts(compas, "sex") == {"Female": 1175, "Male": 4997}
    assert int(compas.y.sum()) == 2809  # two_year_recid among the 6,172


@pytest.mark.data
def test_adult_and_german_credit_declare_their_sensitive_features(data_root) -> None:
    adult = load_dataset("adult", root=str(data_root / "adult"))
    assert (len(adult.splits["train"]), len(adult.splits["test"])) == (30162, 15060)
    assert adult.sensitive == ("sex", "race")
    assert counts(adult, "sex") == {"Female": 14695, "Male": 30527}
    german = load_dataset("german_credit", root=str(data_root / "german_credit"))
    assert len(german) == 1000 and german.sensitive == ("sex", "age_group")
    assert counts(german, "sex") == {"female": 310, "male": 690}
    assert counts(german, "age_group") == {"25_or_under": 190, "over_25": 810}


def selection_gap(dataset) -> float:
    group = dataset.features["group"]
    rates = [dataset.y[group == g].float().mean().item() for g in (0, 1)]
    return rates[0] - rates[1]


def test_biased_synthetic_bias_is_a_knob() -> None:
    fair = biased_synthetic(n=20000, bias=0.0)
    biased = biased_synthetic(n=20000, bias=1.0)
    very = biased_synthetic(n=20000, bias=2.0)
    assert abs(selection_gap(fair)) < 0.03
    assert 0.25 < selection_gap(biased) < selection_gap(very)
    assert biased.sensitive == ("group", "age_band")
    assert biased.categories["group"] == ("majority", "minority")
    minority = biased.features["group"].float().mean().item()
    assert minority == pytest.approx(0.3, abs=0.02)


def test_biased_synthetic_is_seeded_and_can_drop_the_sensitive_columns() -> None:
    first, again = biased_synthetic(n=500, seed=3), biased_synthetic(n=500, seed=3)
    assert torch.equal(first.x, again.x) and torch.equal(first.y, again.y)
    dropped = biased_synthetic(n=500, seed=3, drop_sensitive=True)
    assert dropped.x.shape[1] == first.x.shape[1] - 5
    assert not any(name.startswith("group=") for name in dropped.feature_names)
    # The proxy column still carries the group.
    proxy = dropped.x[:, 0]
    group = dropped.features["group"]
    assert proxy[group == 0].mean() - proxy[group == 1].mean() > 1.5
    # The declared range is checked by the spec, before anything is generated.
    with pytest.raises(paralab.SpecError, match=r"dataset.minority_fraction = 1.5: must be < 1"):
        paralab.run({"dataset": {"name": "biased_synthetic", "minority_fraction": 1.5},
                     "model": "mlp", "output": None})
