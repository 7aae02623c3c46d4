"""Fairness datasets from their original files: COMPAS, Adult, German credit.

Each declares its sensitive features: they are kept as integer codes in
``dataset.features`` (with labels in ``dataset.categories``), and by default also one-hot
encoded into the inputs like any other column (``drop_sensitive=True`` removes them).
Numeric columns are standardized with training-split statistics.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from paralab.data.builtin import standardize, stratified_split
from paralab.data.files import (
    DataFileError,
    decoded_text,
    number,
    require_classes,
    require_files,
    resolve_root,
    text_lines,
)
from paralab.data.shared import SharedDataset

UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases"


def _codes(values: Sequence[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    labels = tuple(sorted(set(values)))
    lookup = {label: code for code, label in enumerate(labels)}
    return np.array([lookup[v] for v in values], dtype=np.int64), labels


def _encode(
    rows: list[dict[str, str]],
    numeric: Sequence[str],
    categorical: Sequence[str],
    train: np.ndarray,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Standardized numeric columns followed by one-hot categorical columns."""
    columns = [np.array([float(r[c]) for r in rows]) for c in numeric]
    x_numeric = np.stack(columns, axis=1) if columns else np.zeros((len(rows), 0))
    x_numeric = standardize(x_numeric, train) if columns else x_numeric
    blocks, names = [x_numeric], list(numeric)
    for column in categorical:
        codes, labels = _codes([r[column] for r in rows])
        blocks.append(np.eye(len(labels))[codes])
        names += [f"{column}={label}" for label in labels]
    return np.concatenate(blocks, axis=1), tuple(names)


def _build(
    name: str,
    rows: list[dict[str, str]],
    y: np.ndarray,
    numeric: Sequence[str],
    categorical: Sequence[str],
    sensitive: dict[str, list[str]],
    splits: tuple[torch.Tensor, torch.Tensor],
    class_names: tuple[str, str],
    drop_sensitive: bool,
    source: Path,
) -> SharedDataset:
    used = [c for c in categorical if not (drop_sensitive and c in sensitive)]
    x, feature_names = _encode(rows, numeric, used, splits[0].numpy())
    features, categories = {}, {}
    for feature, values in sensitive.items():
        codes, labels = _codes(values)
        features[feature] = torch.as_tensor(codes)
        categories[feature] = labels
    return SharedDataset(
        name=name,
        x=torch.as_tensor(x, dtype=torch.float32),
        y=torch.as_tensor(y),
        splits={"train": splits[0], "test": splits[1]},
        features=features,
        sensitive=tuple(sensitive),
        categories=categories,
        class_names=class_names,
        feature_names=feature_names,
        meta={"source": str(source)},
    )


COMPAS_FILE = "compas-scores-two-years.csv"
COMPAS_NUMERIC = ("age", "priors_count", "juv_fel_count", "juv_misd_count", "juv_other_count")
COMPAS_COLUMNS = (*COMPAS_NUMERIC, "id", "two_year_recid", "is_recid", "days_b_screening_arrest",
                  "c_charge_degree", "decile_score", "score_text", "race", "sex", "age_cat")
COMPAS_FILTERS = ("propublica", "none")
"""``propublica``: the rows of ProPublica's logistic-regression analysis (6,172: screening
within 30 days of the arrest, a known recidivism outcome, no ordinary traffic offence, a
score); ``none``: every row of the file (7,214: the population of their false positive and
false negative rate tables, which they computed from ``cox-parsed.csv``)."""
COMPAS_SCORE_TEXT = ("Low", "Medium", "High")


