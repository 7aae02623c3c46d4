"""A study of the digits MLP (examples/digits_mlp.toml), 5 seeds x 4 learning rates = 20 runs,
three ways, the same runs on every side:

* ``local``: the study's local executor in one process (``paralab sweep`` would start one
  interpreter, then run the 20 runs in it); timed as a fresh process, start-up included
  (``local_one_process_s``), and inside this already-started process (``local_in_process_s``);
* ``shell loop``: 20 ``paralab run SPEC --seed S`` processes, one after another, as a shell
  ``for`` loop over the seeds and learning rates does;
* ``ray tune``: the 20 runs as trials of Ray Tune's ``Tuner`` with its default settings
  (a grid over learning rate x seed, one CPU per trial, trials in parallel on every core),
  Ray's start included.

Every run uses one torch thread and the CPU, so each side's runs are the same arithmetic:
``per_run_metrics_identical`` says the local executor's final metrics equal those of the
single ``paralab run`` of the same seed and learning rate, bit for bit
(``per_run_metrics_max_abs_difference`` the largest difference; ``local_seeds_stacked`` > 1
when ``run_seeds`` trained a configuration's seeds as one stacked model, which agrees with
the single runs to float tolerance rather than bit for bit).

    python benchmarks/study.py            # the full study (~5 minutes on 2 cores)
    python benchmarks/study.py --quick    # 2 seeds x 2 learning rates, 3 epochs

Prints one JSON object as its last line. Goals: ``speedup_local_vs_shell_loop`` >= 5 and
``speedup_local_vs_ray_tune`` > 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[1]
SPEC = REPOSITORY / "examples" / "digits_mlp.toml"
THREADS = 1


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS),
                "PARALAB_QUIET": "1", "MPLBACKEND": "Agg"})
    return env


def spec_text(lr: float, epochs: int | None) -> str:
    """The example spec with one learning rate (what a shell loop would keep as files)."""
    text = SPEC.read_text()
    text = text.replace("lr = 0.05", f"lr = {lr!r}").replace('device = "auto"', 'device = "cpu"')
    if epochs is not None:
        text = text.replace("epochs = 10", f"epochs = {epochs}")
    assert f"lr = {lr!r}" in text and 'device = "cpu"' in text
    return text


def study_file(folder: Path, seeds: list[int], lrs: list[float], epochs: int | None) -> Path:
    overrides = ['device="cpu"'] + ([f"protocol.epochs={epochs}"] if epochs else [])
    path = folder / "bench_study.toml"
    path.write_text(
        "[study]\n"
        f"spec = {json.dumps(str(SPEC))}\n"
        f"seeds = {json.dumps(seeds)}\n"
        f"grid = {{ \"method.lr\" = {json.dumps(lrs)} }}\n"
        f"overrides = {json.dumps(overrides)}\n"
        f"output = {json.dumps(str(folder / 'local'))}\n")
    return path


def local_one_process(study: Path, output: Path) -> float:
    """``paralab sweep`` in a fresh interpreter (the lead's CLI calls this function)."""
    code = ("import sys; from paralab.study.cli import sweep_main; "
            f"sys.exit(sweep_main({str(study)!r}, output={str(output)!r}))")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=environment(), capture_output=True,
                          text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the local study failed:\n{done.stderr[-3000:]}")
    return seconds


def local_in_process(study: Path,
                     output: Path) -> tuple[float, dict[tuple[float, int], Any], int]:
    """The study in this process; also how many seeds ``run_seeds`` stacked at most (1: the
    seeds ran one after another)."""
    import torch

    import paralab

    torch.set_num_threads(THREADS)
    started = time.perf_counter()
    finished = paralab.run_study(study, output=str(output))
    seconds = time.perf_counter() - started
    lr_of = {c["label"]: c["values"]["method.lr"] for c in finished.configurations}
    metrics = {(lr_of[run.configuration], run.seed): run.metrics for run in finished.runs
               if run.status == "completed"}
    stacked = max((int((r.provenance.get("seed_axis") or {}).get("stacked", 1))
                   for r in finished.results()), default=1)
    return seconds, metrics, stacked


def shell_loop(folder: Path, seeds: list[int], lrs: list[float],
               epochs: int | None) -> tuple[float, dict[tuple[float, int], Any]]:
    paralab_command = Path(sys.executable).with_name("paralab")
    command = [str(paralab_command)] if paralab_command.exists() else \
        [sys.executable, "-m", "paralab"]
    specs = {}
    for lr in lrs:
        specs[lr] = folder / f"digits_lr{lr}.toml"
        specs[lr].write_text(spec_text(lr, epochs))
    started = time.perf_counter()
    outputs = {}
    for lr in lrs:
        for seed in seeds:
            out = folder / "shell" / f"lr{lr}-seed{seed}"
            done = subprocess.run([*command, "run", str(specs[lr]), "--seed", str(seed),
                                   "--output", str(out)], env=environment(),
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"paralab run failed:\n{done.stderr[-3000:]}")
            outputs[(lr, seed)] = out
    seconds = time.perf_counter() - started
    metrics = {}
    for key, out in outputs.items():
        [result] = list(out.glob("*/result.json"))
        metrics[key] = json.loads(result.read_text())["metrics"]
    return seconds, metrics


def _tune_trial(config: dict[str, Any]) -> None:
    import torch
    from ray import tune

    import paralab

    torch.set_num_threads(THREADS)
    result = paralab.run(config["spec"], overrides=[
        f"method.lr={config['lr']!r}", f"seed={config['seed']}", 'device="cpu"',
        f"output={json.dumps(config['output'])}",
        *([f"protocol.epochs={config['epochs']}"] if config["epochs"] else [])])
    tune.report({key: value for key, value in result.metrics.items()
                 if isinstance(value, float)})


def ray_tune(folder: Path, seeds: list[int], lrs: list[float],
             epochs: int | None) -> tuple[float, dict[tuple[float, int], Any], int]:
    import ray
    from ray import tune

    os.environ.update({"OMP_NUM_THREADS": str(THREADS), "PARALAB_QUIET": "1"})
    started = time.perf_counter()
    tuner = tune.Tuner(
        _tune_trial,
        param_space={"lr": tune.grid_search(lrs), "seed": tune.grid_search(seeds),
                     "spec": str(SPEC), "epochs": epochs,
                     "output": str(folder / "tune-runs")},
        run_config=tune.RunConfig(storage_path=str(folder / "tune"), name="bench"),
    )
    grid = tuner.fit()
    seconds = time.perf_counter() - started
    metrics = {(r.config["lr"], r.config["seed"]):
               {k: v for k, v in r.metrics.items() if k.startswith("test/")} for r in grid}
    cpus = int(ray.cluster_resources().get("CPU", 0))
    ray.shutdown()
    return seconds, metrics, cpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds x 2 learning rates")
    parser.add_argument("--keep", help="keep the run folders here (default: a temp folder)")
    args = parser.parse_args()
    seeds = [0, 1] if args.quick else [0, 1, 2, 3, 4]
    lrs = [0.01, 0.1] if args.quick else [0.01, 0.02, 0.05, 0.1]
    epochs = 3 if args.quick else None
    folder = Path(args.keep or tempfile.mkdtemp(prefix="paralab-bench-study-"))
    folder.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    study = study_file(folder, seeds, lrs, epochs)
    try:
        one_process = local_one_process(study, folder / "local-process")
        in_process, local, stacked = local_in_process(study, folder / "local")
        loop_seconds, loop = shell_loop(folder, seeds, lrs, epochs)
        tune_seconds, tuned, ray_cpus = ray_tune(folder, seeds, lrs, epochs)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    runs = len(seeds) * len(lrs)
    final = ("test/accuracy", "test/loss")
    report = {
        "benchmark": "study",
        "workload": f"digits MLP, {len(seeds)} seeds x {len(lrs)} learning rates "
                    f"({runs} runs), {epochs or 10} epochs, CPU, {THREADS} torch thread per run",
        "quick": args.quick,
        "runs": runs,
        "local_one_process_s": round(one_process, 2),
        "local_in_process_s": round(in_process, 2),
        "shell_loop_s": round(loop_seconds, 2),
        "ray_tune_s": round(tune_seconds, 2),
        "shell_loop_s_per_run": round(loop_seconds / runs, 2),
        "local_in_process_s_per_run": round(in_process / runs, 3),
        "speedup_local_vs_shell_loop": round(loop_seconds / one_process, 2),
        "speedup_local_vs_ray_tune": round(tune_seconds / one_process, 2),
        "speedup_local_in_process_vs_shell_loop": round(loop_seconds / in_process, 2),
        "per_run_metrics_identical": len(local) == runs and all(
            {k: local[key][k] for k in final} == {k: loop[key][k] for k in final}
            for key in local),
        "ray_tune_metrics_identical": len(tuned) == runs and all(
            {k: local[key][k] for k in final} == {k: tuned[key][k] for k in final}
            for key in local),
        "per_run_metrics_max_abs_difference": max(
            abs(local[key][k] - loop[key][k]) for key in local for k in final),
        "local_seeds_stacked": stacked,
        "ray_tune_cpus": ray_cpus,
        "cpu_count": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
