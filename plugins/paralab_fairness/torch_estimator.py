"""``ParalabClassifier``: any paralab model, trained by a paralab method, as a scikit-learn
classifier, so fairlearn's reductions and post-processing mitigate torch models.

fairlearn's ``ExponentiatedGradient`` and ``GridSearch`` reduce a constrained problem to a
sequence of *cost-sensitive* classification problems: each call is ``fit(X, y', sample_weight=w)``
with relabelled targets and per-row costs. An adapter that dropped the weights would train the
same model every time and the reduction would do nothing, so the weights enter the loss: the
objective of a batch is ``sum_i w_i * CE_i / n_batch`` with ``w`` normalised to mean 1 over the
whole training set, the minibatch estimate of the weighted empirical risk
``sum_i w_i CE_i / sum_i w_i`` (exactly that risk with ``batch_size = 0``, one full batch).

The model is built by its registry factory (``mlp``, ``cnn``, any plugin's) from a
:class:`paralab.DatasetInfo` of the array's shape, and trained by the method's own ``step``
(``adam``, ``sgd``, any :class:`paralab.OptimizerMethod`), with the weighted loss passed as the
batch's ``objective``. Fitting is seeded: the same data, weights and seed give the same model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin


class Shared:
    """A reference that scikit-learn's ``clone`` (a deep copy of each parameter) keeps shared:
    the run's registry travels with every clone fairlearn makes, without being copied."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __deepcopy__(self, memo: dict[int, Any]) -> Shared:
        return self


def _component(kind: str, spec: Mapping[str, Any] | str, owner: str,
               registry: Any = None) -> tuple[Any, dict[str, Any]]:
    """The registry component and its options for ``"name"`` or ``{"name": ..., options}``,
    with the options checked against the component's declarations (a ``ValueError`` naming
    ``owner`` and the option); ``registry`` (or a :class:`Shared` one) defaults to the
    process registry."""
    from paralab import get_registry

    if isinstance(registry, Shared):
        registry = registry.value
    registry = registry if registry is not None else get_registry()

    if isinstance(spec, str):
        name, options = spec, {}
    else:
        options = dict(spec)
        name = options.pop("name", "")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{owner}: a {kind} needs a name (a string or {{name = ...}})")
    try:
        component = registry.component(kind, name)
    except LookupError as error:  # the registry's unknown-component error, with its choices
        raise ValueError(f"{owner}: {error}") from None
    declared = component.declared_options()
    for key, value in options.items():
        if key not in declared:
            raise ValueError(f"{owner}: {kind} {name!r} has no option {key!r}; "
                             f"valid: {', '.join(sorted(declared)) or 'none'}")
        problem = declared[key].problem(value)
        if problem:
            raise ValueError(f"{owner}: {kind} {name!r} option {key!r}: {problem}")
    return component, options


def check_components(model: Mapping[str, Any] | str, method: Mapping[str, Any] | str,
                     owner: str, registry: Any = None) -> None:
    """Validation before anything trains: both names exist and their options are valid."""
    _component("model", model, owner, registry)
    _component("method", method, owner, registry)


def weighted_objective(weights: torch.Tensor) -> Any:
    """The batch objective ``sum_i w[index_i] * CE_i / rows`` (``weights`` of mean 1)."""

    def objective(batch: Any) -> torch.Tensor:
        rows = weights[batch.indices]
        losses = F.cross_entropy(batch.logits, batch.targets, reduction="none")
        return (rows * losses).sum() / max(len(rows), 1)

    return objective


class ParalabClassifier(ClassifierMixin, BaseEstimator):
    """A scikit-learn classifier (``fit``, ``predict``, ``predict_proba``, ``get_params``)
    around a paralab model and method.

    :param model: the model, ``"mlp"`` or ``{"name": "mlp", "hidden": [16]}``.
    :param method: the paralab training method, ``"adam"`` or ``{"name": "sgd", "lr": 0.1}``.
    :param epochs: passes over the training rows per ``fit``.
    :param batch_size: rows per step; 0 trains on one full batch (the exact weighted risk).
    :param seed: seeds the model's initialisation and the batch order.
    :param registry: where the names are looked up (a registry or a :class:`Shared` one; a
        run passes its own); ``None``: the process registry.
    """

    def __init__(self, model: Mapping[str, Any] | str = "mlp",
                 method: Mapping[str, Any] | str = "adam", epochs: int = 20,
                 batch_size: int = 128, seed: int = 0, registry: Any = None) -> None:
        self.model = model
        self.method = method
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed
        self.registry = registry

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> ParalabClassifier:
        """Train a fresh model on ``X`` (rows x features) and integer or binary ``y``."""
        from paralab import DatasetInfo

        x = torch.tensor(np.asarray(X, dtype=np.float32))
        x = x.reshape(len(x), -1)
        labels = np.asarray(y)
        self.classes_, codes = np.unique(labels, return_inverse=True)
        targets = torch.as_tensor(codes.astype(np.int64))
        n = len(x)
        if sample_weight is None:
            weights = torch.ones(n)
        else:
            weights = torch.tensor(np.asarray(sample_weight, dtype=np.float64)).float()
            if weights.shape != (n,) or bool((weights < 0).any()):
                raise ValueError("ParalabClassifier.fit: sample_weight must be n non-negative "
                                 "values")
        total = float(weights.sum())
        weights = weights * (n / total) if total > 0 else weights
        n_classes = max(len(self.classes_), 2)
        info = DatasetInfo(name="arrays", input_shape=(x.shape[1],), n_classes=n_classes,
                           n_features=int(x.shape[1]))
        model_component, model_options = _component("model", self.model, "ParalabClassifier",
                                                    self.registry)
        method_component, method_options = _component("method", self.method,
                                                      "ParalabClassifier", self.registry)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            network = model_component.load()(info, **model_options)
        trainer = method_component.load()(**method_options)
        trainer.setup(None, network)
        objective = weighted_objective(weights)
        generator = torch.Generator().manual_seed(self.seed)
        size = n if self.batch_size <= 0 else self.batch_size
        network.train()
        for _ in range(self.epochs):
            order = torch.randperm(n, generator=generator) if size < n else torch.arange(n)
            for start in range(0, n, size):
                index = order[start:start + size]
                trainer.step(None, network, x[index], targets[index], index, objective)
        network.eval()
        self.network_ = network
        self.n_features_in_ = int(x.shape[1])
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax over the fitted classes (a one-class fit gives probability 1)."""
        x = torch.tensor(np.asarray(X, dtype=np.float32))
        with torch.no_grad():
            p = torch.softmax(self.network_(x.reshape(len(x), -1)), dim=-1).double().numpy()
        if len(self.classes_) == 1:
            return np.ones((len(x), 1))
        return p[:, :len(self.classes_)] / p[:, :len(self.classes_)].sum(1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(1)]
