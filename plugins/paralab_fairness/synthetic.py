"""``biased_synthetic``: an embedded dataset whose unfairness is a knob.

Historical labels favour one group: ``P(y = 1)`` has a ``bias`` term added for the majority
group and subtracted for the minority, and one input column is shifted by a ``proxy`` of the
group, so a model learns the bias even when the group column is dropped. ``bias = 0`` gives
labels independent of the group.
Two sensitive features (``group`` with 2 values, ``age_band`` with 3) give six intersectional
groups. Nothing is read from disk: it is the default dataset of the plugin's examples.
"""

from __future__ import annotations

import numpy as np
import torch

from paralab import SharedDataset, stratified_split

GROUPS = ("majority", "minority")
AGE_BANDS = ("middle", "old", "young")


def _require_both_classes(y: np.ndarray, n: int, bias: float) -> None:
    """A stratified split and a classifier need at least two rows of each class; a ``bias``
    that puts (nearly) every row in one class is a ``ValueError`` naming the options."""
    counts = np.bincount(y, minlength=2)
    if counts.min() < 2:
        raise ValueError(
            f"biased_synthetic: bias = {bias} with n = {n} gives {int(counts[0])} negative and "
            f"{int(counts[1])} positive rows; need 2 of each: lower |bias| or raise n"
        )


def biased_synthetic(
    root: str | None = None,
    n: int = 4000,
    n_features: int = 8,
    bias: float = 1.0,
    proxy: float = 1.0,
    minority_fraction: float = 0.3,
    drop_sensitive: bool = False,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> SharedDataset:
    """Rows with a controllable label bias between groups.

    :param n: rows. :param n_features: informative Gaussian columns (the first is the proxy).
    :param bias: added to the label logit of the majority and subtracted for the minority.
    :param proxy: how far the first column's mean moves with the group.
    :param minority_fraction: share of the minority group.
    :param drop_sensitive: leave the one-hot group and age columns out of the inputs.

    The options' ranges are declared in :mod:`paralab_fairness` and checked by the spec.
    """
    rng = np.random.default_rng(seed)
    group = (rng.random(n) < minority_fraction).astype(np.int64)  # 1 = minority
    age = rng.choice(3, size=n, p=[0.5, 0.2, 0.3]).astype(np.int64)
    merit = rng.normal(size=(n, n_features))
    sign = 1.0 - 2.0 * group  # +1 majority, -1 minority
    weights = rng.normal(size=n_features) / np.sqrt(n_features)
    logit = 1.5 * merit @ weights + bias * sign + 0.3 * (age == 0) - 0.2
    x = merit.copy()
    x[:, 0] += proxy * sign  # the proxy leaks the group into the inputs, not into the labels
    with np.errstate(over="ignore"):  # a huge |bias| saturates the sigmoid: 0 or 1, no NaN
        risk = 1.0 / (1.0 + np.exp(-logit))
        y = (rng.random(n) < risk).astype(np.int64)
    _require_both_classes(y, n, bias)
    names = [f"x{i}" for i in range(n_features)]
    if not drop_sensitive:
        x = np.concatenate([x, np.eye(2)[group], np.eye(3)[age]], axis=1)
        names += [f"group={g}" for g in GROUPS] + [f"age_band={a}" for a in AGE_BANDS]
    train, test = stratified_split(y, test_fraction, seed)
    return SharedDataset(
        name="biased_synthetic",
        x=torch.as_tensor(x, dtype=torch.float32),
        y=torch.as_tensor(y),
        splits={"train": train, "test": test},
        features={"group": torch.as_tensor(group), "age_band": torch.as_tensor(age),
                  "risk_score": torch.as_tensor(risk)},
        sensitive=("group", "age_band"),
        categories={"group": GROUPS, "age_band": AGE_BANDS},
        class_names=("negative", "positive"),
        feature_names=tuple(names),
        meta={"source": "paralab_fairness.synthetic", "bias": bias, "proxy": proxy},
    )
