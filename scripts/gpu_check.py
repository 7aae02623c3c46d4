"""Run paralab's CUDA paths on a GPU machine and compare them with the CPU, in one short run.

CI has no GPU, so this is the check of the device-agnostic code: every bundled plugin's
example experiment runs on ``cuda`` and on ``cpu`` from the same seed (main metric and wall
time of each, and whether the two agree within ``--tolerance``), and the native quantum
simulator's states and gradients on CUDA are compared with the CPU in double precision, then
one training step is timed from 12 to 20 qubits; and 8 and 64 stacked seeds of the digits MLP
(``paralab.run_seeds``) are timed against one seed (goal: 64 seeds at most 2x one). Experiments needing real data files read
them from ``$PARALAB_DATA`` and are skipped (with the reason) without it. A failure in one
check is recorded and the others still run. Prints one line per check and one JSON object
as the last line (also written to ``--output`` when given).

    PYTHONPATH=core:registry:plugins python scripts/gpu_check.py [--output gpu.json]

Metrics are not bit-equal across devices (different kernels, atomics in reductions), and a
few runs amplify that over training, so agreement is a tolerance, not equality.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
GPU = "cuda"  # --dry-run: "cpu", to test this script on a machine without a GPU

# (example file, metric to compare, needs $PARALAB_DATA, overrides that keep the run short)
EXAMPLES: list[tuple[str, str, bool, dict[str, Any]]] = [
    ("digits_mlp.toml", "test/accuracy", False, {}),
    ("continual_split_digits.toml", "average_accuracy", False, {}),
    ("fewshot_digits_protonet.toml", "test/accuracy", False,
     {"protocol": {"meta_iterations": 100, "eval_episodes": 200}}),
    ("federated_digits.toml", "test/accuracy", False, {"protocol": {"rounds": 10}}),
    ("fairness_audit.toml", "test/accuracy", False, {}),
    ("neurosymbolic_addition.toml", "test/sum_accuracy", False, {"protocol": {"epochs": 1}}),
    ("explain_breast_cancer.toml", "test/accuracy", False, {}),
    ("quantum_vqc_iris.toml", "test/accuracy", False, {}),
    ("flagship_fair_federated_quantum.toml", "test/accuracy", True, {}),
    ("continual_quantum_fairness.toml", "average_accuracy", True, {}),
]


TOLERANCES = {"continual_quantum_fairness.toml": 0.15}
"""Examples whose metric moves with rounding more than ``--tolerance``: the continual hybrid
quantum run (Adam lr 0.05, EWC, a fairness penalty, permuted domains) spans 0.53-0.64 over
seeds 0-4 on the CPU alone, so CUDA's different reductions move it as much."""


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _spec(example: str, overrides: dict[str, Any], device: str) -> dict[str, Any]:
    import tomllib

    with open(ROOT / "examples" / example, "rb") as handle:
        spec = tomllib.load(handle)
    for key in ("model", "protocol", "method"):
        if isinstance(spec.get(key), str):
            spec[key] = {"name": spec[key]}
    spec = _merge(spec, overrides)
    spec.update(device=device, output=None)
    return spec


def _metric(metrics: dict[str, Any], wanted: str) -> float | None:
    if wanted in metrics:
        return float(metrics[wanted])
    tail = wanted.split("/")[-1]
    for key, value in metrics.items():  # e.g. "test/accuracy" reported as "accuracy"
        if key.split("/")[-1] == tail and isinstance(value, (int, float)):
            return float(value)
    return None


