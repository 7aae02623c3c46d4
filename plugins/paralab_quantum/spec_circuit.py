"""Circuits written in the spec: layers of named gates on wires, data re-uploading blocks.

``model.circuit`` is a list of entries, each a *layer* or a *block*::

    circuit = [
      {gate = "H", wires = "all"},
      {repeat = 2, layers = [                        # data re-uploading: inputs read twice
        {gate = "RY", wires = "all", params = ["x"]},  # feature i on wire i
        {gate = "Rot", wires = "all", params = ["w", "w", "w"]},
        {gate = "CNOT", wires = "ring"},
      ]},
      {gate = "RZ", wires = [0], params = [0.5]},      # a constant
    ]

* ``gate``: a name of the operation table; ``wires``: ``"all"`` (a one-wire gate on every
  qubit), ``"ring"`` / ``"chain"`` (a two-wire gate on neighbours), a list of wires (a one-wire
  gate on each, or one multi-wire gate on them), or a list of wire lists;
* ``params``: one per gate parameter: ``"w"`` a new trainable weight for each gate placed (a
  block's repetitions get new ones), ``"x"`` the feature of the gate's (first) wire, ``"x3"``
  feature 3, or a number;
* ``repeat`` + ``layers``: the layers repeated, inputs re-read each time (re-uploading).

:func:`build` returns the gates, the number of features read; :func:`problem` is the
validation message naming the field (``circuit[1].layers[0].params[0]``) or ``None``.
"""

from __future__ import annotations

from typing import Any

from paralab import Option
from paralab_quantum.circuit import GATES, Angle, CircuitError, Gate
from paralab_quantum.operations import OPERATIONS

_LAYER_KEYS = {"gate", "wires", "params"}
_BLOCK_KEYS = {"repeat", "layers"}


def _wires(value: Any, n_wires: int, n_qubits: int, where: str) -> list[tuple[int, ...]]:
    if value == "all":
        if n_wires != 1:
            raise CircuitError(f"{where}.wires = 'all' places a one-wire gate; this gate takes "
                               f"{n_wires} wires: use 'ring', 'chain' or lists of wires")
        return [(q,) for q in range(n_qubits)]
    if value in ("ring", "chain"):
        if n_wires != 2:
            raise CircuitError(f"{where}.wires = {value!r} places a two-wire gate; this gate "
                               f"takes {n_wires}")
        pairs = [(q, q + 1) for q in range(n_qubits - 1)]
        if value == "ring" and n_qubits > 2:
            pairs.append((n_qubits - 1, 0))
        return pairs
    if not isinstance(value, (list, tuple)) or not value:
        raise CircuitError(f"{where}.wires = {value!r}: expected 'all', 'ring', 'chain', a list "
                           "of wires or a list of wire lists")
    if all(isinstance(w, int) and not isinstance(w, bool) for w in value):
        placed = [(w,) for w in value] if n_wires == 1 else [tuple(value)]
    elif all(isinstance(w, (list, tuple)) for w in value):
        placed = [tuple(w) for w in value]
    else:
        raise CircuitError(f"{where}.wires = {value!r}: mix of wires and wire lists")
    for wires in placed:
        bad = [w for w in wires if not isinstance(w, int) or isinstance(w, bool)
               or not 0 <= w < n_qubits]
        if bad:
            raise CircuitError(f"{where}.wires: wire {bad[0]!r} is not one of 0..{n_qubits - 1}")
        if len(wires) != n_wires or len(set(wires)) != n_wires:
            raise CircuitError(f"{where}.wires: {list(wires)} but the gate acts on {n_wires} "
                               "distinct wire(s)")
    return placed


