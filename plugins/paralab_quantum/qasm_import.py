"""OpenQASM 3 and Qiskit ``QuantumCircuit`` import: a circuit from another tool becomes a
:class:`~paralab_quantum.circuit.Circuit` that every paralab backend runs.

Read, from OpenQASM 3: ``qubit`` / ``qreg`` registers, ``input float`` / ``input angle``
parameters (they become the circuit's weights, in the order declared), every gate of the
operation table under its OpenQASM name (``stdgates.inc`` and the definitions paralab's own
exporter writes), user ``gate`` definitions (expanded), and parameter expressions of constants
(``pi``, ``π``, ``tau``, ``euler``, arithmetic, ``sin``/``cos``/``sqrt``/...). ``measure``,
``barrier`` and classical declarations are skipped (paralab measures at the end). What cannot
be represented exactly is refused with a :class:`CircuitError` naming the statement, never
approximated: ``gphase`` and global phases, ``ctrl @`` / ``inv @`` / ``pow @`` modifiers, mid-
circuit ``reset``, control flow, and a gate parameter that is an expression of an input (a
weight must enter a gate as the bare input: ``rz(theta)``, not ``rz(2 * theta)``).

Pure Python: importing this module costs nothing (Qiskit only for :func:`from_qiskit`).
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from paralab_quantum.circuit import Angle, Circuit, CircuitError, Gate
from paralab_quantum.operations import OPERATIONS, QASM_NAMES


@dataclass(frozen=True)
class Imported:
    """An imported circuit and the names of its free parameters: weight ``i`` is the parameter
    ``parameters[i]``."""

    circuit: Circuit
    parameters: tuple[str, ...]

    def weights(self, values: dict[str, float]) -> list[float]:
        """The weights vector for parameter ``values`` given by name."""
        missing = [name for name in self.parameters if name not in values]
        if missing:
            raise CircuitError(f"no value for parameter(s) {', '.join(missing)}")
        return [float(values[name]) for name in self.parameters]


_CONSTANTS = {"pi": math.pi, "π": math.pi, "tau": math.tau, "τ": math.tau, "euler": math.e,
              "ℇ": math.e}
_FUNCTIONS: dict[str, Callable[[float], float]] = {
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "exp": math.exp, "ln": math.log,
    "sqrt": math.sqrt, "arcsin": math.asin, "arccos": math.acos, "arctan": math.atan,
}
_BINARY: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.Pow: operator.pow,
}


def _evaluate(text: str, scope: dict[str, Angle | float], where: str) -> Angle | float:
    """A parameter expression: a constant (float) or one bare input (an ``Angle``)."""
    source = text.strip().replace("π", "pi").replace("τ", "tau").replace("^", "**")
    try:
        tree = ast.parse(source, mode="eval").body
    except SyntaxError:
        raise CircuitError(f"{where}: cannot read the parameter {text!r}") from None

    def value(node: ast.AST) -> Angle | float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id in scope:
                return scope[node.id]
            if node.id in _CONSTANTS:
                return _CONSTANTS[node.id]
            raise CircuitError(f"{where}: unknown name {node.id!r} in {text!r}")
        parts: list[Angle | float]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            parts = [value(node.operand)]
            if all(isinstance(p, float) for p in parts):
                return -parts[0] if isinstance(node.op, ast.USub) else parts[0]  # type: ignore[operator]
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            parts = [value(node.left), value(node.right)]
            if all(isinstance(p, float) for p in parts):
                return _BINARY[type(node.op)](*parts)  # type: ignore[arg-type]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in _FUNCTIONS and len(node.args) == 1):
            parts = [value(node.args[0])]
            if isinstance(parts[0], float):
                return _FUNCTIONS[node.func.id](parts[0])
        else:
            raise CircuitError(f"{where}: cannot read the parameter {text!r}")
        raise CircuitError(
            f"{where}: the parameter {text!r} is an expression of an input; paralab takes an "
            "input only as a bare gate parameter (rz(theta), not rz(2 * theta))")

    return value(tree)


def _split_arguments(text: str) -> list[str]:
    """Comma-separated arguments, commas inside parentheses kept."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += (char == "(") - (char == ")")
        current += char
    if current.strip():
        parts.append(current)
    return [p.strip() for p in parts]


