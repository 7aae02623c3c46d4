"""paralab_quantum: quantum machine learning for paralab.

One circuit description (:mod:`paralab_quantum.circuit`) runs on a native batched torch
statevector simulator, on PennyLane (``default.qubit`` backprop, ``lightning.qubit`` adjoint)
and on Qiskit (``Statevector``, Aer shots and noise; export to ``QuantumCircuit`` / OpenQASM 3).
It contributes the ``vqc`` and ``hybrid`` models (plain ``torch.nn.Module`` s, so any protocol
trains them), a ``kernel`` protocol with the ``qsvc`` (fidelity quantum kernel) and ``svc``
(classical baseline) methods, and the ``ad_hoc`` dataset of Havlicek et al. 2019.

Every option is declared here with its constraints, so a bad value is a spec error before
anything is built; what depends on the data (more features than the embedding takes) is the
built object's ``validate(run)``.

This module is the entry point: it imports nothing heavy (no torch, PennyLane or Qiskit);
factories are named by strings and imported only when an experiment uses them.
"""

from __future__ import annotations

from paralab import (
    DatasetSpec,
    MethodSpec,
    ModelSpec,
    Option,
    ProtocolSpec,
    count,
    hookimpl,
    non_negative,
    one_of,
    positive,
)
from paralab_quantum.choices import (
    BACKENDS,
    DIFF_METHODS,
    EMBEDDINGS,
    ENTANGLERS,
    MEASUREMENTS,
    NOISE_PLACEMENTS,
    PRECISIONS,
    READOUTS,
    ROTATIONS,
    SVC_KERNELS,
    ZZ_ENTANGLEMENTS,
)
from paralab_quantum.observables import ObservablesOption
from paralab_quantum.spec_circuit import CircuitOption

PARALAB_API = "1.0"

_QUANTUM_LAYER = {
    "layers": count(2, low=0, help="trainable rotation + entangler layers"),
    "rotations": Option(("RY", "RZ"), min_length=1, items=one_of("RY", ROTATIONS),
                        help="rotations of each qubit in a layer, one weight each"),
    "entangler": one_of("cnot_ring", ENTANGLERS, help="how each layer couples the qubits"),
    "backend": one_of("torch", BACKENDS,
                      help="torch simulator, PennyLane default.qubit or lightning.qubit"),
    "precision": one_of("single", PRECISIONS, help="complex64 or complex128 statevectors"),
    "memory_limit_gb": non_negative(0.0, help="statevector memory limit; 0: the free memory"),
    "noise_depolarizing": Option(0.0, ge=0, le=1, help=(
        "depolarizing strength after every gate (density-matrix simulation); 0: none")),
    "noise_amplitude_damping": Option(0.0, ge=0, le=1, help=(
        "amplitude damping after every gate (density-matrix simulation); 0: none")),
    "noise_phase_damping": Option(0.0, ge=0, le=1, help=(
        "phase damping after every gate (density-matrix simulation); 0: none")),
    "noise_readout": Option(0.0, ge=0, le=1, help=(
        "probability each measured qubit's bit flips (readout error); 0: none")),
    "noise_per": one_of("gate", NOISE_PLACEMENTS, help=(
        "where the noise_* channels act: after every gate on its wires, or after every "
        "circuit layer (as early as wires allow) on every wire, idle ones included")),
    "shots": count(0, low=0, help=(
        "measurement shots per Pauli term in training and evaluation (diff_method "
        "'parameter-shift', backend 'torch'); 0: exact expectations")),
    "diff_method": one_of("backprop", DIFF_METHODS, help=(
        "backprop (autograd through the simulator) or parameter-shift (the gradient from "
        "shifted, shot-sampled circuits, as on hardware)")),
    "circuit": CircuitOption((), help=(
        "a circuit of named gate layers and re-uploading blocks, replacing the embedding "
        "and ansatz: [{gate='RY', wires='all', params=['x']}, {repeat=2, layers=[...]}]")),
    "observables": ObservablesOption(
        (), help="Pauli sums measured instead of Z per qubit, e.g. ['Z0 Z1', '0.5*X0 + X1']"),
}
_N_QUBITS_AUTO = count(0, low=0, help="qubits; 0: the fewest that hold every feature")
_BACKEND_LIBRARIES = {"backend": {"pennylane": ("pennylane",),
                                  "lightning": ("pennylane", "pennylane_lightning")}}
"""What each backend imports at run time (the torch simulator needs nothing more)."""


_EMBEDDING_OPTIONS_USED_WHEN = {"input_scale": {"embedding": ("angle",)},
                                "reps": {"embedding": ("zz",)}}
