"""paralab_quantum: quantum machine learning for paralab.

One circuit description (:mod:`paralab_quantum.circuit`) runs on a native batched torch
statevector simulator, on PennyLane (``default.qubit`` backprop, ``lightning.qubit`` adjoint)
and on Qiskit (``Statevector``, Aer shots and noise; export to ``QuantumCircuit`` / OpenQASM 3).
It contributes the ``vqc`` and ``hybrid`` models (plain ``torch.nn.Module`` s, so any protocol
trains them), a ``kernel`` protocol with the ``qsvc`` (fidelity quantum kernel) and ``svc``
(classical baseline) methods, and the ``ad_hoc`` dataset of Havlicek et al. 2019.

This module is the entry point: it imports nothing heavy (no torch, PennyLane or Qiskit);
factories are named by strings and imported only when an experiment uses them.
"""

from __future__ import annotations

from paralab.components import DatasetSpec, MethodSpec, ModelSpec, ProtocolSpec
from paralab.hookspecs import hookimpl

PARALAB_API = "1.0"

_QUANTUM_LAYER = {
    "layers": 2,
    "rotations": ["RY", "RZ"],
    "entangler": "cnot_ring",
    "backend": "torch",
    "precision": "single",
    "memory_limit_gb": 0.0,
}


@hookimpl
def paralab_models() -> list[ModelSpec]:
    return [
        ModelSpec(
            "vqc",
            "paralab_quantum.models:vqc",
            "Variational quantum classifier: embedding (angle/amplitude/zz), rotation+entangler "
            "layers, Pauli-Z readout; backend torch (native batched simulator), pennylane "
            "(default.qubit backprop) or lightning (lightning.qubit adjoint).",
            {"n_qubits": 0, "embedding": "angle", "input_scale": 1.0, "reps": 2,
             "measurement": "expval", "readout": "linear", **_QUANTUM_LAYER},
            example={"n_qubits": 4, "embedding": "amplitude", "layers": 1},
        ),
        ModelSpec(
            "hybrid",
            "paralab_quantum.models:hybrid",
            "Hybrid network: classical layers -> one angle per qubit -> quantum layer -> linear "
            "head (any number of features on a few qubits).",
            {"hidden": [16], "n_qubits": 4, **_QUANTUM_LAYER},
            example={"hidden": [8], "n_qubits": 3, "layers": 1},
        ),
    ]


@hookimpl
def paralab_protocols() -> list[ProtocolSpec]:
    return [
        ProtocolSpec(
            "kernel",
            "paralab_quantum.protocol:KernelProtocol",
            "Fit a kernel method (qsvc, svc) once on the train split, evaluate each split; "
            "the spec needs no model.",
            {"train_split": "train", "eval_splits": ["test"]},
            uses_model=False,
        ),
    ]


_TINY_BINARY = {"name": "paralab_tiny", "n_features": 3, "n_classes": 2, "n_per_class": 12}


@hookimpl
def paralab_methods() -> list[MethodSpec]:
    return [
        MethodSpec(
            "qsvc",
            "paralab_quantum.svm:qsvc",
            "Quantum-kernel SVM: fidelity kernel |<phi(x)|phi(y)>|^2 from batched statevectors "
            "(ZZ feature map by default) into scikit-learn's SVC.",
            {"C": 1.0, "embedding": "zz", "reps": 2, "entanglement": "full", "n_qubits": 0,
             "scale": 1.0},
            protocols=("kernel",),
            example={"dataset": _TINY_BINARY},
        ),
        MethodSpec(
            "svc",
            "paralab_quantum.svm:svc",
            "Classical scikit-learn SVC (rbf by default): the baseline for qsvc.",
            {"kernel": "rbf", "C": 1.0, "gamma": "scale"},
            protocols=("kernel",),
            example={"dataset": _TINY_BINARY},
        ),
    ]


@hookimpl
def paralab_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            "ad_hoc",
            "paralab_quantum.data:ad_hoc",
            "Havlicek et al. 2019 ad hoc data (qiskit-machine-learning's ad_hoc_data): labels "
            "defined by a ZZ feature map; training_size/test_size points per class.",
            {"training_size": 20, "test_size": 5, "n": 2, "gap": 0.3, "seed": 12345},
            example={"training_size": 5, "test_size": 2},
        ),
    ]
