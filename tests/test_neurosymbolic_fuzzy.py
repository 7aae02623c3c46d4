"""The LTN semantics (``semantic_loss`` with ``semantics = "ltn"``): connectives and
quantifiers against LTNtorch's, the exactly_one formula against the same formula written
with LTNtorch's own Variables, Predicates and Quantifiers, and a small fuzzy-logic task."""

from __future__ import annotations

import pytest
import torch

import paralab
from paralab_neurosymbolic.fuzzy import TNORMS, FuzzyLogic, exactly_one_satisfaction

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest


def truths(seed: int, *shape: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    values = torch.rand(*shape, generator=generator, dtype=torch.float64)
    values.view(-1)[:4] = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64)  # the edges
    return values


@pytest.mark.parametrize("stable", [True, False])
@pytest.mark.parametrize("tnorm", TNORMS)
def test_connectives_and_quantifiers_equal_ltntorch(tnorm: str, stable: bool) -> None:
    ltn = pytest.importorskip("ltn")
    ops = ltn.fuzzy_ops
    x, y = truths(0, 7, 5), truths(1, 7, 5)
    ours = FuzzyLogic(tnorm, p_exists=3.0, p_forall=1.5, stable=stable)
    if tnorm == "product":
        theirs = {"and_": ops.AndProd(stable=stable), "or_": ops.OrProbSum(stable=stable),
                  "implies": ops.ImpliesReichenbach(stable=stable)}
    else:
        theirs = {"and_": ops.AndLuk(), "or_": ops.OrLuk(), "implies": ops.ImpliesLuk()}
    for name, op in theirs.items():
        torch.testing.assert_close(getattr(ours, name)(x, y), op(x, y), rtol=0, atol=1e-12)
    torch.testing.assert_close(ours.not_(x), ops.NotStandard()(x), rtol=0, atol=1e-12)
    for dim in (0, 1):
        torch.testing.assert_close(ours.exists(x, dim=dim),
                                   ops.AggregPMean(p=3.0, stable=stable)(x, dim=dim),
                                   rtol=0, atol=1e-12)
        torch.testing.assert_close(ours.forall(x, dim=dim),
                                   ops.AggregPMeanError(p=1.5, stable=stable)(x, dim=dim),
                                   rtol=0, atol=1e-12)


@pytest.mark.parametrize("tnorm", TNORMS)
def test_exactly_one_equals_the_formula_written_in_ltntorch(tnorm: str) -> None:
    # forall x: (exists l: P(x, l)) and (forall l < l2: not (P(x, l) and P(x, l2)))
    ltn = pytest.importorskip("ltn")
    generator = torch.Generator().manual_seed(4)
    features = torch.randn(9, 4, generator=generator)
    weights = torch.randn(4, 6, generator=generator)

    class Truth(torch.nn.Module):
        def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(x @ weights).gather(1, label.long())[:, 0]

    predicate = ltn.Predicate(Truth())
    x = ltn.Variable("x", features)
    label = ltn.Variable("l", torch.arange(6.0)[:, None])
    other = ltn.Variable("l2", torch.arange(6.0)[:, None])
    ops = ltn.fuzzy_ops
    conjunction = ltn.Connective(ops.AndProd() if tnorm == "product" else ops.AndLuk())
    negation = ltn.Connective(ops.NotStandard())
    forall = ltn.Quantifier(ops.AggregPMeanError(p=2), quantifier="f")
    exists = ltn.Quantifier(ops.AggregPMean(p=2), quantifier="e")
    formula = forall(x, conjunction(
        exists(label, predicate(x, label)),
        forall([label, other], negation(conjunction(predicate(x, label), predicate(x, other))),
               cond_vars=[label, other], cond_fn=lambda a, b: a.value < b.value),
    ))
    ours = exactly_one_satisfaction(torch.sigmoid(features @ weights), FuzzyLogic(tnorm))
    torch.testing.assert_close(ours, formula.value.to(ours.dtype), rtol=0, atol=1e-6)


