"""Havlicek et al. 2019: a quantum-kernel SVM on ad hoc data, and a variational classifier.

Everything runs through ``paralab.run``: the ``ad_hoc`` dataset, the ``kernel`` protocol with
the ``qsvc`` (fidelity quantum kernel) and ``svc`` (classical RBF) methods (the kernel
protocol trains no torch model, so those specs name none), and the ``vqc`` model under the
supervised protocol.
"""

from __future__ import annotations

import statistics

import paralab

_SEEDS = (12345, 1, 2, 3, 4)


def _accuracy(**spec: object) -> float:
    spec = {"output": None, "device": "cpu", **spec}
    return float(paralab.run(spec).metrics["test/accuracy"])


def _ad_hoc(seed: int, method: str) -> float:
    dataset = {"name": "ad_hoc", "training_size": 20, "test_size": 5, "n": 2, "gap": 0.3,
               "seed": seed}
    return _accuracy(name=f"havlicek-{method}-{seed}", dataset=dataset, protocol="kernel",
                     method=method)


def reproduce(quick: bool) -> dict[str, float]:
    ours = {
        "ad_hoc/qsvc_test_accuracy": _ad_hoc(_SEEDS[0], "qsvc"),
        "ad_hoc/rbf_svc_test_accuracy": _ad_hoc(_SEEDS[0], "svc"),
    }
    if not quick:
        ours["ad_hoc/qsvc_mean_5_seeds"] = statistics.fmean(_ad_hoc(s, "qsvc") for s in _SEEDS)
        ours["ad_hoc/rbf_svc_mean_5_seeds"] = statistics.fmean(_ad_hoc(s, "svc") for s in _SEEDS)
    ours["iris/vqc_test_accuracy"] = _accuracy(
        name="havlicek-iris-vqc", dataset="iris", seed=0,
        model={"name": "vqc", "layers": 3, "embedding": "angle"},
        protocol={"name": "supervised", "epochs": 15 if quick else 40, "batch_size": 16},
        method={"name": "adam", "lr": 0.05},
    )
    ours["iris/rbf_svc_test_accuracy"] = _accuracy(
        name="havlicek-iris-svc", dataset="iris", protocol="kernel", method="svc"
    )
    return ours
