"""Offline validation of process graphs against the official openEO process definitions.

``validate_graph(graph, definitions=DIR)``: DIR is a copy of Open-EO/openeo-processes (one JSON per
process at the top level, proposals under ``proposals/``), e.g. ``../shared/openeo-processes``. Every
node, nested process graphs (``{"process_graph": ...}`` arguments) included, must name an existing
process, give every required parameter and no unknown one; ``from_node`` must name a node of the same
graph and each graph must have exactly one result node. As ``validate-stac`` does for STAC, nothing is
fetched.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from insarcast.errors import InputError


def load_definitions(definitions: str | os.PathLike) -> dict[str, dict]:
    """process id -> its definition, from the folder's top level and ``proposals/``."""
    root = Path(definitions)
    files = sorted(root.glob("*.json")) + sorted(root.glob("proposals/*.json"))
    processes = {}
    for path in files:
        spec = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(spec, dict) and "id" in spec and "parameters" in spec:
            processes.setdefault(spec["id"], spec)
    if not processes:
        raise InputError(f"no openEO process definitions in {root}", path=root)
    return processes


def _nested(value: Any) -> Iterator[dict]:
    if isinstance(value, dict):
        if "process_graph" in value and isinstance(value["process_graph"], dict):
            yield value["process_graph"]
            return
        for item in value.values():
            yield from _nested(item)
    elif isinstance(value, list):
        for item in value:
            yield from _nested(item)


def _from_nodes(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if "process_graph" in value:
            return                                   # a nested graph's references are its own
        if set(value) == {"from_node"}:
            yield value["from_node"]
            return
        for item in value.values():
            yield from _from_nodes(item)
    elif isinstance(value, list):
        for item in value:
            yield from _from_nodes(item)


def graph_problems(nodes: dict, processes: dict[str, dict], where: str = "") -> list[str]:
    """What is wrong with one (possibly nested) graph, each problem naming its node."""
    problems = []
    results = [name for name, node in nodes.items() if node.get("result")]
    if len(results) != 1:
        problems.append(f"{where or 'graph'}: {len(results)} result nodes, expected exactly 1")
    for name, node in nodes.items():
        at = f"{where}{name}"
        spec = processes.get(node.get("process_id"))
        if spec is None:
            problems.append(f"{at}: unknown process {node.get('process_id')!r}")
            continue
        arguments = node.get("arguments", {})
        known = {p["name"]: p for p in spec["parameters"]}
        problems += [f"{at}: {spec['id']} has no parameter {key!r}" for key in arguments if key not in known]
        problems += [f"{at}: {spec['id']} needs {key!r}" for key, p in known.items()
                     if not p.get("optional") and "default" not in p and key not in arguments]
        problems += [f"{at}: from_node {ref!r} is no node of this graph" for ref in _from_nodes(arguments)
                     if ref not in nodes]
        for nested in _nested(arguments):
            problems += graph_problems(nested, processes, where=f"{at}/")
    return problems


def validate_graph(graph: dict, *, definitions: str | os.PathLike) -> None:
    """Raise InputError listing every problem of ``graph`` (``{"process_graph": {...}}`` or the nodes)."""
    nodes = graph.get("process_graph", graph) if isinstance(graph, dict) else None
    if not isinstance(nodes, dict) or not nodes:
        raise InputError("a process graph must be an object of nodes", field="process_graph")
    problems = graph_problems(nodes, load_definitions(definitions))
    if problems:
        raise InputError(f"{len(problems)} problem(s) against the openEO processes: " + "; ".join(problems),
                         field="process_graph")
