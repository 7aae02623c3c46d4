"""Knowledge base files and the semantic loss: closed forms against brute-force weighted
model counting by the logic engine, and the hierarchy DAG from a knowledge file."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

from paralab_neurosymbolic.knowledge import KnowledgeBase, KnowledgeError
from paralab_neurosymbolic.logic import Program, Query
from paralab_neurosymbolic.semantic import (
    HierarchyWorlds,
    SemanticLoss,
    exactly_one_log_probability,
)


def test_builtin_digit_hierarchy_round_trips_through_both_formats(tmp_path: Path) -> None:
    kb = KnowledgeBase.load("digits")
    assert kb.leaves() == [str(d) for d in range(10)]
    assert kb.ancestors("3") == {"odd", "small", "number"}
    assert kb.graph.nodes["7"]["type"] == "digit_class"
    for name in ("kb.json", "kb.kb"):
        again = KnowledgeBase.load(kb.save(tmp_path / name))
        assert again.facts() == kb.facts()
        assert again.graph.nodes["7"]["type"] == "digit_class"
    # The text form is a logic program: the facts join rules.
    program = Program.parse(kb.to_program()).extend("super(X, Y) :- is_a(X, Z), is_a(Z, Y).")
    assert Query(program, "super('4', number)").probability({}).item() == 1.0


def test_typed_relations_share_entities() -> None:
    kb = KnowledgeBase.from_text("capital(paris, france).\nin(paris, france).\ntype(paris, city).")
    assert kb.facts() == [("capital", "paris", "france"), ("in", "paris", "france")]
    assert kb.relations == ["capital", "in"]
    with pytest.raises(KnowledgeError, match="no 'is_a' facts; relations: capital, in"):
        kb.hierarchy()


def test_bad_knowledge_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeError, match="does not exist.*built-in name: digits"):
        KnowledgeBase.load(tmp_path / "missing.kb")
    cyclic = tmp_path / "cyclic.kb"
    cyclic.write_text("is_a(a, b).\nis_a(b, c).\nis_a(c, a).\n")
    with pytest.raises(KnowledgeError, match=r"cyclic.kb has a cycle .*must be a DAG"):
        KnowledgeBase.load(cyclic).hierarchy()
    rule = tmp_path / "rule.kb"
    rule.write_text("is_a(a, b).\nis_a(X, c) :- is_a(X, b).\n")
    with pytest.raises(KnowledgeError, match="rule.kb line 2: only plain facts"):
        KnowledgeBase.load(rule)
    broken = tmp_path / "broken.json"
    broken.write_text('{"nodes": 3}')
    with pytest.raises(KnowledgeError, match="broken.json: not a networkx node-link graph"):
        KnowledgeBase.load(broken)


def brute_force_log_wmc(logits: torch.Tensor, valid: list[tuple[int, ...]]) -> torch.Tensor:
    p = torch.sigmoid(logits.double())
    total = torch.zeros(len(logits), dtype=torch.float64)
    for world in valid:
        x = torch.tensor(world, dtype=torch.float64)
        total += (p**x * (1 - p) ** (1 - x)).prod(-1)
    return total.log()


def test_exactly_one_equals_weighted_model_count_by_the_logic_engine() -> None:
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0)) * 2
    ones = [w for w in itertools.product((0, 1), repeat=4) if sum(w) == 1]
    torch.testing.assert_close(
        exactly_one_log_probability(logits).double(), brute_force_log_wmc(logits, ones),
        atol=1e-5, rtol=1e-5,
    )
    # The same count as a program: four Bernoulli neural atoms, one rule per valid world.
    rules = "\n".join(
        "one :- " + ", ".join(f"on(c{i}, {v})" for i, v in enumerate(world)) + "."
        for world in ones
    )
    program = Program.parse("nn(net, [X], V, [0, 1]) :: on(X, V).\n" + rules)
    p = torch.sigmoid(logits)
    feed = {f"on(c{i})": torch.stack([1 - p[:, i], p[:, i]], 1) for i in range(4)}
    by_engine = Query(program, "one").probability(feed)
    torch.testing.assert_close(by_engine.log(), exactly_one_log_probability(logits), atol=1e-5,
                               rtol=1e-5)


def test_hierarchy_semantic_loss_equals_brute_force_over_all_node_worlds() -> None:
    worlds = HierarchyWorlds.from_knowledge(KnowledgeBase.load("digits"))
    assert worlds.nodes[:10] == tuple(str(d) for d in range(10)) and len(worlds.nodes) == 15
    assert worlds.nodes[-1] == "number"
    logits = torch.randn(3, 15, generator=torch.Generator().manual_seed(1))
    valid = [tuple(int(v) for v in row) for row in worlds.mask]
    torch.testing.assert_close(
        worlds.log_probability(logits).double(), brute_force_log_wmc(logits, valid),
        atol=1e-5, rtol=1e-5,
    )
    # Violations: a valid world passes, a leaf without its ancestors does not.
    good = worlds.mask[[3]] * 20 - 10
    bad = good.clone()
    bad[0, worlds.nodes.index("odd")] = -10
    assert worlds.violations(torch.cat([good, bad])).tolist() == [0.0, 1.0]


def test_semantic_loss_term_options_and_gradient(tmp_path: Path) -> None:
    import paralab
    from paralab import Batch

    spec = {"dataset": "digits", "model": "mlp", "output": str(tmp_path),
            "losses": [{"name": "semantic_loss", "constraint": "exactly_two"}]}
    with pytest.raises(paralab.SpecError, match=r"losses\[0\].constraint = 'exactly_two': "
                                                "expected one of 'exactly_one', 'hierarchy'"):
        paralab.run(spec)
    assert not any(tmp_path.iterdir())

    logits = torch.zeros(2, 3, requires_grad=True)
    term = SemanticLoss(constraint="exactly_one", weight=0.5)
    value = term(Batch(torch.zeros(2, 1), torch.zeros(2), torch.arange(2), logits, None))
    # all p = 1/2: P(exactly one of 3) = 3/8
    assert math.isclose(float(value.detach()), -0.5 * math.log(3 / 8), rel_tol=1e-6)
    value.backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) > 0


def test_hierarchy_semantic_loss_alone_drives_outputs_to_valid_worlds() -> None:
    worlds = HierarchyWorlds.from_knowledge(KnowledgeBase.load("digits"))
    logits = torch.randn(64, 15, generator=torch.Generator().manual_seed(0)).requires_grad_()
    optimizer = torch.optim.Adam([logits], lr=0.05)
    assert float(worlds.violations(logits.detach()).mean()) > 0.9
    for _ in range(200):
        loss = -worlds.log_probability(logits).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(worlds.violations(logits.detach()).mean()) == 0.0
