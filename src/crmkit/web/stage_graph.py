"""A pipeline's stage graph laid out for an SVG drawing (admin screens).

Stages stand in a row in their declared order; forward moves arc above the row, backward
moves below it, so the main road reads left to right and the ways back stand apart.
"""

from __future__ import annotations

from typing import Any

import attrs

BOX_W, BOX_H, GAP = 130, 44, 50
MARGIN = 20


@attrs.frozen
class Node:
    """A stage box."""

    x: int
    y: int
    name: str
    title: str
    kind: str
    requires: str


@attrs.frozen
class Edge:
    """A move drawn as a path."""

    path: str
    backward: bool
    label: str


@attrs.frozen
class StageGraph:
    """Everything the SVG template draws."""

    width: int
    height: int
    nodes: list[Node]
    edges: list[Edge]
    box_w: int = BOX_W
    box_h: int = BOX_H


def stage_graph(pipeline: Any) -> StageGraph:
    """Lay out ``pipeline``'s stages and transitions."""
    stages = list(pipeline.stages)
    index = {s.name: i for i, s in enumerate(stages)}
    top = MARGIN + 90
    nodes = [
        Node(
            x=MARGIN + i * (BOX_W + GAP),
            y=top,
            name=s.name,
            title=s.title,
            kind=str(s.kind),
            requires=", ".join([*s.requires_fields, *s.requires_documents]),
        )
        for i, s in enumerate(stages)
    ]
    edges: list[Edge] = []
    pairs: set[tuple[int, int]] = set()
    for transition in pipeline.transitions:
        sources = transition.source
        names = [s.name for s in stages] if "*" in sources else list(sources)
        target = index.get(transition.target)
        if target is None:
            continue
        for name in names:
            source = index.get(name)
            if source is None or source == target or (source, target) in pairs:
                continue
            pairs.add((source, target))
            edges.append(_edge(source, target, top, transition))
    width = MARGIN * 2 + len(stages) * BOX_W + max(0, len(stages) - 1) * GAP
    return StageGraph(width=width, height=top + BOX_H + 110, nodes=nodes, edges=edges)


def _edge(source: int, target: int, top: int, transition: Any) -> Edge:
    forward = target > source
    x1 = MARGIN + source * (BOX_W + GAP) + BOX_W // 2
    x2 = MARGIN + target * (BOX_W + GAP) + BOX_W // 2
    distance = abs(target - source)
    if forward and distance == 1:
        y = top + BOX_H // 2
        path = f"M{x1 + BOX_W // 2},{y} L{x2 - BOX_W // 2 - 4},{y}"
    elif forward:
        lift = 20 + 22 * min(distance, 4)
        path = f"M{x1},{top} C{x1},{top - lift} {x2},{top - lift} {x2},{top - 4}"
    else:
        bottom = top + BOX_H
        drop = 20 + 22 * min(distance, 4)
        path = f"M{x1},{bottom} C{x1},{bottom + drop} {x2},{bottom + drop} {x2},{bottom + 4}"
    rules = []
    if transition.roles:
        rules.append("/".join(transition.roles))
    if getattr(transition, "permission", None):
        rules.append(f"⚿ {transition.permission}")
    if transition.requires_comment:
        rules.append("comment")
    if transition.guards:
        rules.append(", ".join(getattr(g, "__name__", "guard") for g in transition.guards))
    return Edge(path=path, backward=not forward, label="; ".join(rules))
