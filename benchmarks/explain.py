"""Benchmark: paralab_explain against shap's KernelExplainer and Captum's IntegratedGradients.

Work (the same for both sides, in the same process, 2 torch threads):

* small tanh MLPs trained on Wisconsin breast cancer (455 train rows): 30-64-2 and 30-64-64-2
  (the second spends more of the time in the model itself, which both sides pay alike);
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


def _train(hidden: list[int], seed: int = 0):
    from paralab_explain.training import train_mlp

    model, data = train_mlp("breast_cancer", hidden, lr=0.005, seed=seed)
    test = data.splits["test"]
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


def compare(hidden: list[int], arguments: argparse.Namespace) -> dict[str, object]:
    """Both comparisons on one trained MLP; the fields of the JSON line for it."""
    import shap
    from captum.attr import IntegratedGradients
    from shap.utils._legacy import DenseData

    from paralab_explain.explainers import explain
    from paralab_explain.model_output import ClassOutput

    model, data, accuracy = _train(hidden)
    x = data.x[: arguments.rows]
    reference = data.x[data.splits["train"]]
    options = dict(groups=arguments.groups, baseline="mean", reference=reference)
    label = "mlp" + "x".join(str(width) for width in hidden)

    # ---- exact Shapley values: paralab vs shap.KernelExplainer (all coalitions) ----------
    explain(model, x[:4], method="exact_shapley", **options)  # warm-up
    ours_time, ours = _best(lambda: explain(model, x, method="exact_shapley", **options),
                            arguments.repeats)
    function = ClassOutput(model, (x.shape[1],))
    target, baseline = ours.target, ours.baseline
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
    kernel = torch.as_tensor(values[np.arange(len(x)), :, target.numpy()], dtype=torch.float32)
    shapley_diff = float((kernel - ours.values).abs().max())
    difference = function.target_values(x, target) - function.target_values(
        baseline.expand_as(x), target)

    # ---- integrated gradients: paralab batched vs Captum, same steps and quadrature -------
    captum_ig = IntegratedGradients(function)

    def run_captum():
        return captum_ig.attribute(x, baselines=baseline.unsqueeze(0), target=target,
                                   n_steps=arguments.steps, method="gausslegendre")

    def run_ours():
        return explain(model, x, method="integrated_gradients", steps=arguments.steps,
                       target=target, baseline=baseline).values

    run_ours(), run_captum()  # warm-up
    captum_times, ours_times = [], []
    for _ in range(max(arguments.repeats * 4, 10)):  # interleaved: load hits both alike
        started = time.perf_counter()
        theirs_ig = run_captum()
        captum_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        ours_ig = run_ours()
        ours_times.append(time.perf_counter() - started)
    ours_ig_time, captum_ig_time = statistics.median(ours_times), statistics.median(captum_times)
    print(f"{label} (test accuracy {accuracy:.3f}): exact Shapley, {len(x)} rows x "
          f"{2 ** arguments.groups} coalitions: paralab {ours_time:.3f} s, KernelExplainer "
          f"{kernel_time:.1f} s ({kernel_time / ours_time:.1f}x), max |diff| {shapley_diff:.1e}; "
          f"IG {arguments.steps} steps: paralab {ours_ig_time:.4f} s, Captum "
          f"{captum_ig_time:.4f} s ({captum_ig_time / ours_ig_time:.2f}x)")
    return {
        f"{label}_test_accuracy": round(accuracy, 4),
        f"{label}_shapley_paralab_seconds": round(ours_time, 4),
        f"{label}_shapley_kernelexplainer_seconds": round(kernel_time, 3),
        f"{label}_shapley_speedup_vs_kernelexplainer": round(kernel_time / ours_time, 1),
        f"{label}_shapley_max_abs_diff": shapley_diff,
        f"{label}_shapley_paralab_efficiency_error": float(
            (ours.values.sum(1) - difference).abs().max()),
        f"{label}_shapley_kernelexplainer_efficiency_error": float(
            (kernel.sum(1) - difference).abs().max()),
        f"{label}_ig_paralab_seconds_median": round(ours_ig_time, 5),
        f"{label}_ig_captum_seconds_median": round(captum_ig_time, 5),
        f"{label}_ig_speedup_vs_captum": round(captum_ig_time / ours_ig_time, 2),
        f"{label}_ig_max_abs_diff": float((ours_ig - theirs_ig).abs().max()),
        f"{label}_ig_paralab_completeness_error": float(
            (ours_ig.sum(1) - difference).abs().max()),
        f"{label}_ig_captum_completeness_error": float(
            (theirs_ig.sum(1) - difference).abs().max()),
    }


def main() -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--groups", type=int, default=12)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", default="64;64,64",
                        help="hidden widths of each MLP compared, ';' between models")
    arguments = parser.parse_args()
    torch.set_num_threads(2)
    warnings.filterwarnings("ignore")
    import shap

    summary: dict[str, object] = {
        "benchmark": "explain",
        "dataset": "breast_cancer",
        "rows": arguments.rows,
        "groups": arguments.groups,
        "coalitions": 2 ** arguments.groups,
        "ig_steps": arguments.steps,
        "torch_threads": torch.get_num_threads(),
        "shap_version": shap.__version__,
    }
    accuracies = []
    for widths in arguments.hidden.split(";"):
        fields = compare([int(width) for width in widths.split(",")], arguments)
        summary.update(fields)
        accuracies += [value for key, value in fields.items() if key.endswith("_accuracy")]
    # both sides explain the same trained models: their accuracy is the models'
    summary["paralab_accuracy"] = summary["peer_accuracy"] = round(min(accuracies), 4)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
