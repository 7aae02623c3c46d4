"""What the seed-axis tests of every protocol share: a hook that fails one seed's run, and
the check that a refused configuration runs its seeds one after another, each as
``paralab.run`` would."""

from __future__ import annotations

from typing import Any

import paralab
from paralab import run_seeds


class FailSeed:
    """Raises in ``after_phase`` of phase ``index`` (of ``kind``, if given) of one seed's run
    only."""

    def __init__(self, seed: int, index: int = 1, kind: str | None = None) -> None:
        self.seed, self.index, self.kind = seed, index, kind

    @paralab.hookimpl
    def paralab_after_phase(self, run: Any, phase: Any) -> None:
        if (run.seed == self.seed and phase.index == self.index
                and self.kind in (None, phase.kind)):
            raise RuntimeError(f"tracker of seed {self.seed} is down")


def with_a_failing_seed(spec: Any, *, index: int = 1, kind: str | None = None
                        ) -> tuple[list[paralab.Result], list[paralab.Result]]:
    """Seeds 0, 1, 2 stacked and one after another, seed 1 failing in phase ``index``."""
    registry = paralab.get_registry()
    registry.pm.register(FailSeed(1, index, kind), name="fail-seed-1")
    try:
        stacked = run_seeds(spec, [0, 1, 2])
        separate = run_seeds(spec, [0, 1, 2], vectorize=False)
    finally:
        registry.pm.unregister(name="fail-seed-1")
    return stacked, separate


def assert_runs_one_after_another(spec: Any, why: str, metric: str,
                                  registry: Any = None) -> None:
    """Seeds 0 and 1 of ``spec`` are not stacked, say ``why``, and give what
    ``paralab.run`` gives for each seed."""
    results = run_seeds(spec, [0, 1], registry=registry)
    assert [r.status for r in results] == ["completed", "completed"]
    for result in results:
        record = result.provenance["seed_axis"]
        assert record["stacked"] == 1
        assert why in record["why_not"]
    reference = [paralab.run(spec, overrides=[f"seed={s}"], registry=registry) for s in (0, 1)]
    assert [r.metrics[metric] for r in results] == [r.metrics[metric] for r in reference]