def _compas_rows(path: Path, keep: str = "propublica") -> list[dict[str, str]]:
    """The file's rows (``keep = "none"``) or ProPublica's filtered ones, every field count,
    number and label checked."""
    reader = csv.reader(io.StringIO(decoded_text(path), newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise DataFileError(path, "no header row")
        absent = [c for c in COMPAS_COLUMNS if c not in header]
        if absent:
            raise DataFileError(path, f"header lacks the columns {', '.join(absent)}", line=1)
        rows = []
        for fields in reader:
            if not fields:
                continue
            if len(fields) != len(header):
                raise DataFileError(path, f"{len(fields)} fields, the header has {len(header)}",
                                    line=reader.line_num)
            row = dict(zip(header, fields))
            line = reader.line_num
            if row["two_year_recid"] not in ("0", "1"):
                raise DataFileError(path, f"column 'two_year_recid' = {row['two_year_recid']!r} "
                                          "is not 0 or 1", line=line)
            for column in (*COMPAS_NUMERIC, "id", "decile_score"):
                number(path, row[column], column, line)
            if row["score_text"] not in (*COMPAS_SCORE_TEXT, "N/A"):
                raise DataFileError(path, f"column 'score_text' = {row['score_text']!r} is not "
                                          f"one of {', '.join(COMPAS_SCORE_TEXT)} or N/A", line=line)
            days = row["days_b_screening_arrest"]
            if keep == "none" or (
                    days and -30 <= number(path, days, "days_b_screening_arrest", line) <= 30
                    and row["is_recid"] != "-1" and row["c_charge_degree"] != "O"
                    and row["score_text"] != "N/A"):
                rows.append(row)
    except csv.Error as error:
        raise DataFileError(path, f"not valid CSV ({error})", line=reader.line_num) from None
    return rows


def compas(
    root: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    drop_sensitive: bool = False,
    verify: bool = False,
    filter: str = "propublica",  # noqa: A002 - the option's name in specs
) -> SharedDataset:
    """ProPublica's two-year COMPAS file, filtered as in their analysis (6,172 people), or
    every row (``filter = "none"``, 7,214).

    Target: ``two_year_recid``. Sensitive: ``race``, ``sex``, ``age_cat``. COMPAS's own
    outputs are kept as features, not inputs, for audits of the given scores (the ``audit``
    protocol): ``decile_score`` (1-10), ``score_text`` (Low, Medium, High) and the file's
    row ``id``.
    """
    if filter not in COMPAS_FILTERS:
        raise ValueError(f"compas: filter = {filter!r} is not one of {list(COMPAS_FILTERS)}")
    folder = resolve_root(root, "compas")
    path = require_files(folder, [COMPAS_FILE], dataset="compas", verify=verify)[COMPAS_FILE]
    rows = _compas_rows(path, filter)
    y = np.array([int(r["two_year_recid"]) for r in rows], dtype=np.int64)
    class_names = ("no_recid", "recid")
    require_classes(path, y.tolist(), class_names)
    splits = stratified_split(y, test_fraction, seed)
    sensitive = {key: [r[key] for r in rows] for key in ("race", "sex", "age_cat")}
    dataset = _build(
        "compas",
        rows,
        y,
        numeric=COMPAS_NUMERIC,
        categorical=("c_charge_degree", "race", "sex", "age_cat"),
        sensitive=sensitive,
        splits=splits,
        class_names=class_names,
        drop_sensitive=drop_sensitive,
        source=path,
    )
    dataset.features["id"] = torch.tensor([int(r["id"]) for r in rows])
    dataset.features["decile_score"] = torch.tensor([int(r["decile_score"]) for r in rows])
    texts = [r["score_text"] for r in rows]
    labels = tuple(label for label in (*COMPAS_SCORE_TEXT, "N/A") if label in texts)
    dataset.features["score_text"] = torch.tensor([labels.index(t) for t in texts])
    dataset.categories["score_text"] = labels
    dataset.meta["filter"] = filter
    return dataset


ADULT_COLUMNS = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country", "income"]


ADULT_NUMERIC = ("age", "fnlwgt", "education_num", "capital_gain", "capital_loss",
                 "hours_per_week")
ADULT_LABELS = {"<=50K": 0, ">50K": 1}


def _adult_rows(path: Path) -> list[dict[str, str]]:
    """The records of ``adult.data`` or ``adult.test``: blank lines, the test file's ``|``
    banner and records with a '?' (UCI's missing values) are skipped; any other line must be
    15 fields with finite numbers and a known label."""
    rows = []
    for line_number, line in text_lines(path):
        if not line.strip() or line.startswith("|"):
            continue  # the test file's banner, the trailing blank line
        fields = [f.strip() for f in line.strip().rstrip(".").split(",")]
        if len(fields) != len(ADULT_COLUMNS):
            raise DataFileError(path, f"{len(fields)} comma-separated fields, expected "
                                      f"{len(ADULT_COLUMNS)}", line=line_number)
        if "?" in fields:
            continue  # a missing value, as UCI marks them
        row = dict(zip(ADULT_COLUMNS, fields))
        for column in ADULT_NUMERIC:
            number(path, row[column], column, line_number)
        if row["income"] not in ADULT_LABELS:
            raise DataFileError(path, f"column 'income' = {row['income']!r} is not one of "
                                      f"{', '.join(ADULT_LABELS)}", line=line_number)
        rows.append(row)
    return rows


def adult(
    root: str | None = None, drop_sensitive: bool = False, download: bool = False,
    verify: bool = False,
) -> SharedDataset:
    """UCI Adult: ``adult.data`` (train) and ``adult.test`` (test), rows with '?' dropped.

    Target: income > 50K. Sensitive: ``sex``, ``race``.
    """
    folder = resolve_root(root, "adult")
    names = ["adult.data", "adult.test"]
    paths = require_files(
        folder, names, dataset="adult", urls={n: f"{UCI}/adult/{n}" for n in names},
        download=download, verify=verify,
    )
    class_names = ("<=50K", ">50K")
    rows: list[dict[str, str]] = []
    sizes = []
    for name, split in zip(names, ("train", "test")):
        part = _adult_rows(paths[name])
        require_classes(paths[name], [ADULT_LABELS[r["income"]] for r in part], class_names,
                        split, minimum=1)
        rows += part
        sizes.append(len(part))
    y = np.array([ADULT_LABELS[r["income"]] for r in rows], dtype=np.int64)
    splits = (torch.arange(sizes[0]), torch.arange(sizes[0], sizes[0] + sizes[1]))
    return _build(
        "adult",
        rows,
        y,
        numeric=ADULT_NUMERIC,
        categorical=("workclass", "education", "marital_status", "occupation", "relationship",
                     "race", "sex", "native_country"),
        sensitive={key: [r[key] for r in rows] for key in ("sex", "race")},
        splits=splits,
        class_names=class_names,
        drop_sensitive=drop_sensitive,
        source=folder,
    )


GERMAN_COLUMNS = ["status", "duration", "credit_history", "purpose", "amount", "savings", "employment", "installment_rate", "personal_status", "other_debtors", "residence_since", "property", "age", "other_installments", "housing", "existing_credits", "job", "people_liable", "telephone", "foreign_worker", "credit"]
GERMAN_NUMERIC = ("duration", "amount", "installment_rate", "residence_since", "age",
                  "existing_credits", "people_liable")
_FEMALE = {"A92", "A95"}
_CODE = re.compile(r"^A\d{2,3}$")


def _german_rows(path: Path) -> list[dict[str, str]]:
    """The 21 space-separated fields of each line: attribute codes (``A11``), finite numbers
    and a class of 1 (good) or 2 (bad); anything else names the line."""
    rows = []
    for line_number, line in text_lines(path):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(GERMAN_COLUMNS):
            raise DataFileError(path, f"{len(fields)} fields, expected {len(GERMAN_COLUMNS)}",
                                line=line_number)
        row = dict(zip(GERMAN_COLUMNS, fields))
        for column in GERMAN_COLUMNS[:-1]:
            if column in GERMAN_NUMERIC:
                number(path, row[column], column, line_number)
            elif not _CODE.match(row[column]):
                raise DataFileError(path, f"column {column!r} = {row[column]!r} is not an "
                                          "attribute code like A11", line=line_number)
        if row["credit"] not in ("1", "2"):
            raise DataFileError(path, f"column 'credit' = {row['credit']!r} is not 1 (good) or "
                                      "2 (bad)", line=line_number)
        row["sex"] = "female" if row["personal_status"] in _FEMALE else "male"
        row["age_group"] = "over_25" if float(row["age"]) > 25 else "25_or_under"
        rows.append(row)
    return rows


def german_credit(
    root: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    drop_sensitive: bool = False,
    download: bool = False,
    verify: bool = False,
) -> SharedDataset:
    """UCI Statlog German credit (1,000 applicants); target 1 = good credit.

    Sensitive: ``sex`` (read from the personal-status code) and ``age_group`` (over 25 or not).
    """
    folder = resolve_root(root, "german_credit")
    path = require_files(
        folder, ["german.data"], dataset="german_credit",
        urls={"german.data": f"{UCI}/statlog/german/german.data"}, download=download,
        verify=verify,
    )["german.data"]
    rows = _german_rows(path)
    y = np.array([int(r["credit"] == "1") for r in rows], dtype=np.int64)
    class_names = ("bad", "good")
    require_classes(path, y.tolist(), class_names)
    categorical = [c for c in GERMAN_COLUMNS[:-1] if c not in GERMAN_NUMERIC]
    return _build(
        "german_credit",
        rows,
        y,
        numeric=GERMAN_NUMERIC,
        categorical=[*categorical, "sex", "age_group"],
        sensitive={key: [r[key] for r in rows] for key in ("sex", "age_group")},
        splits=stratified_split(y, test_fraction, seed),
        class_names=class_names,
        drop_sensitive=drop_sensitive,
        source=path,
    )
