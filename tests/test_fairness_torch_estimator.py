"""fairlearn's reductions and post-processing on a paralab torch model (``ParalabClassifier``
and ``estimator = 'paralab_model'``): sample weights enter the loss, and exponentiated gradient
meets its constraint as it does on scikit-learn's MLPClassifier."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from fairlearn.postprocessing import ThresholdOptimizer
from fairlearn.reductions import DemographicParity, ExponentiatedGradient, GridSearch
from sklearn.base import clone
from sklearn.neural_network import MLPClassifier

import paralab
from paralab_fairness.synthetic import biased_synthetic
from paralab_fairness.torch_estimator import ParalabClassifier, Shared
from tests.fairness_helpers import fairness_registry

NETWORK = {"name": "mlp", "hidden": [16]}
TRAINER = {"name": "adam", "lr": 0.02}


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.filterwarnings("ignore", module="fairlearn")
    warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dataset = biased_synthetic(n=1200, bias=1.5)
    rows = dataset.splits["train"]
    return (dataset.x[rows].numpy(), dataset.y[rows].numpy(),
            dataset.features["group"][rows].numpy())


def classifier(**options) -> ParalabClassifier:
    return ParalabClassifier(model=NETWORK, method=TRAINER, **{"epochs": 10, **options})


def parity_gap(scores: np.ndarray, groups: np.ndarray) -> float:
    """fairlearn's DemographicParity moment: the largest |E[h | g] - E[h]|."""
    return max(abs(scores[groups == g].mean() - scores.mean()) for g in np.unique(groups))


def test_integer_weights_train_the_model_that_duplicated_rows_train(data) -> None:
    """With one full batch the weighted loss is the weighted risk exactly: weight 2 is a
    duplicated row, weight 0 a removed one, so both fits reach the same network."""
    x, y, _ = data
    weights = np.random.default_rng(0).integers(0, 3, len(x))
    weighted = classifier(batch_size=0).fit(x, y, sample_weight=weights)
    repeated = np.repeat(np.arange(len(x)), weights)
    duplicated = classifier(batch_size=0).fit(x[repeated], y[repeated])
    plain = classifier(batch_size=0).fit(x, y)
    p_weighted, p_duplicated = weighted.predict_proba(x), duplicated.predict_proba(x)
    assert np.abs(p_weighted - p_duplicated).max() < 1e-4
    # ... and weights change the fit: the unweighted model differs from both.
    assert np.abs(plain.predict_proba(x) - p_weighted).max() > 1e-2


def test_weights_steer_minibatch_training_towards_the_weighted_rows(data) -> None:
    """Up-weighting the positive rows raises the predicted positive rate."""
    x, y, _ = data
    plain = classifier().fit(x, y)
    heavy = classifier().fit(x, y, sample_weight=np.where(y == 1, 10.0, 1.0))
    assert heavy.predict(x).mean() > plain.predict(x).mean() + 0.1


def test_fit_is_seeded_and_clone_keeps_the_parameters(data) -> None:
    x, y, _ = data
    first = classifier(seed=3).fit(x, y)
    again = clone(first).fit(x, y)
    assert clone(first).get_params() == first.get_params()
    np.testing.assert_array_equal(first.predict_proba(x), again.predict_proba(x))
    assert first.score(x, y) > 0.7
    assert list(first.classes_) == [0, 1]


def test_bad_components_and_weights_name_what_is_wrong(data) -> None:
    x, y, _ = data
    with pytest.raises(ValueError, match="option 'hiden'"):
        ParalabClassifier(model={"name": "mlp", "hiden": [3]}).fit(x, y)
    with pytest.raises(ValueError, match="non-negative"):
        classifier().fit(x, y, sample_weight=-np.ones(len(x)))


def test_exponentiated_gradient_meets_its_bound_on_a_torch_model_as_on_mlpclassifier(
        data) -> None:
    """Agarwal et al.'s guarantee as fairlearn states it: on the training data the randomized
    classifier's demographic parity violation (beyond the moment's ``difference_bound``) is at
    most ``eps`` (here 0.01, and ``best_gap`` is ~0); the equivalent MLPClassifier gives the
    same, and the unmitigated models are far outside it."""
    x, y, groups = data
    bound, eps = 0.01, 0.01
    results = {}
    for name, estimator in {
        "paralab": classifier(batch_size=256, epochs=5),
        "sklearn": MLPClassifier(hidden_layer_sizes=(16,), max_iter=60, random_state=0),
    }.items():
        unmitigated = parity_gap(clone(estimator).fit(x, y).predict_proba(x)[:, 1], groups)
        mitigator = ExponentiatedGradient(estimator, DemographicParity(difference_bound=bound),
                                          eps=eps, max_iter=30)
        mitigator.fit(x, y, sensitive_features=groups)
        expected = mitigator._pmf_predict(x)[:, 1]
        violation = parity_gap(expected, groups) - bound
        accuracy = float(((expected > 0.5) == y).mean())
        results[name] = (unmitigated, violation, accuracy)
        assert violation <= eps + 2 * mitigator.best_gap_, name
        assert violation <= eps, name
        assert unmitigated > 0.15, name
    # The torch model's mitigated accuracy is the scikit-learn one's, within a few points.
    assert abs(results["paralab"][2] - results["sklearn"][2]) < 0.05


