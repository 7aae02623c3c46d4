"""The ``faithfulness`` auditor: how well each attribution method explains the run's model.

Every method explains the same rows; each gets the completeness gap, deletion and insertion
areas, and (for per-feature attributions) Captum's infidelity and sensitivity. ``finalize``
ranks the methods on each measure so a user can choose.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from paralab_explain.auditor import ADDITIVE, MethodsAuditor, sampling_report
from paralab_explain.faithfulness import (
    completeness_gap,
    deletion_insertion,
    infidelity,
    sensitivity,
)
from paralab_explain.model_output import ClassOutput

if TYPE_CHECKING:
    from paralab import Phase, Predictions, RunContext


class Faithfulness(MethodsAuditor):
    """Faithfulness of several attribution methods on the same rows, per method: the
    completeness gap, deletion and insertion areas, Captum's infidelity and sensitivity."""

    name = "faithfulness"

    def __init__(
        self,
        methods: Sequence[str] | str = ("integrated_gradients", "saliency", "deeplift",
                                        "gradient_shap"),
        rows: int = 32,
        points: int = 33,
        noise: float = 0.1,
        perturbations: int = 8,
        sensitivity: bool = True,
        **shared: Any,
    ) -> None:
        super().__init__(methods, rows, **shared)  # the options of every explaining auditor
        self.points, self.noise, self.perturbations = points, noise, perturbations
        self.with_sensitivity = sensitivity
        self.last: dict[str, Any] = {}

    def audit(self, run: RunContext, phase: Phase | None, predictions: Predictions) -> dict[str, Any]:
        positions, target = self._rows(run, predictions)
        if len(positions) == 0:
            return {}
        indices = predictions.indices[positions]
        x = run.dataset.x[indices.to(run.dataset.device)].reshape(len(indices), -1).float()
        function = ClassOutput(run.model, run.dataset.info.input_shape, self.output)
        was_training = run.model.training
        run.model.eval()
        report: dict[str, Any] = {}
        try:
            for method in self._methods:
                report[method] = self._measure(run, method, function, x, target)
        finally:
            run.model.train(was_training)
        self.last = report
        return report

    def _measure(self, run: RunContext, method: str, function: ClassOutput, x: torch.Tensor,
                 target: torch.Tensor) -> dict[str, Any]:
        attribution = self._explain(run, method, x, target)
        assert self.players is not None
        scores: dict[str, Any] = {}
        if method in ADDITIVE:
            scores.update(completeness_gap(function, x, attribution.baseline, target,
                                           attribution.values, attribution.references,
                                           attribution.reference_weights))
        scores.update(sampling_report(attribution))
        scores.update(deletion_insertion(function, x, attribution.baseline, target,
                                         attribution.values, self.players, max_points=self.points))
        features = attribution.features
        if features is None and self.players.is_identity:
            features = attribution.values
        if features is not None:
            scores["infidelity"] = infidelity(function, x, target, features, scale=self.noise,
                                              samples=self.perturbations, seed=self.seed)
            if self.with_sensitivity:
                def explanation(inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
                    again = self._explain(run, method, inputs.detach(), target)
                    return again.features if again.features is not None else again.values

                scores["sensitivity_max"] = sensitivity(
                    explanation, x, target, samples=self.perturbations, seed=self.seed)
        return scores

    def finalize(self, run: RunContext) -> dict[str, Any]:
        """The last evaluation's scores, with each method's rank on each measure."""
        if not self.last:
            return {}
        better_low = ("completeness_relative_gap", "deletion_auc", "infidelity", "sensitivity_max")
        ranking: dict[str, list[str]] = {}
        for measure in (*better_low, "insertion_auc"):
            scored = [(scores[measure], method) for method, scores in self.last.items()
                      if measure in scores and scores[measure] == scores[measure]]
            if scored:
                scored.sort(reverse=measure == "insertion_auc")
                ranking[measure] = [method for _, method in scored]
        return {"scores": self.last, "best_first": ranking}

