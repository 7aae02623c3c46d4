"""The ``attributions`` auditor (what drives the decisions of any run) and the options and
checks it shares with ``faithfulness`` (:mod:`paralab_explain.faithfulness_auditor`).

Every option is declared (types, ranges, choices) in :mod:`paralab_explain`, so the spec check
refuses a bad value before anything is built. The host then calls
:meth:`ExplainingAuditor.validate` once the data and model are built (the ``validate(run)``
convention), which checks what only they can tell, and the names a declaration of several types
cannot (``baseline = "median"``, ``samples = "many"``): baseline shape, player count for exact
enumeration, differentiability, sensitive features. A bad option fails before training (and
before the run's folder exists), not at the first evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from paralab import Auditor
from paralab_explain import plots, summaries
from paralab_explain.background import Background, parse_background, resolve_background
from paralab_explain.baselines import resolve_baseline
from paralab_explain.choices import GRADIENT_METHODS, LAYER_METHODS, MAX_PLAYERS
from paralab_explain.convolutional import find_layer, occlusion_shape
from paralab_explain.errors import ExplainError
from paralab_explain.explainers import Attribution, check_method, explain
from paralab_explain.faithfulness import completeness_gap
from paralab_explain.model_output import ClassOutput, require_differentiable
from paralab_explain.permutation import check_sampling
from paralab_explain.players import Players, resolve_players
from paralab_explain.shapley import check_player_count

if TYPE_CHECKING:
    from paralab import Phase, Predictions, RunContext

ADDITIVE = ("integrated_gradients", "deeplift", "gradient_shap", "exact_shapley", "kernel_shap",
            "permutation_shapley", "layer_integrated_gradients")
"""Methods whose attributions should sum to f(x) - f(baseline)."""


class ExplainingAuditor(Auditor):
    """Options and checks shared by the explaining auditors (attributions, faithfulness,
    sanity). Its parameters are the one list of their shared options (``_SHARED`` in
    :mod:`paralab_explain` declares them for the spec); each subclass takes its own options
    and passes the rest on as ``**shared``."""

    name = "explain"

    def __init__(
        self,
        rows: int,
        baseline: Any = None,
        groups: Any = None,
        steps: int = 50,
        integration: str = "gausslegendre",
        samples: Any = None,
        target: str = "predicted",
        output: str = "probability",
        max_players: int = MAX_PLAYERS,
        seed: int = 0,
        background: str | None = None,
        permutations: int = 256,
        antithetic: bool = True,
        target_error: float | None = None,
        stdev: float = 0.1,
        noise_samples: int = 16,
        window: int = 2,
        stride: int = 1,
        layer: str | None = None,
    ) -> None:
        baseline = "mean" if baseline is None else baseline
        self.stdev, self.noise_samples, self.window, self.stride, self.layer = (
            stdev, noise_samples, window, stride, layer)
        samples = "auto" if samples is None else samples
        self.rows, self.baseline_option, self.groups = rows, baseline, groups
        self.steps, self.integration, self.samples = steps, integration, samples
        self.target, self.output, self.max_players, self.seed = target, output, max_players, seed
        self.background_option = background
        self.permutations, self.antithetic, self.target_error = (permutations, antithetic,
                                                                 target_error)
        self.players: Players | None = None
        self.baseline: torch.Tensor | None = None
        self.reference: torch.Tensor | None = None
        self.background: Background | None = None
        """Resolved once in ``validate`` (the same background rows at every phase)."""

    def validate(self, run: RunContext) -> None:
        """Resolve players and baseline on the run's data; probe the model. Fails clearly,
        with an :class:`ExplainError` (a ``ValueError``: the host reports a spec error)."""
        if isinstance(self.samples, str) and self.samples != "auto":
            raise ExplainError(
                f"auditor {self.name!r}: samples = {self.samples!r} unknown; valid: 'auto' or "
                "a number of samples >= 1"
            )
        if not isinstance(run.model, torch.nn.Module):
            raise ExplainError(
                f"auditor {self.name!r} explains the run's torch model, but this run has none "
                f"(protocol {run.spec.protocol.name!r} uses no model); audit a run whose "
                "protocol trains a torch model (supervised, continual, federated, ...)"
            )
        dataset = run.dataset
        info = dataset.info
        flat = dataset.x.reshape(len(dataset), -1)
        train = dataset.splits.get("train")
        self.reference = flat[train] if train is not None else flat
        try:
            self.players = resolve_players(
                self.groups, info.n_features, info.feature_names, info.image_shape
            ).to(dataset.device)
            self.baseline = resolve_baseline(
                self.baseline_option, info.n_features, self.reference, dataset.device
            )
            parse_background(self.background_option)  # a bad name fails before any k-means
            self.background = resolve_background(self.background_option, self.reference,
                                                 seed=self.seed, n_features=info.n_features)
            for method in self.methods:
                if method == "exact_shapley":
                    check_player_count(self.players.count, self.max_players)
                if method == "permutation_shapley":
                    check_sampling(self.permutations, 32, self.antithetic, self.target_error)
                if method in LAYER_METHODS:
                    find_layer(run.model, self.layer)
                if method == "occlusion":
                    occlusion_shape(info.image_shape or info.input_shape, self.window, self.stride)
                if method in GRADIENT_METHODS:
                    function = ClassOutput(run.model, info.input_shape, self.output)
                    require_differentiable(function, flat[:2].float(), method)
        except ExplainError as error:
            raise ExplainError(f"auditor {self.name!r} on dataset {dataset.name!r}: {error}") from None

    @property
    def methods(self) -> Sequence[str]:
        raise NotImplementedError

    def _rows(self, run: RunContext, predictions: Predictions) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions of the explained rows (the same ones at every phase) and their targets."""
        if self.players is None:
            self.validate(run)
        count = min(self.rows, len(predictions))
        generator = torch.Generator().manual_seed(self.seed)
        positions = torch.randperm(len(predictions), generator=generator)[:count].sort().values
        positions = positions.to(predictions.indices.device)
        chosen = predictions.labels if self.target == "predicted" else predictions.targets
        return positions, chosen[positions]

    def _agreement(self, run: RunContext, x: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        """Does ``run.model`` make the audited predictions? A protocol may evaluate another
        predictor (a scikit-learn estimator, per-task heads, transformed inputs); then the
        explanation is of ``run.model``, and the report says so instead of passing silently."""
        was_training = run.model.training
        run.model.eval()
        try:
            with torch.no_grad():
                ours = run.model(x.reshape(len(x), *run.dataset.info.input_shape)).argmax(dim=-1)
        finally:
            run.model.train(was_training)
        agreement = float((ours == labels).float().mean())
        report: dict[str, Any] = {"model_agreement": round(agreement, 6)}
        if agreement < 1.0:
            report["warning"] = (
                f"run.model predicts the audited class for only {agreement:.0%} of the explained "
                "rows: these predictions come (at least partly) from another predictor, and the "
                "attributions explain run.model"
            )
            run.log(f"{self.name}: {report['warning']}")
        return report

    def _explain(self, run: RunContext, method: str, x: torch.Tensor, target: torch.Tensor,
                 model: torch.nn.Module | None = None) -> Attribution:
        """Attributions by ``model`` (default ``run.model``) with the auditor's options."""
        info = run.dataset.info
        return explain(
            model if model is not None else run.model, x.reshape(len(x), *info.input_shape), method=method, target=target,
            baseline=self.baseline, reference=self.reference, steps=self.steps,
            integration=self.integration, samples=self.samples, output=self.output,
            max_players=self.max_players, seed=self.seed, players=self.players,
            feature_names=info.feature_names, background=self.background,
            permutations=self.permutations, antithetic=self.antithetic,
            target_error=self.target_error, stdev=self.stdev, noise_samples=self.noise_samples,
            window=self.window, stride=self.stride, layer=self.layer,
            image_shape=info.image_shape,
        )


class MethodsAuditor(ExplainingAuditor):
    """An explaining auditor that scores several methods (``methods``: one name or a list)."""

    def __init__(self, methods: Sequence[str] | str, rows: int, **shared: Any) -> None:
        super().__init__(rows, **shared)
        self._methods = [methods] if isinstance(methods, str) else list(methods)

    @property
    def methods(self) -> Sequence[str]:
        return self._methods

    def validate(self, run: RunContext) -> None:
        # A list's names are declared choices; one name given as a string is checked here.
        for method in self._methods:
            try:
                check_method(method)
            except ExplainError as error:
                raise ExplainError(f"methods = {method!r}: {error}") from None
        super().validate(run)


def sampling_report(attribution: Attribution) -> dict[str, Any]:
    """Standard errors, orders spent and convergence of a sampled estimate (empty otherwise)."""
    if attribution.standard_error is None:
        return {}
    error = attribution.standard_error
    assert attribution.permutations is not None and attribution.converged is not None
    return {
        "standard_error_max": float(error.max()),
        "standard_error_mean": float(error.mean()),
        "permutations_mean": float(attribution.permutations.float().mean()),
        "converged": float(attribution.converged.float().mean()),
    }


class Attributions(ExplainingAuditor):
    """Attributions of the run's model at every evaluation point: global importance, per
    class, per sensitive group; at the end, plots and the drift across phases."""

    name = "attributions"

    def __init__(
        self,
        method: str = "integrated_gradients",
        rows: int = 64,
        per_group: Sequence[str] | str | None = None,
        plots: bool = True,
        top: int = 10,
        **shared: Any,
    ) -> None:
        """``shared``: the options every explaining auditor takes (see
        :class:`ExplainingAuditor`)."""
        super().__init__(rows, **shared)
        self.method = method
        if isinstance(per_group, str):
            per_group = [per_group]
        self.per_group = None if per_group is None else list(per_group)
        self.plots = plots
        self.top = top
        self.history: dict[str, list[tuple[str, torch.Tensor]]] = {}
        """Per evaluated split (the same rows each time): (phase label, global importance)."""
        self.per_class_history: dict[str, torch.Tensor] = {}
        self._last_names: tuple[str, ...] = ()

    @property
    def methods(self) -> Sequence[str]:
        return (self.method,)

    def validate(self, run: RunContext) -> None:
        super().validate(run)
        features = run.dataset.features
        for feature in self.per_group or ():
            if feature not in features:
                raise ExplainError(
                    f"auditor 'attributions': per_group names {feature!r}, which dataset "
                    f"{run.dataset.name!r} does not have; its features: {sorted(features)}"
                )

    def audit(self, run: RunContext, phase: Phase | None, predictions: Predictions) -> dict[str, Any]:
        positions, target = self._rows(run, predictions)
        if len(positions) == 0:
            return {"method": self.method, "rows": 0}
        indices = predictions.indices[positions]
        x = run.dataset.x[indices.to(run.dataset.device)].reshape(len(indices), -1)
        attribution = self._explain(run, self.method, x, target)
        values = attribution.values
        names = attribution.players.names
        overall = summaries.importance(values)
        ranked = overall.argsort(descending=True)[: self.top].tolist()
        report: dict[str, Any] = {
            "method": self.method,
            "rows": len(positions),
            "top": [names[i] for i in ranked],
            "importance": summaries.table(names, overall),
            "per_class": summaries.per_label(
                values, target, predictions.dataset.class_names if predictions.dataset else
                [str(c) for c in range(predictions.n_classes)], names
            ),
        }
        report.update(self._agreement(run, x, predictions.labels[positions]))
        if self.method in ADDITIVE:
            function = ClassOutput(run.model, run.dataset.info.input_shape, self.output)
            report.update(completeness_gap(function, x.float(), attribution.baseline, target,
                                           values, attribution.references,
                                           attribution.reference_weights))
        if attribution.references is not None and self.method != "gradient_shap":
            report["background_rows"] = len(attribution.references)
        report.update(sampling_report(attribution))
        sensitive = self.per_group if self.per_group is not None else list(run.dataset.sensitive)
        groups = {}
        for feature in sensitive:
            codes = predictions.feature(feature)[positions]
            labels = run.dataset.categories.get(feature, ())
            groups[feature] = summaries.sensitive_report(values, codes, labels, names, feature)
        if groups:
            report["per_group"] = groups
        where = f"{phase.kind} {phase.index}" if phase is not None else "end"
        self.history.setdefault(predictions.split, []).append((where, overall.detach()))
        self.per_class_history[predictions.split] = summaries.grouped_importance(
            values, target, predictions.n_classes
        ).detach()
        self._last_names = names
        return report

    def finalize(self, run: RunContext) -> dict[str, Any]:
        """Drift of global importance across phases, per evaluated split, and the plots."""
        if not self.history:
            return {"method": self.method, "phases": 0}
        names = self._last_names
        report: dict[str, Any] = {"method": self.method, "splits": {}}
        for split, entries in self.history.items():
            history = torch.stack([values for _, values in entries])
            report["splits"][split] = {
                "phases": [label for label, _ in entries],
                "importance": summaries.table(names, history[-1]),
                "drift": summaries.drift(list(history)),
            }
        if self.plots and run.writer.enabled:
            report["plots"] = self._plot(run, names)
            for key, path in report["plots"].items():
                run.result.artifacts[f"attributions_{key}"] = path
        return report

    def _plot(self, run: RunContext, names: Sequence[str]) -> dict[str, str]:
        """Importance of the last evaluation of the first split (bars, or heat maps for
        images), and one drift chart per split evaluated more than once."""
        folder = run.output_dir / "explain"
        written: dict[str, Path] = {}
        split = next(iter(self.history))
        labels = [label for label, _ in self.history[split]]
        history = torch.stack([values for _, values in self.history[split]])
        title = f"{self.method} on {run.dataset.name} ({split}, {labels[-1]})"
        image_shape = run.dataset.info.image_shape
        if image_shape and self.players is not None:
            membership = self.players.membership
            size = membership.sum(dim=1).clamp(min=1)
            pixels = lambda values: ((values.float() / size) @ membership).reshape(image_shape).mean(0)  # noqa: E731
            written["heat_map"] = plots.heat_maps(folder / "importance.png",
                                                  [pixels(history[-1])], ["all classes"], title)
            # each class from the last evaluated split that explained rows of it (a continual
            # run's experiences hold different classes)
            per_class: dict[int, torch.Tensor] = {}
            for table in self.per_class_history.values():
                for code in range(len(table)):
                    if not bool(table[code].isnan().any()):
                        per_class[code] = table[code]
            present = sorted(per_class)
            written["class_heat_maps"] = plots.heat_maps(
                folder / "importance_per_class.png", [pixels(per_class[c]) for c in present],
                [run.dataset.class_names[c] for c in present],
                f"{self.method} on {run.dataset.name}, per class")
        else:
            written["importance"] = plots.bar_chart(folder / "importance.png", names, history[-1],
                                                    title, top=20)
        for position, (other, entries) in enumerate(self.history.items()):
            if len(entries) > 1:
                key = "drift" if position == 0 else f"drift_{other}"
                written[key] = plots.drift_chart(
                    folder / f"{key}.png", [label for label, _ in entries],
                    torch.stack([values for _, values in entries]), names, title=f"({other})")
        return {key: str(path.relative_to(run.output_dir)) for key, path in written.items()}
