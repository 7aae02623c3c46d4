"""Benchmark: paralab_explain against shap's KernelExplainer and Captum's IntegratedGradients.

Work (the same for both sides, in the same process, 2 torch threads):

* small tanh MLPs trained on Wisconsin breast cancer (455 train rows): 30-64-2 and 30-64-64-2
  (the second spends more of the time in the model itself, which both sides pay alike);
* 200 explained rows, the 30 features in 12 contiguous groups, the training mean as baseline,
  the predicted class's probability as the explained output;
* exact Shapley values: paralab's enumeration of all 2^12 coalitions in batched forward passes
  vs ``shap.KernelExplainer`` with its native feature groups (``DenseData``) and
  ``nsamples = 2^12`` (it then enumerates every coalition, so both compute the same values);
* integrated gradients, 50 Gauss-Legendre steps: paralab's batched code vs Captum's;
* permutation-sampling Shapley values at 32 and 64 players (seeded tanh MLPs on Gaussian rows,
  a background of 10 sampled rows): paralab's batched antithetic sampler vs
  ``shap.PermutationExplainer`` with the same number of forward-and-reverse orders (the same
  estimator, so equal expected error; paralab's standard error is reported beside the two
  estimates' difference);
* SmoothGrad (16 noisy copies) and Grad-CAM of a seeded LeNet-like CNN on 8x8 digits rows:
  paralab's batched code vs Captum's ``NoiseTunnel(Saliency)`` and ``LayerGradCam`` (same
  seed, same values).

Prints a readable table, then one JSON object as the last line.
    python benchmarks/explain.py [--rows 200] [--repeats 5] [--parts exact,permutation]
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


def compare_permutation(players: int, arguments: argparse.Namespace) -> dict[str, object]:
    """paralab's permutation_shapley vs shap.PermutationExplainer at equal orders."""
    import shap
    from torch import nn

    from paralab_explain.background import resolve_background
    from paralab_explain.explainers import explain
    from paralab_explain.model_output import ClassOutput

    torch.manual_seed(players)
    model = nn.Sequential(nn.Linear(players, 64), nn.Tanh(), nn.Linear(64, 2))
    generator = torch.Generator().manual_seed(0)
    train = torch.randn(500, players, generator=generator)
    x = torch.randn(arguments.permutation_rows, players, generator=generator)
    background = resolve_background("sample:10", train, seed=0)
    orders = arguments.permutation_orders

    def run_ours():
        return explain(model, x, method="permutation_shapley", background=background,
                       permutations=orders, target=1, output="logit")

    run_ours()  # warm-up
    ours_time, ours = _best(run_ours, arguments.repeats)
    function = ClassOutput(model, (players,), "logit")

    def output(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return function(torch.as_tensor(rows, dtype=torch.float32))[:, 1].double().numpy()

    explainer = shap.PermutationExplainer(
        output, shap.maskers.Independent(background.rows.double().numpy()), seed=0)
    explainer(x[:1].double().numpy(), max_evals=2 * (2 * players + 1), silent=True)  # warm-up
    # best of the same repeats as paralab's (one call was measured before, and one stall of
    # a shared machine made a single call's ratio swing from 0.3x to 10x between runs)
    shap_time, explained = _best(
        lambda: explainer(x.double().numpy(), max_evals=(orders // 2) * (2 * players + 1),
                          silent=True), arguments.repeats)
    theirs = explained.values
    difference = np.abs(theirs - ours.values.double().numpy())
    error = ours.standard_error.double().numpy()
    label = f"permutation{players}"
    print(f"permutation Shapley, {players} players, {len(x)} rows x {orders} orders x "
          f"{len(background)} background rows: paralab {ours_time:.3f} s, PermutationExplainer "
          f"{shap_time:.1f} s ({shap_time / ours_time:.1f}x); mean standard error {error.mean():.1e}, "
          f"max |diff| / (sqrt 2 x SE) {float((difference / (np.sqrt(2) * error)).max()):.2f}")
    return {
        f"{label}_paralab_seconds": round(ours_time, 4),
        f"{label}_permutationexplainer_seconds": round(shap_time, 3),
        f"{label}_speedup_vs_permutationexplainer": round(shap_time / ours_time, 1),
        f"{label}_paralab_standard_error_mean": float(error.mean()),
        f"{label}_max_abs_diff": float(difference.max()),
        f"{label}_max_diff_in_standard_errors": float(
            (difference / (np.sqrt(2) * error)).max()),
    }


def compare_convolutional(arguments: argparse.Namespace) -> dict[str, object]:
    """SmoothGrad and Grad-CAM: paralab vs Captum on the same rows (equal values)."""
    from captum import attr
    from torch import nn

    from paralab import AsImage, load_dataset
    from paralab_explain.explainers import explain
    from paralab_explain.model_output import ClassOutput

    torch.manual_seed(0)
    model = nn.Sequential(AsImage((1, 8, 8)), nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(32 * 16, 10))
    x = load_dataset("digits").x[: arguments.conv_rows]
    function = ClassOutput(model, (64,))
    target = function(x).argmax(dim=1)
    layer = model[4]
    options = dict(target=target, image_shape=(1, 8, 8))

    def ours_smooth():
        return explain(model, x, method="smoothgrad", noise_samples=16, stdev=0.1, seed=0,
                       **options).values

    def captum_smooth():
        torch.manual_seed(0)
        return attr.NoiseTunnel(attr.Saliency(function)).attribute(
            x, nt_type="smoothgrad", nt_samples=16, stdevs=0.1, target=target)

    def ours_cam():
        return explain(model, x, method="gradcam", layer="4", **options).layer

    def captum_cam():
        return attr.LayerGradCam(function, layer).attribute(x, target=target)

    fields: dict[str, object] = {"conv_rows": len(x)}
    for name, ours, theirs in (("smoothgrad", ours_smooth, captum_smooth),
                               ("gradcam", ours_cam, captum_cam)):
        ours(), theirs()  # warm-up
        ours_times, their_times = [], []
        for _ in range(max(arguments.repeats * 4, 10)):  # interleaved: load hits both alike
            started = time.perf_counter()
            mine = ours()
            ours_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            other = theirs()
            their_times.append(time.perf_counter() - started)
        a, b = statistics.median(ours_times), statistics.median(their_times)
        print(f"{name}, {len(x)} rows: paralab {a * 1000:.1f} ms, Captum {b * 1000:.1f} ms "
              f"({b / a:.2f}x), max |diff| {float((mine - other).abs().max()):.1e}")
        fields.update({f"{name}_paralab_seconds_median": round(a, 5),
                       f"{name}_captum_seconds_median": round(b, 5),
                       f"{name}_speedup_vs_captum": round(b / a, 2),
                       f"{name}_max_abs_diff": float((mine - other).abs().max())})
    return fields


def main() -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--groups", type=int, default=12)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", default="64;64,64",
                        help="hidden widths of each MLP compared, ';' between models")
    parser.add_argument("--parts", default="exact,permutation,conv",
                        help="what to compare: exact (Shapley and IG), permutation, conv")
    parser.add_argument("--conv-rows", type=int, default=64)
    parser.add_argument("--permutation-rows", type=int, default=2)
    parser.add_argument("--permutation-orders", type=int, default=100)
    parser.add_argument("--permutation-players", default="32,64")
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
    parts = set(arguments.parts.split(","))
    accuracies = []
    for widths in arguments.hidden.split(";") if "exact" in parts else ():
        fields = compare([int(width) for width in widths.split(",")], arguments)
        summary.update(fields)
        accuracies += [value for key, value in fields.items() if key.endswith("_accuracy")]
    if accuracies:
        # both sides explain the same trained models: their accuracy is the models'
        summary["paralab_accuracy"] = summary["peer_accuracy"] = round(min(accuracies), 4)
    for players in arguments.permutation_players.split(",") if "permutation" in parts else ():
        summary.update(compare_permutation(int(players), arguments))
    if "conv" in parts:
        summary.update(compare_convolutional(arguments))
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