"""The angle embedding alone scales its inputs and the zz feature map alone repeats: with
another embedding these options would do nothing (amplitude normalises the features)."""


@hookimpl
def paralab_models() -> list[ModelSpec]:
    return [
        ModelSpec(
            "vqc",
            "paralab_quantum.models:vqc",
            "Variational quantum classifier: embedding (angle/amplitude/zz), rotation+entangler "
            "layers, Pauli-Z readout; backend torch (native batched simulator), pennylane "
            "(default.qubit backprop) or lightning (lightning.qubit adjoint).",
            {"n_qubits": _N_QUBITS_AUTO,
             "embedding": one_of("angle", EMBEDDINGS, help="how features become a state"),
             "input_scale": Option(1.0, help="angle = input_scale * feature (angle embedding)"),
             "reps": count(2, help="repetitions of the zz feature map"),
             "measurement": one_of("expval", MEASUREMENTS,
                                   help="expectation or variance of each observable (default "
                                        "Pauli-Z of each qubit), or basis-state probabilities"),
             "readout": one_of("linear", READOUTS,
                               help="a linear layer on the outputs, or one output per class"),
             **_QUANTUM_LAYER},
            example={"n_qubits": 4, "embedding": "amplitude", "layers": 1},
            used_when=_EMBEDDING_OPTIONS_USED_WHEN,
            requires_when=_BACKEND_LIBRARIES,
            install="pip install 'paralab[quantum]'",
        ),
        ModelSpec(
            "hybrid",
            "paralab_quantum.models:hybrid",
            "Hybrid network: classical layers -> one angle per qubit -> quantum layer -> linear "
            "head (any number of features on a few qubits).",
            {"hidden": Option((16,), items=count(1), help="widths of the classical layers"),
             "n_qubits": count(4, help="qubits of the quantum layer"),
             **_QUANTUM_LAYER},
            example={"hidden": [8], "n_qubits": 3, "layers": 1},
            requires_when=_BACKEND_LIBRARIES,
            install="pip install 'paralab[quantum]'",
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
            {"train_split": Option("train", type=str, min_length=1, help="split to fit on"),
             "eval_splits": Option(("test",), items=Option("", type=str, min_length=1),
                                   help="splits to evaluate")},
            uses_model=False,
            # A kernel machine is fitted in one solve, not by gradient steps: a loss term or
            # middleware would never act (issue 13).
            method_interface="KernelMethod",
            applies_losses=False,
            middleware_hooks=(),
        ),
    ]


_TINY_BINARY = {"name": "paralab_tiny", "n_features": 3, "n_classes": 2, "n_per_class": 12}
_C = positive(1.0, help="SVM regularization (larger: fewer margin violations)")


@hookimpl
def paralab_methods() -> list[MethodSpec]:
    return [
        MethodSpec(
            "qsvc",
            "paralab_quantum.svm:qsvc",
            "Quantum-kernel SVM: fidelity kernel |<phi(x)|phi(y)>|^2 from batched statevectors "
            "(ZZ feature map by default) into scikit-learn's SVC.",
            {"C": _C,
             "embedding": one_of("zz", EMBEDDINGS, help="the feature map"),
             "reps": count(2, help="repetitions of the zz feature map"),
             "entanglement": one_of("full", ZZ_ENTANGLEMENTS, help="pairs the zz map couples"),
             "n_qubits": _N_QUBITS_AUTO,
             "scale": Option(1.0, help="angle = scale * feature (angle embedding)")},
            protocols=("kernel",),
            example={"dataset": _TINY_BINARY},
            used_when={"reps": {"embedding": ("zz",)}, "scale": {"embedding": ("angle",)}},
        ),
        MethodSpec(
            "svc",
            "paralab_quantum.svm:svc",
            "Classical scikit-learn SVC (rbf by default): the baseline for qsvc.",
            {"kernel": one_of("rbf", SVC_KERNELS, help="scikit-learn kernel (quantum: qsvc)"),
             "C": _C,
             "gamma": Option("scale", type=(str, float), ge=0,
                             help="kernel coefficient: 'scale', 'auto' or a number >= 0")},
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
            {"training_size": count(20, help="training points per class"),
             "test_size": count(5, help="test points per class"),
             "n": Option(2, type=int, choices=(2, 3), help="dimensions (qubits)"),
             "gap": Option(0.3, ge=0, lt=1, help="margin around the labelling threshold"),
             "seed": count(12345, low=0, help="qiskit-machine-learning's random seed")},
            example={"training_size": 5, "test_size": 2},
        ),
    ]
