"""OpenQASM 3 export of a :class:`~paralab_quantum.circuit.Circuit`, from the operation table.

Each gate is written under its record's ``qasm`` name; a gate that ``stdgates.inc`` lacks
(``rot``, ``iswap``, ``rxx``, ``ryy``, ``rzz``, ``rzx``) gets a ``gate`` definition written from
the record's decomposition, so any OpenQASM 3 reader (Qiskit's ``qasm3.loads`` included) runs
the text. Inputs and weights left out stay ``input float[64]`` parameters (``x_0``..., ``w_0``...);
the embedding's angles are then written as expressions of the inputs. Parameters are written
with ``repr`` (the shortest text that reads back as the same double), so a round trip is exact.

Wire ``i`` is ``q[i]``. The amplitude embedding (a state preparation, no gate) is exported by
:func:`paralab_quantum.qiskit_backend.to_qasm3` through Qiskit's decomposition instead.

Pure Python: importing this module costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from paralab_quantum.circuit import Angle, Circuit, CircuitError
from paralab_quantum.operations import OPERATIONS, Operation


class Expr:
    """A symbolic real number written as OpenQASM 3 text: the embedding's arithmetic
    (:meth:`~paralab_quantum.circuit.Embedding.angle_terms`) on free inputs."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    @staticmethod
    def _text(value: Any) -> str:
        return value.text if isinstance(value, Expr) else number(float(value))

    def __mul__(self, other: Any) -> Expr:
        return Expr(f"({self.text}) * {self._text(other)}")

    __rmul__ = __mul__

    def __add__(self, other: Any) -> Expr:
        return Expr(f"({self.text} + {self._text(other)})")

    __radd__ = __add__

    def __sub__(self, other: Any) -> Expr:
        return Expr(f"({self.text} - {self._text(other)})")

    def __rsub__(self, other: Any) -> Expr:
        return Expr(f"({self._text(other)} - {self.text})")


def number(value: float) -> str:
    """A float as OpenQASM 3 text that reads back as the same double."""
    if not math.isfinite(value):
        raise CircuitError(f"a gate parameter is {value}: OpenQASM has no such number")
    return repr(float(value))


def definition(op: Operation) -> str:
    """The ``gate`` definition of a record ``stdgates.inc`` lacks, from its decomposition.

    Parameters are named ``_p0``, ``_p1``, ...: qiskit-qasm3-import 0.6 binds a definition's
    parameters in *alphabetical* order of their names (``rot(phi, theta, omega)`` read back as
    RZ(theta) RY(omega) RZ(phi)), so names whose order is their position are read right."""
    params = tuple(f"_p{k}" for k in range(op.n_params))
    wires = [f"_q{k}" for k in range(op.n_wires)]
    body = []
    for step in op.decomposition:
        inner = OPERATIONS[step.name]
        if not inner.qasm_builtin:
            raise CircuitError(f"gate {op.name}: its decomposition uses {step.name}, "
                               "which is not in stdgates.inc")
        values = [params[p] if isinstance(p, int) else number(p) for p in step.params]
        args = f"({', '.join(values)})" if values else ""
        body.append(f"{inner.qasm}{args} {', '.join(wires[w] for w in step.wires)};")
    head = f"gate {op.qasm}" + (f"({', '.join(params)})" if op.n_params else "")
    return f"{head} {', '.join(wires)} {{ {' '.join(body)} }}"


def to_qasm3(circuit: Circuit, x: Sequence[float] | None = None,
             weights: Sequence[float] | None = None) -> str:
    """OpenQASM 3 text of ``circuit`` with inputs ``x`` (one row) and ``weights`` bound where
    given; what is left out stays ``input float[64]``."""
    if circuit.amplitude:
        raise CircuitError("the amplitude embedding is a state preparation: export it with "
                           "paralab_quantum.qiskit_backend.to_qasm3 (Qiskit decomposes it)")
    lines = ["OPENQASM 3.0;", 'include "stdgates.inc";']
    program = circuit.program()
    used = {OPERATIONS[g.name].name: OPERATIONS[g.name] for g in program}
    lines += [definition(op) for op in used.values() if not op.qasm_builtin]
    columns: list[Any]
    if circuit.reads_inputs and x is None:
        columns = [Expr(f"x_{i}") for i in range(circuit.n_features)]
        lines += [f"input float[64] x_{i};" for i in range(circuit.n_features)]
    else:
        columns = [float(v) for v in (x or [])]
        if circuit.reads_inputs:
            circuit.check_features(len(columns), "qasm export")
    if weights is None:
        lines += [f"input float[64] w_{i};" for i in range(circuit.n_weights)]
    elif len(weights) < circuit.n_weights:
        raise CircuitError(f"the circuit has {circuit.n_weights} weights, got {len(weights)}")
    angles = circuit.angle_terms(columns)
    lines.append(f"qubit[{circuit.n_qubits}] q;")

    def text(angle: Angle) -> str:
        if angle.source == "x":
            value = angles[angle.index]
            return str(value) if isinstance(value, Expr) else number(value)
        if angle.source == "w":
            return f"w_{angle.index}" if weights is None else number(weights[angle.index])
        return number(angle.value)

    for gate in program:
        op = OPERATIONS[gate.name]
        args = f"({', '.join(text(a) for a in gate.params)})" if gate.params else ""
        lines.append(f"{op.qasm}{args} {', '.join(f'q[{w}]' for w in gate.wires)};")
    return "\n".join(lines) + "\n"


__all__ = ["Expr", "definition", "number", "to_qasm3"]
