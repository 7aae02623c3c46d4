"""paralab_quantum: Quantum ML: a batched torch statevector simulator, PennyLane and Qiskit, quantum kernels.

Work in progress: this plugin contributes nothing yet.
"""

PARALAB_API = "1.0"