@pytest.mark.parametrize("tnorm", TNORMS)
@pytest.mark.parametrize("p", [2.0, 5.0])
def test_exactly_one_satisfaction_in_closed_form(tnorm: str, p: float) -> None:
    # on crisp rows the formula has a closed form (n = 5 classes, 10 pairs): a one-hot row
    # satisfies "some class" to (1/n)**(1/p) (LTN's exists is a generalised mean) and "at most
    # one" fully; a two-hot row (2/n)**(1/p) and 1 - (1/10)**(1/p); an empty row not at all
    logic = FuzzyLogic(tnorm, p_exists=p, p_forall=p, stable=False)
    one_hot = torch.eye(5, dtype=torch.float64)
    two = one_hot + torch.roll(one_hot, 1, dims=1)
    n, pairs = 5, 10
    expected_one = (1 / n) ** (1 / p)
    some, at_most = (2 / n) ** (1 / p), 1 - (1 / pairs) ** (1 / p)
    expected_two = some * at_most if tnorm == "product" else max(some + at_most - 1, 0.0)
    assert float(exactly_one_satisfaction(one_hot, logic)) == pytest.approx(expected_one)
    assert float(exactly_one_satisfaction(two, logic)) == pytest.approx(expected_two)
    assert float(exactly_one_satisfaction(torch.zeros(5, 5), logic)) == pytest.approx(0.0)
    assert expected_one > expected_two


def test_bad_fuzzy_options() -> None:
    with pytest.raises(ValueError, match="tnorm 'goedel' unknown; choose from product"):
        FuzzyLogic("goedel")
    with pytest.raises(ValueError, match="p must be >= 1"):
        FuzzyLogic(p_exists=0.5)


def supervised(losses: list) -> dict:
    return {
        "name": "ltn",
        "dataset": "digits",
        "model": {"name": "mlp", "hidden": [64]},
        "protocol": {"name": "supervised", "epochs": 3},
        "method": {"name": "adam", "lr": 0.003},
        "losses": losses,
        "metrics": ["accuracy", "exactly_one_violations"],
        "output": None,
        "device": "cpu",
    }


def test_ltn_semantics_enforces_exactly_one_on_digits() -> None:
    # the fuzzy-logic task: a digit classifier whose outputs, read as independent truths,
    # should mark exactly one class; the LTN axiom's satisfaction is maximised beside the
    # cross-entropy. Plain training leaves most rows violating it (measured 0.70; with the
    # axiom: product 0.29, Lukasiewicz 0.15). LTN's exists is a mean: p = 10 makes it and the
    # forall close to max and min, which the crisp check needs (at p = 2 it stays near 0.7)
    plain = paralab.run(supervised([])).metrics
    for tnorm in TNORMS:
        constrained = paralab.run(supervised([{
            "name": "semantic_loss", "semantics": "ltn", "tnorm": tnorm, "weight": 3.0,
            "p_exists": 10.0, "p_forall": 10.0}])).metrics
        assert (constrained["test/exactly_one_violations"]
                < plain["test/exactly_one_violations"] - 0.3), (tnorm, constrained, plain)
        assert constrained["test/accuracy"] >= 0.85


def test_ltn_semantics_refuses_the_hierarchy_constraint(tmp_path) -> None:
    spec = {**supervised([{"name": "semantic_loss", "semantics": "ltn",
                           "constraint": "hierarchy"}]), "output": str(tmp_path)}
    with pytest.raises(paralab.SpecError, match="the LTN semantics has the exactly_one formula"):
        paralab.run(spec)
    with pytest.raises(paralab.SpecError, match="losses\\[0\\].tnorm"):
        paralab.run({**supervised([{"name": "semantic_loss", "tnorm": "min"}]),
                     "output": str(tmp_path)})
    assert not any(tmp_path.iterdir())


def test_declared_choices_equal_the_modules() -> None:
    import paralab_neurosymbolic
    from paralab_neurosymbolic import semantic

    assert paralab_neurosymbolic.TNORMS == TNORMS
    assert paralab_neurosymbolic.SEMANTICS == semantic.SEMANTICS


def test_ltn_options_under_probabilistic_semantics_are_a_spec_error() -> None:
    import paralab

    spec = {"dataset": "digits", "model": "mlp", "output": None,
            "protocol": {"name": "supervised", "epochs": 1},
            "losses": [{"name": "semantic_loss", "tnorm": "lukasiewicz"}]}
    with pytest.raises(paralab.SpecError, match=r"losses\[0\]\.tnorm: .* only when semantics = "
                                                 r"'ltn', and here semantics = 'probabilistic'"):
        paralab.run(spec)