class _Builder:
    def __init__(self, n_qubits: int) -> None:
        self.n, self.weights, self.inputs, self.gates = n_qubits, 0, 0, []

    def entries(self, entries: Any, where: str) -> None:
        if not isinstance(entries, (list, tuple)) or not entries:
            raise CircuitError(f"{where}: expected a non-empty list of layers and blocks")
        for position, entry in enumerate(entries):
            self.entry(entry, f"{where}[{position}]")

    def entry(self, entry: Any, where: str) -> None:
        if not isinstance(entry, dict):
            raise CircuitError(f"{where}: expected a table (gate, wires, params) or a block "
                               f"(repeat, layers), got {entry!r}")
        if "layers" in entry or "repeat" in entry:
            unknown = set(entry) - _BLOCK_KEYS
            if unknown:
                raise CircuitError(f"{where}: unknown key {sorted(unknown)[0]!r} in a block; "
                                   "valid: repeat, layers")
            repeat = entry.get("repeat", 1)
            if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
                raise CircuitError(f"{where}.repeat = {repeat!r}: expected an integer >= 1")
            for _ in range(repeat):
                self.entries(entry.get("layers"), f"{where}.layers")
            return
        unknown = set(entry) - _LAYER_KEYS
        if unknown:
            raise CircuitError(f"{where}: unknown key {sorted(unknown)[0]!r}; valid: gate, "
                               "wires, params (or repeat, layers for a block)")
        name = entry.get("gate")
        if name not in OPERATIONS:
            raise CircuitError(f"{where}.gate = {name!r} is unknown; valid: {', '.join(GATES)}")
        op = OPERATIONS[name]
        params = entry.get("params", [])
        if not isinstance(params, (list, tuple)) or len(params) != op.n_params:
            raise CircuitError(f"{where}.params = {params!r}: gate {name} takes {op.n_params} "
                               f"parameter(s)" + (f" ({', '.join(op.param_names)})"
                                                  if op.param_names else ""))
        for wires in _wires(entry.get("wires"), op.n_wires, self.n, where):
            angles = tuple(self.angle(p, wires, f"{where}.params[{k}]")
                           for k, p in enumerate(params))
            self.gates.append(Gate(name, wires, params=angles))

    def angle(self, value: Any, wires: tuple[int, ...], where: str) -> Angle:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return Angle("const", value=float(value))
        if value == "w":
            self.weights += 1
            return Angle("w", self.weights - 1)
        if isinstance(value, str) and value.startswith("x") and (
                value == "x" or value[1:].isdigit()):
            index = wires[0] if value == "x" else int(value[1:])
            self.inputs = max(self.inputs, index + 1)
            return Angle("x", index)
        raise CircuitError(f"{where} = {value!r}: expected 'w' (a weight), 'x' (the wire's "
                           "feature), 'x<i>' (feature i) or a number")


def build(spec: Any, n_qubits: int, where: str = "circuit") -> tuple[tuple[Gate, ...], int]:
    """The gates of ``spec`` on ``n_qubits`` wires and how many features they read.

    :raises CircuitError: naming the entry and field (``circuit[0].wires``)."""
    builder = _Builder(n_qubits)
    builder.entries(spec, where)
    return tuple(builder.gates), builder.inputs


def n_qubits_of(spec: Any) -> int:
    """The fewest qubits an explicit-wire spec needs (1 if it names none)."""
    found = [0]

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "wires" and isinstance(item, (list, tuple)):
                    flat = [w for x in item for w in (x if isinstance(x, (list, tuple)) else [x])]
                    found.extend(w + 1 for w in flat if isinstance(w, int))
                elif key == "layers":
                    walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(spec)
    return max(found) or 1


class CircuitOption(Option):
    """``model.circuit``: checked at validation by building it on the wires it names (a spec
    that reads ``"all"`` builds on 1 qubit at least; the model checks again on its qubits)."""

    def problem(self, value: Any) -> str | None:
        problem = super().problem(value)
        if problem or value in ((), []):
            return problem
        try:
            build(value, max(n_qubits_of(value), 2))
        except CircuitError as error:
            return str(error)
        return None


__all__ = ["CircuitOption", "build", "n_qubits_of"]
