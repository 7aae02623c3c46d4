"""Adebayo et al. 2018, Sanity Checks for Saliency Maps: do attributions depend on the model
and on the data it learned from?

Two tests, on our own networks (ReLU MLPs on the 8x8 digits, the paper's image setting, and on
breast cancer), explaining the predicted class's probability of test rows:

* **model randomisation** (cascading, from the output layer back): the rank correlation of
  attributions of the trained model and of copies whose layers are re-initialised;
* **data randomisation**: a re-initialised copy trained on the training labels *permuted* (it
  can only memorise them), against the trained model; a control copy, re-initialised and trained
  the same way on the true labels, shows what the correlation is when only the seed differs.

The paper's qualitative findings checked in paper.toml: plain gradients (saliency) change
substantially under both randomisations (low rank correlation), far more than a control
retrained on the true labels; methods that multiply by the input (integrated gradients from
the zero baseline, like Gradient x Input) stay more correlated, dominated by the input's own
structure; the network memorises permuted labels (high training accuracy, chance on test).
"""

from __future__ import annotations

import torch

METHODS = ("saliency", "integrated_gradients")


def _attributor(x: torch.Tensor, target: torch.Tensor, method: str):
    from paralab_explain.explainers import explain

    def attribute(model: torch.nn.Module) -> torch.Tensor:
        return explain(model, x, method=method, target=target, baseline="zeros",
                       steps=32).values

    return attribute


def sanity(name: str, *, hidden: tuple[int, ...], epochs: int, rows: int,
           retrain_epochs: int) -> dict[str, float]:
    """Both tests for one dataset: ``data/<name>/...`` and ``model/<name>/...`` metrics."""
    from paralab_explain.sanity import data_randomization, parameter_randomization
    from paralab_explain.training import train_mlp

    model, data = train_mlp(name, hidden, epochs=epochs, activation="relu")
    train, test = data.splits["train"], data.splits["test"]
    x = data.x[test[:rows]]
    with torch.no_grad():
        target = model(x).argmax(1)
    attributes = {method: _attributor(x, target, method) for method in METHODS}
    report = data_randomization(model, attributes, data.x[train], data.y[train],
                                epochs=retrain_epochs, lr=0.01, batch_size=0, seed=0)
    ours = {f"data/{name}/shuffled_train_accuracy": report["shuffled_train_accuracy"],
            f"data/{name}/control_train_accuracy": report["control_train_accuracy"]}
    for method in METHODS:
        ours[f"data/{name}/{method}"] = report[method]["rank_correlation_abs"]
        ours[f"data/{name}/{method}_control"] = report[method]["control_rank_correlation_abs"]
        cascade = parameter_randomization(model, attributes[method], randomization="cascading")
        ours[f"model/{name}/{method}_top_layer"] = cascade["steps"][0]["rank_correlation_abs"]
        ours[f"model/{name}/{method}_all_layers"] = cascade["rank_correlation_abs"]
    from paralab_explain.sanity import retrained, shuffled_labels

    shuffled, _ = retrained(model, data.x[train], shuffled_labels(data.y[train], 0),
                            epochs=retrain_epochs, lr=0.01, batch_size=0, seed=0)
    with torch.no_grad():
        ours[f"data/{name}/shuffled_test_accuracy"] = float(
            (shuffled(data.x[test]).argmax(1) == data.y[test]).float().mean())
    return ours


def reproduce(quick: bool = False) -> dict[str, float]:
    torch.set_num_threads(2)
    settings = dict(hidden=(64, 64), epochs=100, rows=24, retrain_epochs=150) if quick else \
        dict(hidden=(128, 128), epochs=300, rows=200, retrain_epochs=600)
    ours: dict[str, float] = {}
    for name in ("digits", "breast_cancer"):
        ours.update(sanity(name, **settings))
    return ours