def check_examples(tolerance: float) -> list[dict[str, Any]]:
    import paralab

    rows = []
    for example, metric, needs_data, overrides in EXAMPLES:
        row: dict[str, Any] = {"example": example, "metric": metric}
        if needs_data and not os.environ.get("PARALAB_DATA"):
            row["skipped"] = "needs $PARALAB_DATA"
            rows.append(row)
            continue
        for label, device in (("cuda", GPU), ("cpu", "cpu")):
            try:
                started = time.perf_counter()
                result = paralab.run(_spec(example, overrides, device))
                row[f"{label}_seconds"] = round(time.perf_counter() - started, 2)
                row[label] = _metric(result.metrics, metric)
                if row[label] is None:
                    row[f"{label}_metrics"] = sorted(result.metrics)[:20]
            except Exception as error:  # noqa: BLE001 - record and go on to the next check
                row[f"{label}_error"] = f"{type(error).__name__}: {error}"[:600]
                row[f"{label}_traceback"] = traceback.format_exc()[-1500:]
        if row.get("cuda") is not None and row.get("cpu") is not None:
            row["tolerance"] = TOLERANCES.get(example, tolerance)
            row["agree"] = abs(row["cuda"] - row["cpu"]) <= row["tolerance"]
        print(json.dumps({k: v for k, v in row.items() if not k.endswith("traceback")}), flush=True)
        rows.append(row)
    return rows


def check_quantum() -> dict[str, Any]:
    from paralab_quantum.circuit import Ansatz, Circuit, Embedding
    from paralab_quantum.simulator import TorchSimulator

    report: dict[str, Any] = {"parity": []}
    generator = torch.Generator().manual_seed(0)
    for n in (1, 2, 3, 4, 5, 6, 7, 8, 10):
        for embedding in ("angle", "zz", "amplitude"):
            circuit = Circuit(n, Embedding(embedding), Ansatz(2, ("RY", "RZ"), "cnot_ring"))
            features = 2**n if embedding == "amplitude" else n
            x = torch.rand(7, features, generator=generator, dtype=torch.float64) + 0.1
            weights = torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64)
            outputs, grads, states = {}, {}, {}
            for label, device in (("cpu", "cpu"), ("cuda", GPU)):
                simulator = TorchSimulator(circuit, dtype=torch.complex128)
                w = weights.detach().clone().to(device).requires_grad_(True)
                out = simulator(x.to(device), w)
                (out * torch.arange(1, out.shape[1] + 1, device=device)).sum().backward()
                outputs[label], grads[label] = out.detach().cpu(), w.grad.cpu()
                with torch.no_grad():
                    states[label] = simulator.state(x.to(device), weights.to(device)).cpu()
            report["parity"].append({
                "n_qubits": n, "embedding": embedding,
                "state_diff": float((states["cpu"] - states["cuda"]).abs().max()),
                "output_diff": float((outputs["cpu"] - outputs["cuda"]).abs().max()),
                "grad_diff": float((grads["cpu"] - grads["cuda"]).abs().max()),
            })
    worst = {key: max(row[key] for row in report["parity"])
             for key in ("state_diff", "output_diff", "grad_diff")}
    report["worst"] = worst
    report["parity_ok"] = worst["state_diff"] < 1e-10 and worst["grad_diff"] < 1e-9
    print(json.dumps({"quantum_parity_worst": worst}), flush=True)

    from paralab.data.shared import DatasetInfo
    from paralab_quantum.models import vqc

    steps = {}
    for n in (12, 16, 20) if GPU == "cuda" else (12,):
        model = vqc(DatasetInfo("bench", (n,), 2, n), n_qubits=n, layers=3).to(GPU)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        x = torch.rand(64, n, device=GPU) * torch.pi
        y = torch.randint(0, 2, (64,), device=GPU)

        def step(model: torch.nn.Module = model, optimizer: torch.optim.Optimizer = optimizer,
                 x: torch.Tensor = x, y: torch.Tensor = y) -> None:
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()

        for _ in range(3):
            step()
        _synchronize()
        started = time.perf_counter()
        for _ in range(10):
            step()
        _synchronize()
        steps[f"{n}q_ms"] = round((time.perf_counter() - started) * 100, 3)
    report["training_step_batch64_layers3"] = steps
    print(json.dumps({"quantum_cuda_step": steps}), flush=True)
    return report