def _statements(text: str) -> list[str]:
    """Statements without comments; a ``gate`` definition is one statement with its body."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    statements, position = [], 0
    while position < len(text):
        brace, semicolon = text.find("{", position), text.find(";", position)
        if semicolon == -1:
            if text[position:].strip():
                raise CircuitError(f"OpenQASM: a statement without ';': {text[position:].strip()!r}")
            break
        if brace != -1 and brace < semicolon:
            end = text.find("}", brace)
            if end == -1:
                raise CircuitError("OpenQASM: a '{' without its '}'")
            statements.append(text[position:end + 1].strip())
            position = end + 1
        else:
            statements.append(text[position:semicolon].strip())
            position = semicolon + 1
    return [s for s in statements if s]


_APPLICATION = re.compile(r"^([A-Za-z_][\w]*)\s*(?:\((.*)\))?\s+(.+)$", re.S)


@dataclass
class _Definition:
    params: list[str]
    qubits: list[str]
    body: list[str]


class _Reader:
    def __init__(self) -> None:
        self.registers: dict[str, tuple[int, int]] = {}  # name -> (offset, size)
        self.n_qubits = 0
        self.inputs: list[str] = []
        self.definitions: dict[str, _Definition] = {}
        self.gates: list[Gate] = []

    def read(self, text: str) -> Imported:
        for statement in _statements(text):
            self.statement(statement)
        if not self.n_qubits:
            raise CircuitError("OpenQASM: no qubits declared")
        used = {a.index for g in self.gates for a in g.params if a.source == "w"}
        unused = [self.inputs[i] for i in range(len(self.inputs)) if i not in used]
        if unused:
            raise CircuitError(f"OpenQASM: input(s) {', '.join(unused)} enter no gate")
        circuit = Circuit(self.n_qubits, embedding=None, ansatz=None, gates=tuple(self.gates))
        return Imported(circuit, tuple(self.inputs))

    def statement(self, statement: str) -> None:
        found = re.match(r"^[A-Za-z_]\w*", statement)
        head = found.group(0) if found else ""
        if head == "OPENQASM":
            version = statement.split(None, 1)[1].strip() if len(statement.split()) > 1 else ""
            if not version.startswith("3"):
                raise CircuitError(f"OpenQASM version {version!r}: paralab reads OpenQASM 3")
        elif head == "include":
            if statement.split(None, 1)[1].strip().strip('"') != "stdgates.inc":
                raise CircuitError(f"OpenQASM: cannot include {statement.split(None, 1)[1]}")
        elif head in ("qubit", "qreg"):
            self.declare(statement)
        elif head in ("bit", "creg", "barrier", "measure") or re.match(r"^\w+(\[\d+\])?\s*=\s*measure", statement):
            return
        elif head == "input":
            self.input(statement)
        elif head == "gate":
            self.define(statement)
        elif head in ("gphase", "reset", "if", "for", "while", "ctrl", "inv", "pow", "negctrl",
                      "def", "output", "let", "const") or "@" in statement:
            raise CircuitError(f"OpenQASM: {statement!r} is not supported (paralab keeps no "
                               "global phase, modifiers, classical control or reset)")
        else:
            self.apply(statement, {}, {}, statement)

    def declare(self, statement: str) -> None:
        match = (re.match(r"^qubit\s*(?:\[(\d+)\])?\s+(\w+)$", statement)
                 or re.match(r"^qreg\s+(\w+)\s*\[(\d+)\]$", statement))
        if not match:
            raise CircuitError(f"OpenQASM: cannot read the declaration {statement!r}")
        if statement.startswith("qreg"):
            name, size = match.group(1), int(match.group(2))
        else:
            name, size = match.group(2), int(match.group(1) or 1)
        self.registers[name] = (self.n_qubits, size)
        self.n_qubits += size

    def input(self, statement: str) -> None:
        match = re.match(r"^input\s+(?:float|angle)\s*(?:\[\d+\])?\s+(\w+)$", statement)
        if not match:
            raise CircuitError(f"OpenQASM: {statement!r}: paralab takes float or angle inputs")
        self.inputs.append(match.group(1))

    def define(self, statement: str) -> None:
        match = re.match(r"^gate\s+(\w+)\s*(?:\(([^)]*)\))?\s*([^{]*)\{(.*)\}$", statement, re.S)
        if not match:
            raise CircuitError(f"OpenQASM: cannot read the gate definition {statement[:60]!r}")
        name = match.group(1)
        if name in QASM_NAMES:  # a gate of the table: its record is the definition
            return
        params = [p.strip() for p in (match.group(2) or "").split(",") if p.strip()]
        qubits = [q.strip() for q in match.group(3).split(",") if q.strip()]
        body = [s for s in _statements(match.group(4))]
        self.definitions[name] = _Definition(params, qubits, body)

    def qubit(self, text: str, local: dict[str, int], where: str) -> int:
        text = text.strip()
        if text in local:
            return local[text]
        match = re.match(r"^(\w+)\s*(?:\[(\d+)\])?$", text)
        if not match or match.group(1) not in self.registers:
            raise CircuitError(f"{where}: unknown qubit {text!r}")
        offset, size = self.registers[match.group(1)]
        if match.group(2) is None:
            if size != 1:
                raise CircuitError(f"{where}: a whole register {text!r} (broadcast) is not "
                                   "supported; name its qubits")
            return offset
        index = int(match.group(2))
        if index >= size:
            raise CircuitError(f"{where}: {text!r} is out of range (size {size})")
        return offset + index

    def apply(self, statement: str, local_qubits: dict[str, int],
              local_params: dict[str, Angle | float], where: str) -> None:
        match = _APPLICATION.match(statement)
        if not match:
            raise CircuitError(f"OpenQASM: cannot read {statement!r}")
        name, arguments, operands = match.group(1), match.group(2), match.group(3)
        scope: dict[str, Angle | float] = {n: Angle("w", i) for i, n in enumerate(self.inputs)}
        scope.update(local_params)
        values = [_evaluate(a, scope, f"OpenQASM {where!r}")
                  for a in (_split_arguments(arguments) if arguments else [])]
        wires = [self.qubit(q, local_qubits, f"OpenQASM {where!r}")
                 for q in _split_arguments(operands)]
        if name in QASM_NAMES:
            op = OPERATIONS[QASM_NAMES[name]]
            if len(values) != op.n_params:
                raise CircuitError(f"OpenQASM {where!r}: {name} takes {op.n_params} "
                                   f"parameter(s), got {len(values)}")
            params = tuple(v if isinstance(v, Angle) else Angle("const", value=v) for v in values)
            self.gates.append(Gate(op.name, tuple(wires), params=params))
            return
        definition = self.definitions.get(name)
        if definition is None:
            raise CircuitError(f"OpenQASM {where!r}: gate {name!r} is neither in paralab's table "
                               f"({', '.join(sorted(QASM_NAMES))}) nor defined")
        if len(values) != len(definition.params) or len(wires) != len(definition.qubits):
            raise CircuitError(f"OpenQASM {where!r}: gate {name} takes "
                               f"{len(definition.params)} parameter(s) and "
                               f"{len(definition.qubits)} qubit(s)")
        inner_qubits = dict(zip(definition.qubits, wires, strict=True))
        inner_params = dict(zip(definition.params, values, strict=True))
        for inner in definition.body:
            if inner.split()[0] in ("gphase",) or "@" in inner:
                raise CircuitError(f"OpenQASM: gate {name}: {inner!r} is not supported")
            self.apply(inner, inner_qubits, inner_params, where)


def from_qasm3(text: str) -> Imported:
    """The :class:`Imported` circuit an OpenQASM 3 program describes (see the module doc)."""
    return _Reader().read(text)


_QISKIT_NAMES = {op.qiskit: op.name for op in OPERATIONS.values() if op.qiskit}


def _no_phase(phase: Any, where: str) -> None:
    try:
        zero = float(phase) == 0.0
    except TypeError:  # a ParameterExpression
        zero = False
    if not zero:
        raise CircuitError(f"{where}: global phase {phase}: paralab keeps no global phase, so "
                           "the state would differ")


def from_qiskit(qc: Any) -> Imported:
    """A Qiskit ``QuantumCircuit`` as an :class:`Imported` circuit: its free ``Parameter`` s are
    the weights (Qiskit's order, ``qc.parameters``); a gate Qiskit names like a record of the
    table maps to it, any other is replaced by its Qiskit definition, recursively."""
    _no_phase(qc.global_phase, "QuantumCircuit")
    parameters = list(qc.parameters)
    index = {p: i for i, p in enumerate(parameters)}
    gates: list[Gate] = []

    def angle(value: Any, name: str) -> Angle:
        if getattr(value, "parameters", None):
            if value not in index:
                raise CircuitError(f"QuantumCircuit: gate {name} parameter {value} is an "
                                   "expression of a Parameter; paralab takes bare ones")
            return Angle("w", index[value])
        return Angle("const", value=float(value))

    def walk(circuit: Any, wire_of: dict[Any, int], depth: int) -> None:
        for instruction in circuit.data:
            operation = instruction.operation
            if operation.name in ("measure", "barrier"):
                continue
            wires = tuple(wire_of[q] for q in instruction.qubits)
            name = _QISKIT_NAMES.get(operation.name)
            if name is not None:
                params = tuple(angle(v, name) for v in operation.params)
                gates.append(Gate(name, wires, params=params))
                continue
            definition = operation.definition
            if definition is None or depth > 16:
                raise CircuitError(f"QuantumCircuit: {operation.name!r} has no counterpart in "
                                   "paralab's table and no gate definition")
            _no_phase(definition.global_phase, f"QuantumCircuit gate {operation.name!r}")
            walk(definition, dict(zip(definition.qubits, wires, strict=True)), depth + 1)

    walk(qc, {q: i for i, q in enumerate(qc.qubits)}, 0)
    circuit = Circuit(qc.num_qubits, embedding=None, ansatz=None, gates=tuple(gates))
    return Imported(circuit, tuple(p.name for p in parameters))


__all__ = ["Imported", "from_qasm3", "from_qiskit"]
