"""Benchmark: paralab_explain against shap's KernelExplainer and Captum's IntegratedGradients.

Work (the same for both sides, in the same process, 2 torch threads):

* an MLP (30-64-64-2, tanh) trained on Wisconsin breast cancer (455 train rows);
* 200 explained rows, the 30 features in 12 contiguous groups, the training mean as baseline,
  the predicted class's probability as the explained output;
* exact Shapley values: paralab's enumeration of all 2^12 coalitions in batched forward passes
  vs ``shap.KernelExplainer`` with its native feature groups (``DenseData``) and
  ``nsamples = 2^12`` (it then enumerates every coalition, so both compute the same values);
* integrated gradients, 50 Gauss-Legendre steps: paralab's batched code vs Captum's.

Prints a readable table, then one JSON object as the last line.
    python benchmarks/explain.py [--rows 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import numpy as np
import torch
from torch import nn


def _train(seed: int = 0):
    from paralab.data import load_dataset
    from paralab.models import mlp

    data = load_dataset("breast_cancer")
    torch.manual_seed(seed)
    model = mlp(data.info, hidden=[64, 64], activation="tanh")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.005)
    train, test = data.splits["train"], data.splits["test"]
    for _ in range(300):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(data.x[train]), data.y[train]).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(data.x[test]).argmax(1) == data.y[test]).float().mean())
    return model, data, accuracy


def _best(function, repeats: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        value = function()
        times.append(time.perf_counter() - started)
    return min(times), value


def main() -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--groups", type=int, default=12)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    arguments = parser.parse_args()
    torch.set_num_threads(2)
    warnings.filterwarnings("ignore")

    import shap
    from captum.attr import IntegratedGradients
    from shap.utils._legacy import DenseData

    from paralab_explain.explainers import explain
    from paralab_explain.model_output import ClassOutput

    model, data, accuracy = _train()
    x = data.x[: arguments.rows]
    reference = data.x[data.splits["train"]]
    options = dict(groups=arguments.groups, baseline="mean", reference=reference)

    # ---- exact Shapley values: paralab vs shap.KernelExplainer (all coalitions) ----------
    explain(model, x[:4], method="exact_shapley", **options)  # warm-up
    ours_time, ours = _best(lambda: explain(model, x, method="exact_shapley", **options),
                            arguments.repeats)
    function = ClassOutput(model, (x.shape[1],))
    target = ours.target
    baseline = ours.baseline

    groups = [np.nonzero(row.numpy())[0] for row in ours.players.membership.cpu()]
    background = DenseData(baseline.reshape(1, -1).double().numpy(), list(ours.players.names),
                           groups)

    def probabilities(rows: np.ndarray) -> np.ndarray:
        # every class's probability: KernelExplainer explains each output, we read the
        # predicted class's column (the same scalar paralab explains)
        with torch.no_grad():
            return function(torch.as_tensor(rows, dtype=torch.float32)).double().numpy()

    explainer = shap.KernelExplainer(probabilities, background)
    started = time.perf_counter()
    values = explainer.shap_values(x.double().numpy(), nsamples=2 ** arguments.groups,
                                   l1_reg=False, silent=True)
    kernel_time = time.perf_counter() - started
    values = np.asarray(values)  # (rows, groups, classes)
    picked = values[np.arange(len(x)), :, target.numpy()]
    kernel = torch.as_tensor(picked, dtype=torch.float32)
    shapley_diff = float((kernel - ours.values).abs().max())

    full = function.target_values(x, target)
    empty = function.target_values(baseline.expand_as(x), target)
    difference = full - empty
    ours_efficiency = float((ours.values.sum(1) - difference).abs().max())
    kernel_efficiency = float((kernel.sum(1) - difference).abs().max())

    # ---- integrated gradients: paralab batched vs Captum, same steps and quadrature -------
    captum_ig = IntegratedGradients(function)

    def run_captum():
        return captum_ig.attribute(x, baselines=baseline.unsqueeze(0), target=target,
                                   n_steps=arguments.steps, method="gausslegendre")

    def run_ours():
        return explain(model, x, method="integrated_gradients", steps=arguments.steps,
                       target=target, baseline=baseline).values

    run_ours(), run_captum()  # warm-up
    ig_repeats = max(arguments.repeats * 4, 10)
    captum_times, ours_times = [], []
    for _ in range(ig_repeats):  # interleaved, so load changes hit both sides alike
        started = time.perf_counter()
        theirs_ig = run_captum()
        captum_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        ours_ig = run_ours()
        ours_times.append(time.perf_counter() - started)
    ig_diff = float((ours_ig - theirs_ig).abs().max())
    ours_ig_gap = float((ours_ig.sum(1) - difference).abs().max())
    captum_ig_gap = float((theirs_ig.sum(1) - difference).abs().max())

    summary = {
        "benchmark": "explain",
        "dataset": "breast_cancer",
        "rows": len(x),
        "groups": arguments.groups,
        "coalitions": 2 ** arguments.groups,
        "torch_threads": torch.get_num_threads(),
        "model_test_accuracy": round(accuracy, 4),
        "paralab_accuracy": round(accuracy, 4),
        "peer_accuracy": round(accuracy, 4),
        "shapley_paralab_seconds": round(ours_time, 4),
        "shapley_kernelexplainer_seconds": round(kernel_time, 3),
        "shapley_speedup_vs_kernelexplainer": round(kernel_time / ours_time, 1),
        "shapley_max_abs_diff": shapley_diff,
        "shapley_paralab_efficiency_error": ours_efficiency,
        "shapley_kernelexplainer_efficiency_error": kernel_efficiency,
        "ig_steps": arguments.steps,
        "ig_paralab_seconds_median": round(statistics.median(ours_times), 5),
        "ig_captum_seconds_median": round(statistics.median(captum_times), 5),
        "ig_speedup_vs_captum": round(statistics.median(captum_times)
                                      / statistics.median(ours_times), 2),
        "ig_max_abs_diff": ig_diff,
        "ig_paralab_completeness_error": ours_ig_gap,
        "ig_captum_completeness_error": captum_ig_gap,
        "shap_version": shap.__version__,
    }
    print(f"exact Shapley, {len(x)} rows x {2 ** arguments.groups} coalitions: paralab "
          f"{ours_time:.3f} s, KernelExplainer {kernel_time:.1f} s "
          f"({summary['shapley_speedup_vs_kernelexplainer']}x), max |diff| {shapley_diff:.2e}")
    print(f"integrated gradients, {arguments.steps} steps: paralab "
          f"{summary['ig_paralab_seconds_median']:.4f} s, Captum "
          f"{summary['ig_captum_seconds_median']:.4f} s ({summary['ig_speedup_vs_captum']}x), "
          f"max |diff| {ig_diff:.2e}")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