def check_seeds(counts: tuple[int, ...] = (1, 8, 64)) -> dict[str, Any]:
    """Issue 16's GPU goal: K stacked seeds of the digits MLP (``paralab.run_seeds``) cost at
    most 2x one seed at K = 64, where such small models are bound by kernel launches; and the
    stacked seeds' accuracies equal their separate runs' on the same device (checked at K = 8)."""
    import paralab

    spec = {"name": "gpu_seeds", "dataset": "digits", "model": {"name": "mlp"},
            "protocol": {"name": "supervised", "epochs": 5, "batch_size": 32},
            "method": {"name": "sgd", "lr": 0.05, "momentum": 0.9}, "output": None,
            "device": GPU}
    paralab.run_seeds(spec, [0, 1])  # warm-up: kernels, the dataset cache
    out: dict[str, Any] = {}
    started = time.perf_counter()
    paralab.run(spec)
    _synchronize()
    one = time.perf_counter() - started
    out["seconds_1_seed"] = one
    for k in counts[1:]:
        started = time.perf_counter()
        stacked = paralab.run_seeds(spec, list(range(k)))
        _synchronize()
        seconds = time.perf_counter() - started
        out[f"cost_{k}_seeds_over_1"] = seconds / one
        out[f"stacked_{k}"] = stacked[0].provenance["seed_axis"]["stacked"]
        out[f"peak_memory_per_seed_bytes_{k}"] = stacked[0].provenance["seed_axis"].get(
            "peak_memory_per_seed_bytes")
        if k == 8:
            # Equal to float tolerance, as docs/seeds.md states: weights ~1e-7 apart can move
            # one test example across a decision boundary, so each seed's accuracy may differ
            # from its separate run's by one example of the test split.
            separate = paralab.run_seeds(spec, list(range(k)), vectorize=False)
            rows = len(paralab.load_dataset("digits").splits["test"])
            apart = max(abs(a.metrics["test/accuracy"] - b.metrics["test/accuracy"])
                        for a, b in zip(stacked, separate))
            out["max_accuracy_difference_8"] = apart
            out["accuracies_equal_8"] = apart <= 1.0 / rows + 1e-9
        print(f"seeds: {k} stacked cost {seconds / one:.2f}x one seed", flush=True)
    out["goal_64_seeds_at_most_2x"] = out.get("cost_64_seeds_over_1", float("inf")) <= 2.0
    return out


def _synchronize() -> None:
    if GPU == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    global GPU
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--output", default="")
    parser.add_argument("--dry-run", action="store_true",
                        help="the CPU stands in for CUDA: tests this script without a GPU")
    args = parser.parse_args()
    os.environ.setdefault("PARALAB_QUIET", "1")
    if args.dry_run:
        GPU = "cpu"
    elif not torch.cuda.is_available():
        sys.exit("gpu_check: torch sees no CUDA device (--dry-run runs it on the CPU)")
    report: dict[str, Any] = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if GPU == "cuda" else "cpu (dry run)",
        "python": sys.version.split()[0],
    }
    for name, check in (("examples", lambda: check_examples(args.tolerance)),
                        ("quantum", check_quantum), ("seeds", check_seeds)):
        try:
            report[name] = check()
        except Exception:  # noqa: BLE001 - one broken check must not hide the others
            report[f"{name}_error"] = traceback.format_exc()[-3000:]
            print(report[f"{name}_error"], flush=True)
    rows = report.get("examples", [])
    report["summary"] = {
        "examples_run": sum(1 for r in rows if "cuda" in r or "cuda_error" in r),
        "cuda_errors": [r["example"] for r in rows if "cuda_error" in r],
        "disagree": [r["example"] for r in rows if r.get("agree") is False],
        "quantum_parity_ok": report.get("quantum", {}).get("parity_ok"),
        "seeds_64_at_most_2x": report.get("seeds", {}).get("goal_64_seeds_at_most_2x"),
    }
    text = json.dumps(report)
    if args.output:
        Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
