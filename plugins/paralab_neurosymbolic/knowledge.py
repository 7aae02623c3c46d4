"""A knowledge base: entities, typed relations and a class hierarchy, held in networkx.

The graph is a ``networkx.MultiDiGraph``: nodes are entities (attribute ``type``), each fact
``relation(subject, object)`` is an edge keyed by its relation, so two entities may be linked
by several relations. The class hierarchy is the sub-graph of one relation (``is_a``: class ->
superclass) and must be a DAG. Two plain file formats:

* text (``.kb``, ``.pl``): one fact per clause, ``relation(subject, object).``, with
  ``type(entity, type).`` for entity types and ``%`` comments; it is also valid input to the
  logic language, so :meth:`to_program` facts join rules and neural predicates;
* JSON (``.json``): networkx's node-link format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paralab_neurosymbolic.logic.parser import LogicSyntaxError, parse_program
from paralab_neurosymbolic.logic.terms import Const

BUILTIN = {"digits": Path(__file__).with_name("data") / "digits.kb"}
"""Hierarchies shipped with the plugin, by name."""


class KnowledgeError(ValueError):
    """A knowledge file or hierarchy that cannot be used; the message names the file or fact."""


def _networkx():  # noqa: ANN202 - networkx stays out of the plugin's import time
    import networkx as nx

    return nx


@dataclass
class KnowledgeBase:
    """Entities and facts in a ``networkx.MultiDiGraph``."""

    graph: Any = field(default=None)
    source: str = ""

    def __post_init__(self) -> None:
        if self.graph is None:
            self.graph = _networkx().MultiDiGraph()

    # ---------------------------------------------------------------------------- building

    def add_entity(self, name: str, type: str = "") -> None:  # noqa: A002 - the file's word
        self.graph.add_node(name)
        if type:
            self.graph.nodes[name]["type"] = type

    def add_fact(self, relation: str, subject: str, object: str) -> None:  # noqa: A002
        for entity in (subject, object):
            if entity not in self.graph:
                self.graph.add_node(entity)
        if not self.graph.has_edge(subject, object, key=relation):
            self.graph.add_edge(subject, object, key=relation, relation=relation)

    def facts(self, relation: str | None = None) -> list[tuple[str, str, str]]:
        """``(relation, subject, object)`` triples, sorted."""
        return sorted(
            (key, s, o)
            for s, o, key in self.graph.edges(keys=True)
            if relation is None or key == relation
        )

    @property
    def relations(self) -> list[str]:
        return sorted({key for _, _, key in self.graph.edges(keys=True)})

    # ------------------------------------------------------------------------ hierarchies

    def hierarchy(self, relation: str = "is_a"):  # -> networkx.DiGraph
        """The class DAG of ``relation`` (edges class -> superclass); a cycle is an error."""
        nx = _networkx()
        dag = nx.DiGraph()
        dag.add_edges_from((s, o) for _, s, o in self.facts(relation))
        if dag.number_of_edges() == 0:
            raise KnowledgeError(
                f"knowledge base {self.source or '(in memory)'} has no {relation!r} facts; "
                f"relations: {', '.join(self.relations) or 'none'}"
            )
        try:
            cycle = nx.find_cycle(dag)
        except nx.NetworkXNoCycle:
            return dag
        path = " -> ".join([edge[0] for edge in cycle] + [cycle[0][0]])
        raise KnowledgeError(
            f"the {relation!r} hierarchy of {self.source or '(in memory)'} has a cycle "
            f"{path}; a class hierarchy must be a DAG"
        )

    def leaves(self, relation: str = "is_a") -> list[str]:
        """Classes with no subclass, sorted."""
        dag = self.hierarchy(relation)
        return sorted(node for node in dag if dag.in_degree(node) == 0)

    def ancestors(self, node: str, relation: str = "is_a") -> set[str]:
        """Every superclass of ``node`` (not ``node`` itself)."""
        return set(_networkx().descendants(self.hierarchy(relation), node))

    # ----------------------------------------------------------------------------- files

    @classmethod
    def from_text(cls, text: str, source: str = "") -> KnowledgeBase:
        try:
            parsed = parse_program(text)
        except LogicSyntaxError as error:
            raise KnowledgeError(f"{source or 'knowledge text'}: {error}") from None
        kb = cls(source=source)
        if parsed.neural:
            raise KnowledgeError(f"{source}: a knowledge file holds facts, not nn(...) declarations")
        for clause in parsed.clauses:
            head = clause.head
            where = f"{source or 'knowledge text'} line {clause.line}"
            if clause.body or clause.probability is not None:
                raise KnowledgeError(f"{where}: only plain facts relation(subject, object). "
                                     f"are allowed, got a rule or probability for {head}")
            names = []
            for arg in head.args:
                if not isinstance(arg, Const):
                    raise KnowledgeError(f"{where}: {head} must name entities (constants)")
                names.append(str(arg.value))
            if head.functor == "type" and len(names) == 2:
                kb.add_entity(names[0], names[1])
            elif len(names) == 2:
                kb.add_fact(head.functor, names[0], names[1])
            elif len(names) == 1:
                kb.add_entity(names[0], head.functor)
            else:
                raise KnowledgeError(
                    f"{where}: {head} has {len(names)} arguments; facts are "
                    "relation(subject, object) or type(entity, type)"
                )
        return kb

    @classmethod
    def load(cls, path: str | Path) -> KnowledgeBase:
        """Read a ``.json`` node-link file or a text file of facts (or a built-in name)."""
        if str(path) in BUILTIN:
            path = BUILTIN[str(path)]
        path = Path(path)
        if not path.is_file():
            raise KnowledgeError(
                f"knowledge file {path} does not exist; give a path to a .kb/.pl/.json file "
                f"or a built-in name: {', '.join(sorted(BUILTIN))}"
            )
        if path.suffix == ".json":
            nx = _networkx()
            try:
                data = json.loads(path.read_text("utf-8"))
                graph = nx.node_link_graph(data, directed=True, multigraph=True, edges="edges")
            except (ValueError, KeyError, TypeError) as error:
                raise KnowledgeError(f"{path}: not a networkx node-link graph: {error}") from None
            return cls(nx.MultiDiGraph(graph), str(path))
        return cls.from_text(path.read_text("utf-8"), str(path))

    def save(self, path: str | Path) -> Path:
        """Write ``.json`` (node-link) or text facts, by the file's suffix."""
        path = Path(path)
        if path.suffix == ".json":
            data = _networkx().node_link_data(self.graph, edges="edges")
            path.write_text(json.dumps(data, indent=1, sort_keys=True), "utf-8")
        else:
            path.write_text(self.to_program(), "utf-8")
        return path

    def to_program(self) -> str:
        """The facts as clauses of the logic language (types first)."""
        lines = [
            f"type({_quote(node)}, {_quote(data['type'])})."
            for node, data in sorted(self.graph.nodes(data=True))
            if data.get("type")
        ]
        lines += [f"{relation}({_quote(s)}, {_quote(o)})." for relation, s, o in self.facts()]
        return "\n".join(lines) + "\n"


def _quote(name: str) -> str:
    import re

    return name if re.fullmatch(r"[a-z][A-Za-z0-9_]*", name) else f"'{name}'"
