"""Hardware-faithful simulation: a circuit transpiled to a real device's coupling map and basis
gates, run on Aer with that device's noise model (qiskit-ibm-runtime's ``fake_provider``: the
calibration snapshots of IBM devices, local, no account).

:func:`transpile_for` routes and decomposes the circuit for the backend (logical measurements
keep their classical bits, so outcomes read in paralab's wire order whatever the layout);
:func:`run_on_fake_backend` samples it on ``AerSimulator.from_backend`` (gate errors, T1/T2
relaxation, readout errors of the snapshot) or, with ``noise=False``, on an ideal Aer of the
same transpiled circuit, and returns per-qubit ``<Z>`` means with their standard errors.

Real hardware goes through Qiskit Runtime (``QiskitRuntimeService``, an IBM Quantum account):
the same transpiled circuits run under ``SamplerV2(mode=service.backend(name))``. That path
needs network access and an account, so it is documented, not tested here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from paralab_quantum.circuit import Circuit


def fake_backend(name: str = "FakeManilaV2") -> Any:
    """A fake IBM backend by class name (``FakeManilaV2``, ``FakeLimaV2``, ``FakeBrisbane``...).

    :raises ValueError: the name is not in ``qiskit_ibm_runtime.fake_provider``."""
    from qiskit_ibm_runtime import fake_provider

    cls = getattr(fake_provider, name, None)
    if cls is None or not isinstance(cls, type):
        valid = sorted(n for n in dir(fake_provider) if n.startswith("Fake") and n.endswith("V2"))
        raise ValueError(f"fake backend {name!r} is unknown; valid: {', '.join(valid[:12])}, ...")
    return cls()


def transpile_for(circuit: Circuit, x: Any, weights: Any, backend: Any, *, seed: int = 0,
                  optimization_level: int = 1) -> list[Any]:
    """One transpiled, measured ``QuantumCircuit`` per input row (``x`` ``None``: one)."""
    from qiskit import transpile

    from paralab_quantum.qiskit_backend import _flat, _rows, to_qiskit

    if circuit.n_qubits > backend.num_qubits:
        raise ValueError(f"the circuit has {circuit.n_qubits} qubits; {backend.name} has "
                         f"{backend.num_qubits}")
    rows = [None] if x is None else [list(map(float, row)) for row in _rows(x)]
    flat = None if weights is None else [float(w) for w in _flat(weights)]
    circuits = [to_qiskit(circuit, row, flat, measure=True) for row in rows]
    return transpile(circuits, backend, optimization_level=optimization_level,
                     seed_transpiler=seed)


def run_on_fake_backend(circuit: Circuit, x: Any = None, weights: Any = None, *,
                        backend: str | Any = "FakeManilaV2", shots: int = 4000, seed: int = 0,
                        noise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Pauli-Z means and standard errors ``(batch, n_qubits)`` of ``circuit`` transpiled to
    ``backend`` and sampled with its noise model (``noise=False``: ideal)."""
    from qiskit_aer import AerSimulator

    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    device = fake_backend(backend) if isinstance(backend, str) else backend
    transpiled = transpile_for(circuit, x, weights, device, seed=seed)
    simulator = AerSimulator.from_backend(device) if noise else AerSimulator()
    result = simulator.run(transpiled, shots=shots, seed_simulator=seed).result()
    n = circuit.n_qubits
    means = np.zeros((len(transpiled), n))
    for row in range(len(transpiled)):
        for bitstring, count in result.get_counts(row).items():
            bits = bitstring.replace(" ", "")  # Qiskit prints clbit 0 last
            means[row] += np.array([1.0 - 2.0 * int(bits[-1 - q]) for q in range(n)]) * count
    means /= shots
    return means, np.sqrt(np.clip(1.0 - means**2, 0.0, None) / shots)


__all__ = ["fake_backend", "run_on_fake_backend", "transpile_for"]