def test_grid_search_and_threshold_optimizer_accept_the_torch_model(data) -> None:
    x, y, groups = data
    plain = parity_gap(classifier().fit(x, y).predict(x).astype(float), groups)
    grid = GridSearch(classifier(), DemographicParity(), grid_size=5,
                      constraint_weight=0.95).fit(x, y, sensitive_features=groups)
    assert len(grid.predictors_) == 5
    # Each grid point is a differently weighted fit: the models differ.
    distinct = {tuple(p.predict(x[:50])) for p in grid.predictors_}
    assert len(distinct) > 1
    assert parity_gap(grid.predict(x).astype(float), groups) < plain - 0.1
    post = ThresholdOptimizer(estimator=classifier(), constraints="demographic_parity",
                              predict_method="predict_proba")
    post.fit(x, y, sensitive_features=groups)
    decided = post.predict(x, sensitive_features=groups, random_state=0).astype(float)
    assert parity_gap(decided, groups) < plain / 2


SPEC = {"dataset": {"name": "biased_synthetic", "n": 1200, "bias": 1.5}, "device": "cpu",
        "output": None,
        "protocol": {"name": "estimator", "estimator": "paralab_model", "sensitive": ["group"],
                     "network": NETWORK, "trainer": TRAINER, "epochs": 5},
        "auditors": [{"name": "fairness", "bootstrap": 0, "sensitive": ["group"]}]}


def _gap(result: paralab.Result) -> float:
    audit = result.phases[-1]["audits"]["fairness/test"]["group"]
    return audit["disparities"]["demographic_parity_difference"]


@pytest.mark.parametrize("method", [
    {"name": "exponentiated_gradient", "max_iter": 10},
    {"name": "threshold_optimizer"},
])
def test_spec_mitigates_a_torch_model(method: dict) -> None:
    with fairness_registry():
        baseline = paralab.run({**SPEC, "method": "unmitigated"})
        mitigated = paralab.run({**SPEC, "method": method})
    assert _gap(baseline) > 0.2
    assert _gap(mitigated) < _gap(baseline) / 2
    assert mitigated.metrics["test/accuracy"] > 0.6


@pytest.mark.parametrize(("protocol", "match"), [
    ({"network": {"name": "mlp", "hidden": "x"}}, "option 'hidden'"),
    ({"network": "no_such_model"}, "no_such_model"),
    ({"estimator": "logistic_regression"},
     "protocol.network: protocol 'estimator' .* uses it only when estimator = 'paralab_model'"),
])
def test_spec_errors_name_the_torch_options(protocol: dict, match: str) -> None:
    spec = {**SPEC, "method": "unmitigated",
            "protocol": {**SPEC["protocol"], **protocol}}
    with fairness_registry(), pytest.raises(paralab.SpecError, match=match):
        paralab.run(spec)


def test_the_runs_own_registry_supplies_the_network() -> None:
    """A model only the run's registry knows (``paralab.run(spec, registry=...)``, not the
    process registry) is found at validation and at every fit fairlearn's clones make."""
    import paralab_fairness
    from paralab import ModelSpec, hookimpl
    from paralab.testing.kit import isolated_registry

    class LinearPlugin:
        PARALAB_API = "1.0"

        @hookimpl
        def paralab_models(self) -> list:
            return [ModelSpec("fairness_test_linear", "paralab.models:linear",
                              "A linear head for the test.", {})]

    registry = isolated_registry(("paralab_fairness", paralab_fairness),
                                 ("fairness_test_linear", LinearPlugin()))
    spec = {**SPEC, "method": {"name": "exponentiated_gradient", "max_iter": 5},
            "protocol": {**SPEC["protocol"], "network": "fairness_test_linear"},
            "auditors": []}
    result = paralab.run(spec, registry=registry)
    assert result.metrics["test/accuracy"] > 0.6
    shared = Shared(registry)
    assert clone(ParalabClassifier(registry=shared)).registry is shared  # not deep-copied
