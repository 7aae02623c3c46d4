"""The few-shot plugin's contracts: declared options, interfaces, what the protocol consumes.

Every bad value is a ``paralab.SpecError`` naming the field, raised before any run folder
exists: single values by the declarations in ``paralab_fewshot/__init__.py``, values that
depend on each other or on the data by the protocol's and the methods' ``validate(run)``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

import paralab
import paralab_fewshot
from paralab import LossSpec, MethodSpec, MiddlewareSpec, hookimpl
from paralab.testing.conformance import declaration_problems
from paralab_fewshot.methods.base import EpisodicMethod
from paralab_fewshot.protocol import Episodic
from tests.fewshot_helpers import digits_spec, fewshot_registry

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest

METHODS = ("protonet", "maml", "fomaml", "anil", "reptile", "finetune", "l2l_maml")


@pytest.fixture(scope="module")
def registry():
    return fewshot_registry()


def components() -> list[Any]:
    return [
        *paralab_fewshot.paralab_protocols(),
        *paralab_fewshot.paralab_methods(),
        *paralab_fewshot.paralab_models(),
    ]


def refused(spec: dict[str, Any], registry: Any, output: Path, match: str) -> None:
    """``spec`` run into ``output`` is a SpecError matching ``match``, and no folder exists."""
    with pytest.raises(paralab.SpecError, match=match):
        paralab.run({**spec, "output": str(output)}, registry=registry)
    assert not output.exists() or not any(output.iterdir())


# ------------------------------------------------------------------------- the declarations


def test_every_component_is_declared_and_its_declaration_matches_its_factory():
    names = {(spec.kind, spec.name) for spec in components()}
    assert names == {("protocol", "episodic"), ("model", "conv4")} | {
        ("method", name) for name in METHODS
    }
    for spec in components():
        assert declaration_problems(spec) == [], f"{spec.kind} {spec.name}"
        # nothing left to the default type inference: each option says what it accepts
        for name, option in spec.declared_options().items():
            assert option.types, f"{spec.kind} {spec.name}.{name} declares no type"


def test_the_protocol_declares_what_it_consumes():
    (protocol,) = paralab_fewshot.paralab_protocols()
    assert protocol.method_interface == "EpisodicMethod"
    assert protocol.applies_losses is True
    assert protocol.middleware_hooks == ()
    assert protocol.uses_model is True
    losses = {spec.name: spec.applies_losses for spec in paralab_fewshot.paralab_methods()}
    assert losses == {name: name != "reptile" for name in METHODS}


def test_the_protocol_and_the_method_base_implement_the_interfaces():
    assert issubclass(Episodic, paralab.Protocol)
    assert issubclass(EpisodicMethod, paralab.EpisodicMethod)
    for spec in paralab_fewshot.paralab_methods():
        assert issubclass(spec.load(), paralab.EpisodicMethod), spec.name


# ----------------------------------------------------- single values, refused by declaration


@pytest.mark.parametrize(
    ("where", "options", "match"),
    [
        ("protocol", {"ways": 1}, r"protocol.ways = 1: must be >= 2"),
        ("protocol", {"shots": 0}, r"protocol.shots = 0: must be >= 1"),
        ("protocol", {"queries": 0}, r"protocol.queries = 0: must be >= 1"),
        ("protocol", {"train_ways": -1}, r"protocol.train_ways = -1: must be >= 0"),
        ("protocol", {"meta_batch": 0}, r"protocol.meta_batch = 0: must be >= 1"),
        ("protocol", {"meta_iterations": 0}, r"protocol.meta_iterations = 0: must be >= 1"),
        ("protocol", {"eval_every": 0}, r"protocol.eval_every = 0: must be >= 1"),
        ("protocol", {"val_episodes": -1}, r"protocol.val_episodes = -1: must be >= 0"),
        ("protocol", {"eval_episodes": 0}, r"protocol.eval_episodes = 0: must be >= 1"),
        ("protocol", {"eval_meta_batch": 0}, r"protocol.eval_meta_batch = 0: must be >= 1"),
        ("protocol", {"ways": 3.0}, r"protocol.ways = 3.0: expected int"),
        ("protocol", {"class_split": [0.5, 0.5]}, r"protocol.class_split = .*at least 3"),
        ("protocol", {"class_split": [0.4, 0.2, 0.2, 0.2]}, r"class_split = .*at most 3"),
        ("protocol", {"class_split": [0.6, -0.1, 0.5]}, r"class_split = .*\[1\] must be >= 0"),
        ("protocol", {"class_split": [0.6, 0.2, float("nan")]}, r"\[2\] must be a finite"),
        ("protocol", {"class_split": [0.6, 0.2, "x"]}, r"class_split = .*\[2\] expected number"),
        ("protocol", {"split_by": 3}, r"protocol.split_by = 3: expected str"),
        ("protocol", {"lake_runs": "yes"}, r"protocol.lake_runs = 'yes': expected bool"),
        ("method", {"name": "protonet", "embedding": "last"}, r"method.embedding = 'last'"),
        ("method", {"name": "protonet", "meta_lr": 0}, r"method.meta_lr = 0: must be > 0"),
        ("method", {"name": "maml", "inner_lr": 0.0}, r"method.inner_lr = 0.0: must be > 0"),
        ("method", {"name": "maml", "inner_lr": float("inf")}, r"inner_lr = inf: must be a fin"),
        ("method", {"name": "maml", "meta_lr": -1e-3}, r"method.meta_lr = -0.001: must be > 0"),
        ("method", {"name": "maml", "inner_steps": 0}, r"method.inner_steps = 0: must be >= 1"),
        ("method", {"name": "maml", "eval_inner_steps": -1}, r"eval_inner_steps = -1: must be"),
        ("method", {"name": "maml", "first_order": 1}, r"method.first_order = 1: expected bool"),
        ("method", {"name": "fomaml", "engine": "fast"}, r"method.engine = 'fast': expected"),
        # ANIL and Reptile have no factored engine: naming it would silently run vmap
        ("method", {"name": "anil", "engine": "factored"}, r"method.engine = 'factored'"),
        ("method", {"name": "reptile", "engine": "factored"}, r"method.engine = 'factored'"),
        ("method", {"name": "reptile", "meta_lr": float("nan")}, r"meta_lr = nan: must be a"),
        ("method", {"name": "finetune", "head_steps": 0}, r"method.head_steps = 0: must be >="),
        ("method", {"name": "finetune", "head_lr": -1.0}, r"method.head_lr = -1.0: must be >"),
        ("method", {"name": "l2l_maml", "inner_steps": 0}, r"method.inner_steps = 0: must be"),
        ("model", {"name": "conv4", "hidden": 0}, r"model.hidden = 0: must be >= 1"),
        ("model", {"name": "conv4", "layers": 0}, r"model.layers = 0: must be >= 1"),
        ("model", {"name": "conv4", "out_features": -1}, r"model.out_features = -1: must be >="),
    ],
)
def test_a_value_outside_its_declaration_is_refused_before_any_folder(
    registry, tmp_path, where, options, match
):
    if where == "protocol":
        spec = digits_spec("protonet", **options)
    else:
        spec = {**digits_spec("protonet"), where: options}
    refused(spec, registry, tmp_path / "runs", match)


def test_every_problem_of_a_spec_is_listed_at_once(registry, tmp_path):
    spec = digits_spec({"name": "maml", "inner_lr": -1.0, "inner_steps": 0}, ways=1, shots=0)
    with pytest.raises(paralab.SpecError) as caught:
        paralab.run({**spec, "output": str(tmp_path)}, registry=registry)
    message = str(caught.value)
    for field in ("protocol.ways", "protocol.shots", "method.inner_lr", "method.inner_steps"):
        assert field in message
    assert not any(tmp_path.iterdir())


# ----------------------------------------- several values or the data, refused by validate


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (
            digits_spec("protonet", class_split=[0.3, 0.3, 0.3]),
            r"protocol: protocol 'episodic' \(paralab_fewshot\): class_split = \[0.3, 0.3, "
            r"0.3\] sums to 0.9",
        ),
        (
            digits_spec("protonet", train_ways=1),
            r"protocol: .*train_ways = 1: a 1-way episode .* use 0 \(the same as ways = 3\)",
        ),
        (
            digits_spec("protonet", train_ways=5),
            r"protocol: .*ways = 5 but the meta_train classes of dataset 'digits' number 4",
        ),
        (
            digits_spec("protonet", shots=10, queries=200),
            r"protocol: .*shots \+ queries = 10 \+ 200 = 210 but class",
        ),
        (
            digits_spec("protonet", split_by="alphabet"),
            r"protocol: .*split_by = 'alphabet': dataset 'digits' has no such feature",
        ),
        (
            {**digits_spec("anil"), "model": {"name": "conv4", "hidden": 4, "out_features": 2}},
            r"method: method 'anil' .*the model's head has 2 outputs but episodes are 3-way",
        ),
        (
            {**digits_spec("reptile"), "model": {"name": "conv4", "hidden": 4, "out_features": 2}},
            r"method: method 'reptile' .*the model has 2 outputs but episodes are 3-way",
        ),
        (
            {**digits_spec("finetune"), "model": {"name": "conv4", "hidden": 4, "out_features": 3}},
            r"method: method 'finetune' .*all 10 dataset classes but the model's head has 3",
        ),
        (
            {**digits_spec({"name": "maml", "engine": "factored"}), "model": "conv4"},
            r"method: method 'maml' .*engine = 'factored' needs an nn.Sequential of Linear",
        ),
        (  # a head whose extra outputs meta-training never learned
            digits_spec("maml", train_ways=2),
            r"method: method 'maml' .*maml meta-trains 2-way, so its head's outputs beyond 2 "
            r"are never meta-learned, but ways = 3 evaluates 3-way",
        ),
        (
            digits_spec("fomaml", lake_runs=True),
            r"method: .*fomaml meta-trains 3-way.*lake_runs = true \(20-way\) evaluates "
            r"20-way.*train_ways = 20",
        ),
    ],
)
def test_options_that_do_not_fit_the_data_are_refused_before_any_folder(
    registry, tmp_path, spec, match
):
    refused(spec, registry, tmp_path / "runs", match)


def test_lake_runs_without_their_files_are_refused_before_any_folder(
    registry, tmp_path, monkeypatch
):
    from paralab.data import cache

    monkeypatch.setattr(cache, "_CACHE", dict(cache._CACHE))  # forget any loaded runs
    for key in [key for key in cache._CACHE if key[0] == "omniglot_runs"]:
        del cache._CACHE[key]
    monkeypatch.setenv("PARALAB_DATA", str(tmp_path / "no-data"))
    spec = digits_spec("protonet", lake_runs=True)
    refused(spec, registry, tmp_path / "runs", r"protocol: .*lake_runs = true needs Lake")


# -------------------------------------------------------- components the protocol would ignore


def test_reptile_refuses_loss_terms_it_could_not_apply(tmp_path):
    class LossPlugin:
        PARALAB_API = "1.0"

        @hookimpl
        def paralab_losses(self):
            return [LossSpec("logit_penalty", lambda: lambda batch: batch.logits.pow(2).mean())]

    registry = fewshot_registry(("fewshot_test_loss", LossPlugin()))
    spec = {**digits_spec("reptile"), "losses": ["logit_penalty"]}
    refused(
        spec,
        registry,
        tmp_path / "runs",
        r"losses\[0\] = 'logit_penalty': method 'reptile' .*adds no loss terms.*methods for "
        r"'episodic' that do: protonet",
    )


@pytest.mark.parametrize("method", ["protonet", "fomaml", "anil", "finetune", "l2l_maml"])
def test_every_other_method_adds_the_loss_terms_to_what_it_optimizes(method):
    """applies_losses=True is honest: the term runs on every outer step and moves the loss."""
    if method == "l2l_maml" and importlib.util.find_spec("learn2learn") is None:
        pytest.skip("learn2learn is not installed")
    calls: list[int] = []

    def logit_penalty(batch):
        calls.append(len(batch.logits))
        return 10.0 * batch.logits.pow(2).mean()

    class LossPlugin:
        PARALAB_API = "1.0"

        @hookimpl
        def paralab_losses(self):
            return [LossSpec("logit_penalty", lambda: logit_penalty)]

    registry = fewshot_registry(("fewshot_test_loss", LossPlugin()))
    spec = digits_spec(
        method, meta_iterations=2, eval_every=2, eval_episodes=10, val_episodes=0, meta_batch=2
    )
    if method == "finetune":
        spec["method"] = {"name": "finetune", "head_steps": 2}
    plain = paralab.run(spec, registry=registry)
    penalised = paralab.run({**spec, "losses": ["logit_penalty"]}, registry=registry)
    assert len(calls) >= 2 and all(rows > 0 for rows in calls)
    assert (
        penalised.phases[0]["metrics"]["meta_train/loss"]
        > plain.phases[0]["metrics"]["meta_train/loss"]
    )


def test_middleware_is_refused_because_the_protocol_passes_no_update_through_it(tmp_path):
    class Identity:
        @hookimpl(wrapper=True)
        def paralab_process_update(self, update):
            return (yield)

    class MiddlewarePlugin:
        PARALAB_API = "1.0"

        @hookimpl
        def paralab_middleware(self):
            return [MiddlewareSpec("identity", lambda: Identity())]

    registry = fewshot_registry(("fewshot_test_middleware", MiddlewarePlugin()))
    spec = {**digits_spec("protonet"), "middleware": ["identity"]}
    refused(
        spec,
        registry,
        tmp_path / "runs",
        r"middleware\[0\] = 'identity'.*protocol 'episodic' \(paralab_fewshot\) never calls",
    )


def test_a_method_lacking_part_of_the_interface_is_refused_at_build():
    """The host checks the method once (what ``execute`` used to check with hasattr)."""

    class HalfMethod:
        def setup(self, run, model, ways, sample): ...

        def meta_step(self, run, model, batch):
            return 0.0

    class MethodPlugin:
        PARALAB_API = "1.0"

        @hookimpl
        def paralab_methods(self):
            return [MethodSpec("half", lambda: HalfMethod(), protocols=("episodic",))]

    registry = fewshot_registry(("fewshot_test_method", MethodPlugin()))
    with pytest.raises(paralab.RunError, match=r"lacks predict of paralab.interfaces.Episodic"):
        paralab.run(digits_spec("half"), registry=registry)
