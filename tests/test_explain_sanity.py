"""Sanity checks (Adebayo et al. 2018): attributions of a trained model against those of the
same model with its parameters re-initialised."""

from __future__ import annotations

import pytest
import torch

import paralab
import paralab_explain
from paralab.testing import TinyDataPlugin, isolated_registry
from paralab_explain.errors import ExplainError
from paralab_explain.explainers import explain
from paralab_explain.sanity import layers, parameter_randomization, rank_correlation
from tests.explain_helpers import trained_mlp


def test_rank_correlation_equals_scipy_spearman():
    stats = pytest.importorskip("scipy.stats")
    generator = torch.Generator().manual_seed(0)
    first = torch.randn(6, 20, generator=generator)
    second = first + torch.randn(6, 20, generator=generator)
    ours = rank_correlation(first, second)
    for row in range(6):
        expected = stats.spearmanr(first[row].numpy(), second[row].numpy()).statistic
        assert float(ours[row]) == pytest.approx(expected, abs=1e-12)
    assert bool(rank_correlation(torch.ones(1, 5), first[:1, :5]).isnan().all())


def _attribute(method: str):
    model, data = trained_mlp("wine")
    x = data.x[data.splits["test"][:30]]
    target = model(x).argmax(dim=1)

    def attribute(candidate: torch.nn.Module) -> torch.Tensor:
        return explain(candidate, x, method=method, target=target, baseline="zeros").values

    return model, attribute


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients"])
def test_no_op_randomization_keeps_the_ranking_and_real_randomization_breaks_it(method):
    model, attribute = _attribute(method)
    before = [p.detach().clone() for p in model.parameters()]
    control = parameter_randomization(model, attribute, randomization="none")
    assert control["rank_correlation_abs"] == pytest.approx(1.0)
    assert control["rank_correlation"] == pytest.approx(1.0)
    full = parameter_randomization(model, attribute, randomization="full", seed=0)
    # saliency of a random network is unrelated to the trained one's; integrated gradients keep
    # part of the ranking through their (x - baseline) factor, as the paper found for
    # gradient x input
    assert full["rank_correlation_abs"] < (0.3 if method == "saliency" else 0.6)
    assert full["rank_correlation_abs"] < control["rank_correlation_abs"] - 0.4
    # the run's model itself is untouched
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_cascading_goes_from_the_output_layer_to_the_input():
    model, attribute = _attribute("saliency")
    names = [name for name, _ in layers(model)]
    assert len(names) == 2
    cascade = parameter_randomization(model, attribute, randomization="cascading", seed=0)
    assert [step["layer"] for step in cascade["steps"]] == names[::-1]
    full = parameter_randomization(model, attribute, randomization="full", seed=0)
    assert cascade["rank_correlation_abs"] == pytest.approx(full["rank_correlation_abs"])
    independent = parameter_randomization(model, attribute, randomization="independent")
    assert [step["layer"] for step in independent["steps"]] == names
    with pytest.raises(ExplainError, match="randomization"):
        parameter_randomization(model, attribute, randomization="shuffle")


def test_randomization_leaves_the_global_random_stream_alone():
    model, attribute = _attribute("saliency")
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    parameter_randomization(model, attribute, randomization="full", seed=9)
    assert torch.equal(torch.rand(4), expected)


def _registry():
    return isolated_registry(("paralab_tiny", TinyDataPlugin()),
                             ("paralab_explain", paralab_explain))


def _spec(randomization: str, **more):
    return {"dataset": "wine", "model": {"name": "mlp", "hidden": [32]}, "device": "cpu",
            "protocol": {"name": "supervised", "epochs": 10, "batch_size": 32},
            "method": {"name": "adam", "lr": 0.01}, "output": None,
            "auditors": [{"name": "sanity", "methods": ["saliency", "integrated_gradients"],
                          "rows": 24, "steps": 16, "randomization": randomization, **more}]}


def test_sanity_auditor_reports_high_for_no_op_and_low_for_randomization():
    full = paralab.run(_spec("full"), registry=_registry()).phases[-1]["audits"]["sanity/test"]
    assert full["rows"] == 24 and full["saliency"]["layers"] == 2
    assert full["saliency"]["randomization"] == "full"
    assert full["saliency"]["rank_correlation_abs"] < 0.4
    assert full["integrated_gradients"]["rank_correlation_abs"] < 0.8
    control_spec = _spec("none")
    control_spec["protocol"]["epochs"] = 2
    control = paralab.run(control_spec, registry=_registry()).phases[-1]["audits"]["sanity/test"]
    for method in ("saliency", "integrated_gradients"):
        assert control[method]["rank_correlation_abs"] == pytest.approx(1.0)


def test_bad_randomization_is_a_spec_error(tmp_path):
    spec = dict(_spec("shuffle"), output=str(tmp_path))
    with pytest.raises(paralab.SpecError, match="randomization"):
        paralab.run(spec, registry=_registry())
    assert list(tmp_path.iterdir()) == []
