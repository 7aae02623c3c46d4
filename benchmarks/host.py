"""Host overheads: hook dispatch through paralab against bare pluggy, the cold start of
``paralab plugins`` against ``python -c "import torch"``, and a whole small ``paralab.run``
(validate, build, interface checks, per-run plugin manager, health checks, evaluation) against
a bare PyTorch loop taking the same optimizer steps.

    python benchmarks/host.py

Prints one JSON object as its last line. Goals: dispatch within 1.5x of bare pluggy
(``dispatch_speedup`` >= 0.67) and ``paralab plugins`` under 0.5 s.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import timeit

import pluggy

from paralab import hookimpl, hookspecs
from paralab.host import Hooks
from paralab.testing import isolated_registry


def observers(count: int) -> list[object]:
    class Observer:
        PARALAB_API = "1.0"

        def __init__(self) -> None:
            self.calls = 0

        @hookimpl
        def paralab_after_phase(self, run: object, phase: object) -> None:
            self.calls += 1

    return [Observer() for _ in range(count)]


def dispatch(count: int = 8, number: int = 20000, repeat: int = 7) -> dict[str, float]:
    bare = pluggy.PluginManager(hookspecs.PROJECT)
    bare.add_hookspecs(hookspecs)
    for position, observer in enumerate(observers(count)):
        bare.register(observer, name=f"observer{position}")
    registry = isolated_registry(*[(f"observer{i}", o) for i, o in enumerate(observers(count))])
    hooks = Hooks(registry)
    same = len(registry.pm.hook.paralab_after_phase.get_hookimpls())
    assert same == len(bare.hook.paralab_after_phase.get_hookimpls()) == count, "same hookimpls"
    run, phase = object(), object()
    bare_call = bare.hook.paralab_after_phase
    pluggy_times, paralab_times = [], []
    for _ in range(repeat):  # interleaved, so load on the machine hits both alike
        pluggy_times.append(timeit.timeit(lambda: bare_call(run=run, phase=phase), number=number))
        paralab_times.append(timeit.timeit(lambda: hooks.after_phase(run, phase), number=number))
    pluggy_time, paralab_time = min(pluggy_times) / number, min(paralab_times) / number
    return {
        "observers": count,
        "pluggy_us": pluggy_time * 1e6,
        "paralab_us": paralab_time * 1e6,
        "dispatch_speedup": pluggy_time / paralab_time,
    }


def wall(command: list[str], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def cold_start() -> dict[str, float]:
    plugins = wall([sys.executable, "-m", "paralab", "plugins"])
    torch = wall([sys.executable, "-c", "import torch"])
    return {"plugins_s": plugins, "import_torch_s": torch, "cold_start_speedup": torch / plugins}


def run_overhead(repeat: int = 7) -> dict[str, float]:
    """A 2-epoch digits MLP run through ``paralab.run`` (no output folder) against the same
    steps in a bare loop (same model, batches, optimizer; one evaluation per epoch)."""
    import torch

    import paralab
    from paralab.models import mlp

    torch.set_num_threads(2)
    spec = {"dataset": "digits", "model": {"name": "mlp", "hidden": [64]}, "output": None,
            "protocol": {"name": "supervised", "epochs": 2, "batch_size": 32},
            "method": {"name": "sgd", "lr": 0.05}, "device": "cpu"}
    dataset = paralab.load_dataset("digits")
    train, test = dataset.split("train"), dataset.split("test")

    def bare() -> None:
        torch.manual_seed(0)
        model = mlp(dataset.info, hidden=[64])
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        generator = torch.Generator().manual_seed(0)
        for _ in range(2):
            model.train()
            for x, y, _rows in train.batches(32, shuffle=True, generator=generator):
                loss = torch.nn.functional.cross_entropy(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            model.eval()
            with torch.inference_mode():
                (model(test.x).argmax(1) == test.y).float().mean()

    paralab.run(spec)  # warm: the registry, imports and the dataset cache
    bare()
    paralab_times, bare_times = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        paralab.run(spec)
        paralab_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        bare()
        bare_times.append(time.perf_counter() - started)
    paralab_s, bare_s = statistics.median(paralab_times), statistics.median(bare_times)
    return {"run_paralab_s": paralab_s, "run_bare_loop_s": bare_s,
            "run_bare_over_paralab": bare_s / paralab_s}


def main() -> None:
    figures = {"benchmark": "host", **dispatch(), **cold_start(), **run_overhead()}
    print(f"hook dispatch: paralab {figures['paralab_us']:.2f} us, bare pluggy "
          f"{figures['pluggy_us']:.2f} us ({figures['observers']} implementations)")
    print(f"`paralab plugins`: {figures['plugins_s']:.3f} s; `import torch`: "
          f"{figures['import_torch_s']:.3f} s")
    print(f"a 2-epoch digits run: paralab.run {figures['run_paralab_s']:.3f} s, the same steps "
          f"in a bare loop {figures['run_bare_loop_s']:.3f} s")
    figures["goals_met"] = figures["dispatch_speedup"] >= 1 / 1.5 and figures["plugins_s"] < 0.5
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
