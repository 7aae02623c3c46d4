"""The ``audit`` protocol: audit decisions that already exist, with no model in the run.

The commonest fairness audit is of decisions someone else made: ProPublica audited COMPAS's
own risk scores, not a model of theirs. The ``audit`` protocol reads a score or decision per
row, from a column of the dataset (COMPAS's ``score_text`` or ``decile_score``) or from a CSV
file of predictions joined to the dataset on an id column, turns it into a decision with the
run's method (a decision rule naming its column: ``threshold`` or ``positive_labels``), and hands the decisions to
``run.evaluate`` as a model's predictions: every metric and auditor (the fairness audit
included) reads them unchanged.

Everything that can be wrong with the input is an error before any phase opens, naming the
option and what would be valid: a column the dataset (or the CSV) lacks, a threshold on a
categorical column, labels the column never takes, ids missing from or repeated in the CSV,
values that are not numbers or are NaN.
"""

from __future__ import annotations

import csv
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from paralab import Predictions, Protocol

if TYPE_CHECKING:
    from paralab import RunContext, SharedDataset

ALL_ROWS = "all"
"""The ``splits`` entry that audits every row of the dataset."""


@dataclass
class GivenValues:
    """The audited column for some rows: numbers, or labels (``labels[codes[i]]``)."""

    where: str
    """Where the values come from, for messages (``dataset 'compas' column 'score_text'``)."""
    numbers: torch.Tensor | None = None
    codes: torch.Tensor | None = None
    labels: tuple[str, ...] = ()

    @property
    def categorical(self) -> bool:
        return self.codes is not None


class DecisionRule(ABC):
    """How a given score or label becomes a decision (the method of the ``audit`` protocol):
    which column it reads (``column``) and the rule."""

    column: str = ""
    required_attributes = ("column",)

    @abstractmethod
    def check(self, values: GivenValues) -> None:
        """Raise ``ValueError`` (naming the option and what is valid) when this rule cannot
        decide on ``values``."""

    @abstractmethod
    def decide(self, values: GivenValues) -> torch.Tensor:
        """One boolean per row: True for the positive decision (``higher risk``)."""


class Threshold(DecisionRule):
    """Positive when the score is at least ``at`` (or at most, ``direction = "at_most"``)."""

    def __init__(self, column: str = "", at: float = 0.5, direction: str = "at_least") -> None:
        self.column = column
        self.at = at
        self.direction = direction

    def check(self, values: GivenValues) -> None:
        if values.categorical:
            raise ValueError(
                f"method threshold: {values.where} holds labels {list(values.labels)}, not "
                "numbers; use method positive_labels with the labels counted as positive"
            )

    def decide(self, values: GivenValues) -> torch.Tensor:
        assert values.numbers is not None
        if self.direction == "at_least":
            return values.numbers >= self.at
        return values.numbers <= self.at


class PositiveLabels(DecisionRule):
    """Positive when the row's label is one of ``labels`` (ProPublica: Medium or High)."""

    def __init__(self, column: str = "", labels: Sequence[str] = ()) -> None:
        self.column = column
        self.labels = tuple(str(label) for label in labels)

    def check(self, values: GivenValues) -> None:
        if not self.labels:
            raise ValueError("method positive_labels: labels is empty; name the labels counted "
                             "as the positive decision")
        if not values.categorical:
            raise ValueError(
                f"method positive_labels: {values.where} holds numbers, not labels; use method "
                "threshold"
            )
        unknown = [label for label in self.labels if label not in values.labels]
        if unknown:
            raise ValueError(
                f"method.labels: {unknown} never occur in {values.where}; its labels are "
                f"{list(values.labels)}"
            )

    def decide(self, values: GivenValues) -> torch.Tensor:
        assert values.codes is not None
        wanted = torch.tensor([values.labels.index(label) for label in self.labels],
                              device=values.codes.device)
        return torch.isin(values.codes, wanted)


