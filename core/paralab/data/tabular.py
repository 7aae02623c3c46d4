"""Fairness datasets from their original files: COMPAS, Adult, German credit.

Each declares its sensitive features: they are kept as integer codes in
``dataset.features`` (with labels in ``dataset.categories``), and by default also one-hot
encoded into the inputs like any other column (``drop_sensitive=True`` removes them).
Numeric columns are standardized with training-split statistics.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from paralab.data.builtin import standardize, stratified_split
from paralab.data.files import require_files, resolve_root
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


def compas(
    root: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    drop_sensitive: bool = False,
) -> SharedDataset:
    """ProPublica's two-year COMPAS file, filtered as in their analysis (6,172 people).

    Target: ``two_year_recid``. Sensitive: ``race``, ``sex``, ``age_cat``.
    """
    folder = resolve_root(root, "compas")
    path = require_files(folder, ["compas-scores-two-years.csv"], dataset="compas")[
        "compas-scores-two-years.csv"
    ]
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [
            r
            for r in csv.DictReader(handle)
            if r["days_b_screening_arrest"]
            and -30 <= int(r["days_b_screening_arrest"]) <= 30
            and r["is_recid"] != "-1"
            and r["c_charge_degree"] != "O"
            and r["score_text"] != "N/A"
        ]
    y = np.array([int(r["two_year_recid"]) for r in rows], dtype=np.int64)
    splits = stratified_split(y, test_fraction, seed)
    sensitive = {key: [r[key] for r in rows] for key in ("race", "sex", "age_cat")}
    return _build(
        "compas",
        rows,
        y,
        numeric=("age", "priors_count", "juv_fel_count", "juv_misd_count", "juv_other_count"),
        categorical=("c_charge_degree", "race", "sex", "age_cat"),
        sensitive=sensitive,
        splits=splits,
        class_names=("no_recid", "recid"),
        drop_sensitive=drop_sensitive,
        source=path,
    )


ADULT_COLUMNS = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country", "income"]


def adult(
    root: str | None = None, drop_sensitive: bool = False, download: bool = False
) -> SharedDataset:
    """UCI Adult: ``adult.data`` (train) and ``adult.test`` (test), rows with '?' dropped.

    Target: income > 50K. Sensitive: ``sex``, ``race``.
    """
    folder = resolve_root(root, "adult")
    names = ["adult.data", "adult.test"]
    paths = require_files(
        folder, names, dataset="adult", urls={n: f"{UCI}/adult/{n}" for n in names},
        download=download,
    )
    rows: list[dict[str, str]] = []
    sizes = []
    for name in names:
        count = 0
        with paths[name].open(encoding="utf-8") as handle:
            for line in handle:
                fields = [f.strip() for f in line.strip().rstrip(".").split(",")]
                if len(fields) != len(ADULT_COLUMNS) or "?" in fields:
                    continue  # the test file's banner, the trailing blank line, missing values
                rows.append(dict(zip(ADULT_COLUMNS, fields)))
                count += 1
        sizes.append(count)
    y = np.array([int(r["income"] == ">50K") for r in rows], dtype=np.int64)
    splits = (torch.arange(sizes[0]), torch.arange(sizes[0], sizes[0] + sizes[1]))
    return _build(
        "adult",
        rows,
        y,
        numeric=("age", "fnlwgt", "education_num", "capital_gain", "capital_loss",
                 "hours_per_week"),
        categorical=("workclass", "education", "marital_status", "occupation", "relationship",
                     "race", "sex", "native_country"),
        sensitive={key: [r[key] for r in rows] for key in ("sex", "race")},
        splits=splits,
        class_names=("<=50K", ">50K"),
        drop_sensitive=drop_sensitive,
        source=folder,
    )


GERMAN_COLUMNS = ["status", "duration", "credit_history", "purpose", "amount", "savings", "employment", "installment_rate", "personal_status", "other_debtors", "residence_since", "property", "age", "other_installments", "housing", "existing_credits", "job", "people_liable", "telephone", "foreign_worker", "credit"]
GERMAN_NUMERIC = ("duration", "amount", "installment_rate", "residence_since", "age",
                  "existing_credits", "people_liable")
_FEMALE = {"A92", "A95"}


def german_credit(
    root: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    drop_sensitive: bool = False,
    download: bool = False,
) -> SharedDataset:
    """UCI Statlog German credit (1,000 applicants); target 1 = good credit.

    Sensitive: ``sex`` (read from the personal-status code) and ``age_group`` (over 25 or not).
    """
    folder = resolve_root(root, "german_credit")
    path = require_files(
        folder, ["german.data"], dataset="german_credit",
        urls={"german.data": f"{UCI}/statlog/german/german.data"}, download=download,
    )["german.data"]
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) == len(GERMAN_COLUMNS):
                row = dict(zip(GERMAN_COLUMNS, fields))
                row["sex"] = "female" if row["personal_status"] in _FEMALE else "male"
                row["age_group"] = "over_25" if int(row["age"]) > 25 else "25_or_under"
                rows.append(row)
    y = np.array([int(r["credit"] == "1") for r in rows], dtype=np.int64)
    categorical = [c for c in GERMAN_COLUMNS[:-1] if c not in GERMAN_NUMERIC]
    return _build(
        "german_credit",
        rows,
        y,
        numeric=GERMAN_NUMERIC,
        categorical=[*categorical, "sex", "age_group"],
        sensitive={key: [r[key] for r in rows] for key in ("sex", "age_group")},
        splits=stratified_split(y, test_fraction, seed),
        class_names=("bad", "good"),
        drop_sensitive=drop_sensitive,
        source=path,
    )

