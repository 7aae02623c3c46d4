"""The ``sanity`` auditor: the model-parameter and data randomisation tests (Adebayo et al.
2018) of attribution methods on the run's model, at each evaluation point.

With ``randomization = "data"`` two re-initialised copies of the model are trained on the run's
``train_split`` (``data_epochs`` passes of Adam at ``data_lr``), one on permuted labels and one
on the true labels (the control), once per evaluation, and every method is compared on both.

For each method, the same rows and classes are explained by the run's model and by copies
whose layers are re-initialised (:mod:`paralab_explain.sanity`); the report is the Spearman
rank correlation between the attributions before and after. A method whose attributions stay
highly correlated with those of a random model explains the inputs, not the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from paralab_explain.auditor import MethodsAuditor
from paralab_explain.errors import ExplainError
from paralab_explain.sanity import data_randomization, layers, parameter_randomization

if TYPE_CHECKING:
    from paralab import Phase, Predictions, RunContext


class Sanity(MethodsAuditor):
    """Rank correlation of each method's attributions before and after randomising the
    model's parameters (cascading from the output layer, independent, full, or none)."""

    name = "sanity"

    def __init__(
        self,
        methods: Sequence[str] | str = ("integrated_gradients", "saliency"),
        randomization: str = "cascading",
        rows: int = 32,
        data_epochs: int = 50,
        data_lr: float = 0.01,
        data_batch_size: int = 128,
        train_split: str = "train",
        **shared: Any,
    ) -> None:
        super().__init__(methods, rows, **shared)  # the options of every explaining auditor
        self.randomization = randomization
        self.data_epochs, self.data_lr = data_epochs, data_lr
        self.data_batch_size, self.train_split = data_batch_size, train_split
        self.last: dict[str, Any] = {}

    def validate(self, run: RunContext) -> None:
        super().validate(run)
        if self.randomization != "none" and not layers(run.model):
            raise ExplainError(
                f"auditor 'sanity': randomization = {self.randomization!r}, but the model "
                f"{type(run.model).__name__} has no layer with reset_parameters() to "
                "re-initialise")
        if self.randomization == "data":
            run.dataset.check_splits(self.train_split, ())

    def audit(self, run: RunContext, phase: Phase | None, predictions: Predictions) -> dict[str, Any]:
        positions, target = self._rows(run, predictions)
        if len(positions) == 0:
            return {}
        indices = predictions.indices[positions]
        x = run.dataset.x[indices.to(run.dataset.device)].reshape(len(indices), -1).float()
        report: dict[str, Any] = {"rows": len(positions)}

        def attributor(method: str) -> Any:
            def attribute(model: torch.nn.Module) -> torch.Tensor:
                return self._explain(run, method, x, target, model=model).values
            return attribute

        if self.randomization == "data":
            train = run.dataset.split(self.train_split)
            rows = train.indices.to(run.dataset.device)
            report.update(data_randomization(
                run.model, {method: attributor(method) for method in self._methods},
                run.dataset.x[rows].float(), run.dataset.y[rows], epochs=self.data_epochs,
                lr=self.data_lr, batch_size=self.data_batch_size, seed=self.seed))
            self.last = report
            return report
        for method in self._methods:
            def attribute(model: torch.nn.Module, method: str = method) -> torch.Tensor:
                return self._explain(run, method, x, target, model=model).values

            report[method] = parameter_randomization(
                run.model, attribute, randomization=self.randomization, seed=self.seed)
        self.last = report
        return report

    def finalize(self, run: RunContext) -> dict[str, Any]:
        """The last evaluation's correlations, methods ranked most model-sensitive first."""
        if not self.last:
            return {}
        scored = [(entry["rank_correlation_abs"], method) for method, entry in self.last.items()
                  if isinstance(entry, dict) and entry["rank_correlation_abs"] ==
                  entry["rank_correlation_abs"]]
        return {"scores": self.last,
                "most_sensitive_first": [method for _, method in sorted(scored)]}