class AuditProtocol(Protocol):
    """One ``audit`` phase: each audited split's given decisions through ``run.evaluate``.

    Options are declared in :mod:`paralab_fairness`; :meth:`validate` reads the column (and the
    CSV) and checks them against the dataset before the run starts.
    """

    def __init__(self, predictions: str = "", id_column: str = "id",
                 splits: Sequence[str] = (ALL_ROWS,), positive_class: int = 1) -> None:
        self.column = ""
        self.predictions = predictions
        self.id_column = id_column
        self.splits = tuple(splits)
        self.positive_class = positive_class
        self._values: GivenValues | None = None

    # ------------------------------------------------------------------------ checks

    def validate(self, run: RunContext) -> None:
        from paralab_fairness.auditor import check_positive_class

        dataset = run.dataset
        self.column = run.method.column
        if not self.column:
            raise ValueError("method.column is empty; name the score or decision column to audit"
                             f" (dataset {dataset.name!r} columns: {sorted(dataset.features)})")
        for position, split in enumerate(self.splits):
            if split != ALL_ROWS and split not in dataset.splits:
                raise ValueError(
                    f"protocol.splits[{position}] = {split!r}: dataset {dataset.name!r} has no "
                    f"such split; splits: {[ALL_ROWS, *sorted(dataset.splits)]}"
                )
        check_positive_class(self.positive_class, dataset, "protocol audit")
        values = (self._from_csv(dataset) if self.predictions
                  else self._from_dataset(dataset))
        run.method.check(values)
        self._values = values

    def _from_dataset(self, dataset: SharedDataset) -> GivenValues:
        where = f"dataset {dataset.name!r} column {self.column!r}"
        if self.column not in dataset.features:
            raise ValueError(
                f"method.column = {self.column!r}: dataset {dataset.name!r} has no such "
                f"column; its columns: {sorted(dataset.features)} (or give a CSV of predictions "
                "with protocol.predictions)"
            )
        values = dataset.features[self.column]
        if self.column in dataset.categories:
            return GivenValues(where, codes=values, labels=tuple(dataset.categories[self.column]))
        numbers = values.double()
        if torch.isnan(numbers).any():
            raise ValueError(f"protocol audit: {where} has NaN values")
        return GivenValues(where, numbers=numbers)

    def _from_csv(self, dataset: SharedDataset) -> GivenValues:
        path = Path(self.predictions).expanduser()
        if not path.is_file():
            raise ValueError(f"protocol.predictions = {self.predictions!r}: no such file "
                             f"(resolved to {path.resolve()})")
        where = f"{path} column {self.column!r}"
        if self.id_column not in dataset.features:
            raise ValueError(
                f"protocol.id_column = {self.id_column!r}: dataset {dataset.name!r} has no such "
                f"column to join the CSV on; its columns: {sorted(dataset.features)}"
            )
        with path.open(newline="", encoding="utf-8") as stream:
            reader = csv.DictReader(stream)
            header = reader.fieldnames or []
            for option, name in (("protocol.id_column", self.id_column),
                                 ("method.column", self.column)):
                if name not in header:
                    raise ValueError(f"{option} = {name!r}: {path} has no such column; "
                                     f"its header: {header}")
            given: dict[int, str] = {}
            for row in reader:
                line = reader.line_num
                try:
                    key = int(row[self.id_column])
                except (TypeError, ValueError):
                    raise ValueError(f"{path}, line {line}: {self.id_column} = "
                                     f"{row[self.id_column]!r} is not an integer id") from None
                if key in given:
                    raise ValueError(f"{path}, line {line}: id {key} appears twice")
                given[key] = (row[self.column] or "").strip()
        ids = dataset.features[self.id_column].tolist()
        missing = [key for key in ids if key not in given]
        if missing:
            raise ValueError(f"{path}: {len(missing)} of the dataset's {len(ids)} ids have no "
                             f"row (first: {missing[0]})")
        extra = len(given) - len(set(ids) & given.keys())
        if extra:
            raise ValueError(f"{path}: {extra} rows have ids that dataset {dataset.name!r} "
                             "lacks (a predictions file of another dataset or filter?)")
        texts = [given[key] for key in ids]
        for key, text in zip(ids, texts):
            if not text:
                raise ValueError(f"{path}: id {key} has an empty {self.column!r}")
            if text.lower() in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity"):
                raise ValueError(f"{path}: id {key} has {self.column!r} = {text!r}, which "
                                 "cannot be a score or a decision")
        numbers = [_number(text) for text in texts]
        if all(number is not None for number in numbers):
            return GivenValues(where, numbers=torch.tensor(numbers, dtype=torch.float64))
        labels = tuple(sorted(set(texts)))
        lookup = {label: code for code, label in enumerate(labels)}
        return GivenValues(where, codes=torch.tensor([lookup[t] for t in texts]), labels=labels)

    # ------------------------------------------------------------------------- run

    def execute(self, run: RunContext) -> None:
        if self._values is None:
            self.validate(run)
        assert self._values is not None
        decided = run.method.decide(self._values).to(run.dataset.device)
        with run.phase("audit", 0, column=self.column, source=self._values.where,
                       rows=int(decided.numel()), positive=int(decided.sum())):
            for split in self.splits:
                indices = (torch.arange(len(run.dataset.y), device=run.dataset.device)
                           if split == ALL_ROWS else run.dataset.splits[split])
                run.evaluate(split, predictions=self._predictions(run, split, indices,
                                                                  decided[indices]))

    def _predictions(self, run: RunContext, split: str, indices: torch.Tensor,
                     decided: torch.Tensor) -> Predictions:
        """Hard decisions in the dataset's class space: the positive class or the other one,
        with probability 1 (so a calibration error is that of the decisions themselves)."""
        dataset = run.dataset
        negative = 0 if self.positive_class != 0 else 1
        labels = torch.where(decided, self.positive_class, negative)
        logits = torch.full((len(indices), dataset.info.n_classes), -30.0,
                            device=dataset.device)
        logits[torch.arange(len(indices)), labels] = 0.0
        return Predictions(logits=logits, targets=dataset.y[indices], indices=indices,
                           dataset=dataset, split=split, predicted=labels)


def _number(text: str) -> float | None:
    """``text`` as a number, else None (then the column is read as labels)."""
    try:
        return float(text)
    except ValueError:
        return None

