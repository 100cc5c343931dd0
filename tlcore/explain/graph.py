"""The network as a diagram: Graphviz DOT built from a layer table.

Plain data in (the DataFrame ``tlcore.layer_table`` returns), a DOT string out;
Streamlit draws it in the browser (``st.graphviz_chart``), no Graphviz binary.

Hundreds of layers become a readable diagram by grouping them into blocks, by
one rule read from the names alone (no model names):

- a name's *block* is its leading ``_``-separated parts up to the first part
  that holds a digit: ``block1_conv2`` -> ``block1``, ``conv2_block1_1_conv`` ->
  ``conv2``, ``block_1_expand`` -> ``block_1``, ``mixed9_0`` -> ``mixed9_0``; a
  name without a digit is its own first part (``stem_conv`` -> ``stem``);
- a layer Keras named after its type (``conv2d_12``, ``add``, ``concatenate_1``)
  carries no block of its own and joins the next named layer's block;
- a layer whose name mentions the current block after its first part
  (``bn_Conv1`` after ``Conv1``) stays in it;
- a block of more than ``SPLIT_OVER`` layers whose names have a second level
  (``conv2_block1``, ``conv2_block2``...) is drawn as a cluster with one node per
  sub-block, in a row; with more than ``ROW_MAX`` sub-blocks, consecutive ones
  in the same frozen state share one node (``conv4_block1 ... conv4_block24``).

The blocks read like text: rows of up to ``ROW_MAX`` boxes, left to right, top to
bottom, so a long chain (MobileNetV2's 16 blocks) stays compact.

A node is shaded when every layer in it is frozen (non-trainable), and drawn
half-shaded, saying how many, when only some are. The cut (where the base
ends) is a marked node on the chain; the new head's layers, and whatever else
follows the cut (such as the ImageNet top that include_top=False removes),
are drawn one node per layer in their own clusters.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Sequence

import pandas as pd

from tlcore.core.errors import ConfigError

FROZEN_FILL = "#c9ced6"
"""A block whose layers are all frozen."""
PARTLY_FROZEN_FILL = "#c9ced6:#ffffff"
"""A block with frozen and trainable layers (a two-colour gradient)."""
TRAINABLE_FILL = "#ffffff"
HEAD_FILL = "#d7f0dc"
"""The new head's trainable layers."""
AFTER_CUT_FILL = "#fde2e1"
"""Layers after the cut that are not the new head (the removed ImageNet top)."""
INPUT_FILL = "#e8eefc"
CUT_COLOUR = "#c62828"
SPLIT_OVER = 24
ROW_MAX = 6
"""Nodes side by side in one row of the diagram."""
MAX_NODES = 60
PER_LAYER_MAX = 16
"""The head and the layers after the cut are drawn one node per layer up to this many."""
HEAD_PREFIX = "head_"
"""The new head's layers are named ``head_*`` (see ``tlcore.models.build.attach_head``)."""

_INPUT_TYPES = {"InputLayer"}


@dataclasses.dataclass(frozen=True)
class _Node:
    """One box of the diagram: one layer or a run of layers."""

    label: str
    names: tuple[str, ...]
    types: tuple[str, ...]
    trainable: tuple[bool, ...]
    params: int
    shape: str
    kind: str  # "base", "head" or "after"


@dataclasses.dataclass(frozen=True)
class _Cluster:
    """A block drawn as a frame around its sub-blocks."""

    label: str
    sub_blocks: int
    layers: int


def snake_case(type_name: str) -> str:
    """Keras's automatic layer name for a layer class: ``GlobalAveragePooling2D`` -> ``global_average_pooling2d``."""
    name = re.sub(r"\W+", "", type_name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def is_automatic_name(name: str, type_name: str) -> bool:
    """Whether Keras named this layer after its type (``conv2d``, ``conv2d_7``), not its author."""
    return re.fullmatch(re.escape(snake_case(type_name)) + r"(_\d+)?", name) is not None


def block_key(name: str, level: int = 1) -> str:
    """The block a layer name belongs to: its parts up to the ``level``-th part holding a digit.

    ``block_key("conv2_block1_1_conv") == "conv2"``; with ``level=2``, ``"conv2_block1"``.
    At level 1, number parts right after it belong to the key (``"mixed9_0"``).
    A name with fewer such parts gives its key at the deepest level it has; a name
    without any digit gives its first part.
    """
    parts = name.split("_")
    found, end = 0, 0
    for index, part in enumerate(parts):
        if any(ch.isdigit() for ch in part):
            found += 1
            end = index + 1
            if found == level:
                break
    if not end:
        return parts[0]
    while level == 1 and end < len(parts) and parts[end].isdigit():  # "mixed9_0": a block of its own
        end += 1
    return "_".join(parts[:end])


def escape(text: str) -> str:
    """``text`` as the inside of a double-quoted DOT string (quotes, backslashes and newlines escaped)."""
    text = str(text).replace("\\", "\\\\").replace('"', '\\"')
    return text.replace("\r", "").replace("\n", "\\n")


def last_kept_layer(comparison: pd.DataFrame) -> str | None:
    """Where include_top=False ends the base: the last layer ``compare_layers`` marks "kept"."""
    kept = comparison.loc[comparison["status"] == "kept", "name"]
    return str(kept.iloc[-1]) if len(kept) else None


def head_layers(table: pd.DataFrame) -> list[str]:
    """The new head's layers in a transfer model's table (named ``head_*`` by ``attach_head``)."""
    return [name for name in table["name"] if str(name).startswith(HEAD_PREFIX)]


def _shape(text: str) -> str:
    """``"(None, 28, 28, 512)"`` -> ``"28x28x512"``."""
    inner = str(text).strip("()[] ")
    dims = [d.strip() for d in inner.split(",") if d.strip() and d.strip() != "None"]
    return "x".join(dims) if dims else str(text)


def _common_prefix(names: Sequence[str]) -> str:
    split = [name.split("_") for name in names]
    prefix = []
    for parts in zip(*split):
        if len(set(parts)) != 1:
            break
        prefix.append(parts[0])
    return "_".join(prefix)


def _effective_names(rows: pd.DataFrame) -> list[str]:
    """Each row's name, or for a type-named layer the next author-named layer's (the previous at the end;
    its own when the table has no author-named layer)."""
    named = [None if is_automatic_name(n, t) else n for n, t in zip(rows["name"], rows["type"])]
    result, following = [None] * len(named), None
    for index in range(len(named) - 1, -1, -1):
        following = named[index] or following
        result[index] = following
    previous = None
    for index, name in enumerate(result):
        if name is None:  # no named layer after it: the last named one before, or its own name
            result[index] = previous or str(rows["name"].iloc[index])
        elif named[index] is not None:
            previous = name
    return result


def _runs(keys: Sequence[str], names: Sequence[str]) -> list[list[int]]:
    """Consecutive row indices sharing a key; a name mentioning the current key stays in its run."""
    runs: list[list[int]] = []
    current = None
    for index, (key, name) in enumerate(zip(keys, names)):
        if runs and (key == current or current in name.split("_")[1:]):
            runs[-1].append(index)
            continue
        runs.append([index])
        current = key
    return runs


def _node(rows: pd.DataFrame, label: str, kind: str) -> _Node:
    return _Node(label, tuple(rows["name"]), tuple(rows["type"]), tuple(bool(t) for t in rows["trainable"]),
                 int(rows["params"].sum()), _shape(rows["output_shape"].iloc[-1]), kind)


def _block_nodes(rows: pd.DataFrame) -> list[list[_Node]]:
    """The base's rows as blocks; each block a list of nodes (one, or its sub-blocks)."""
    rows = rows.reset_index(drop=True)
    effective = _effective_names(rows)
    keys = [block_key(name) for name in effective]
    blocks = []
    for run in _runs(keys, effective):
        part = rows.iloc[run]
        label = _common_prefix([effective[i] for i in run]) or keys[run[0]]
        subkeys = [block_key(effective[i], 2) for i in run]
        sub_runs = [[run[j] for j in sub] for sub in _runs(subkeys, [effective[i] for i in run])]
        if len(run) <= SPLIT_OVER or len(sub_runs) < 2:
            blocks.append([_node(part, label, "base")])
            continue
        nodes = [_node(rows.iloc[sub], _common_prefix([effective[i] for i in sub]) or subkeys[0], "base")
                 for sub in sub_runs]
        if len(nodes) > ROW_MAX:
            nodes = _merge_runs(nodes)
        blocks.append([_Cluster(label, len(sub_runs), len(run)), *nodes])
    return blocks


def _state(node: _Node) -> str:
    if not any(node.trainable):
        return "frozen"
    return "trainable" if all(node.trainable) else "partly"


def _combine(group: list[_Node]) -> _Node:
    if len(group) == 1:
        return group[0]
    return _Node(f"{group[0].label} ... {group[-1].label}\n{len(group)} blocks", sum((n.names for n in group), ()),
                 sum((n.types for n in group), ()), sum((n.trainable for n in group), ()),
                 sum(n.params for n in group), group[-1].shape, group[0].kind)


def _merge_runs(nodes: list[_Node]) -> list[_Node]:
    """At most ``ROW_MAX`` nodes for a row of sub-blocks.

    Consecutive sub-blocks in the same frozen state share one node
    ("conv4_block1 ... conv4_block12"); if that still leaves too many, equal runs.
    """
    merged: list[list[_Node]] = []
    for node in nodes:
        if merged and _state(merged[-1][-1]) == _state(node):
            merged[-1].append(node)
        else:
            merged.append([node])
    if len(merged) > ROW_MAX:
        size = math.ceil(len(nodes) / ROW_MAX)
        merged = [nodes[start:start + size] for start in range(0, len(nodes), size)]
    return [_combine(group) for group in merged]


def _chunks(rows: pd.DataFrame, kind: str, limit: int) -> list[list[_Node]]:
    """Fallback for tables whose names make too many blocks: equal runs of rows."""
    size = math.ceil(len(rows) / limit)
    return [[_node(rows.iloc[start:start + size], f"layers {start + 1}-{min(start + size, len(rows))}", kind)]
            for start in range(0, len(rows), size)]


def _label(node: _Node) -> str:
    if len(node.names) == 1:
        lines = [node.names[0], node.types[0]]
    else:
        lines = [node.label, f"{len(node.names)} layers"]
    if node.params:
        lines[-1] += f" · {node.params:,} params"
    if _state(node) == "partly":
        lines.append(f"{node.trainable.count(False)} of {len(node.names)} layers frozen")
    lines.append(f"-> {node.shape}")
    return "\n".join(lines)


def _attributes(node: _Node) -> str:
    """The node's DOT attributes: its label, and its fill by frozen state and part of the network."""
    state = _state(node)
    if state == "frozen":
        style, fill = "rounded,filled", FROZEN_FILL
    elif state == "partly":  # a box split in proportion: the frozen share on the left
        share = round(node.trainable.count(False) / len(node.trainable), 3)
        style, fill = "striped", f"{FROZEN_FILL};{share}:{TRAINABLE_FILL}"
    else:
        style, fill = "rounded,filled", {"head": HEAD_FILL, "after": AFTER_CUT_FILL}.get(node.kind, TRAINABLE_FILL)
    if node.kind == "head":
        style += ",bold"
    tooltip = node.names[0] if len(node.names) == 1 else f"{node.names[0]} ... {node.names[-1]}"
    return (f'label="{escape(_label(node))}", style="{style}", fillcolor="{fill}", '
            f'tooltip="{escape(tooltip)}"')


def network_graph(
    table: pd.DataFrame,
    *,
    cut: str | None = None,
    head: Sequence[str] | None = None,
    title: str | None = None,
    cut_label: str = "cut: the base ends here",
    after_label: str = "after the cut",
    head_label: str = "new head",
    max_nodes: int = MAX_NODES,
) -> str:
    """A Graphviz DOT diagram of a network, from its layer table.

    Args:
        table: ``layer_table(model)`` (``expand_nested=True`` for a transfer
            model): columns name, type, output_shape, params, trainable, in order.
        cut: the name of the last layer of the base; a marked node follows it.
            None for no cut.
        head: names of the new head's layers (drawn one node each, in a
            "new head" cluster); they must come after the cut.
        title: a line drawn above the diagram.
        cut_label, after_label, head_label: what to call the cut, the layers
            after it that are not the head (e.g. "ImageNet top: include_top=False
            removes it"), and the head.
        max_nodes: at most this many block nodes for the base; above it,
            equal runs of layers.

    Returns:
        A ``digraph`` in the DOT language. Node ids are ``input``, ``n0``,
        ``n1``... and ``cut``; every name appears only inside quoted labels and
        tooltips. Fully frozen blocks are filled with ``FROZEN_FILL``, partly
        frozen ones with ``PARTLY_FROZEN_FILL``.

    Raises:
        ConfigError: a table without the layer-table columns, a cut that is not
            one of its layers, or head layers that are not after the cut.
    """
    missing = {"name", "type", "output_shape", "params", "trainable"} - set(table.columns)
    if missing:
        raise ConfigError(f"The table must have layer_table's columns. Missing: {sorted(missing)}")
    if max_nodes < 2:
        raise ConfigError(f"max_nodes must be at least 2. Received: max_nodes={max_nodes}")
    table = table.reset_index(drop=True)
    names = [str(n) for n in table["name"]]
    head = [str(n) for n in head or []]
    unknown = [n for n in head if n not in names]
    if cut is not None and cut not in names:
        raise ConfigError(f"The cut must be the name of a layer of this table. Received: cut={cut!r}")
    if unknown:
        raise ConfigError(f"Head layers must be layers of this table. Received: {unknown}")
    end = names.index(cut) + 1 if cut is not None else len(names)
    if head and min(names.index(n) for n in head) < end:
        raise ConfigError(f"Head layers must come after the cut ({cut}). Received: head={head}")

    is_input = table["type"].isin(_INPUT_TYPES)
    base = table.iloc[:end]
    inputs, base = base[is_input.iloc[:end]], base[~is_input.iloc[:end]]
    rest = table.iloc[end:]
    rest = rest[~rest["type"].isin(_INPUT_TYPES)]
    head_rows = rest[rest["name"].isin(head)]
    after_rows = rest[~rest["name"].isin(head)]

    blocks = _block_nodes(base) if len(base) else []
    if sum(len([n for n in b if isinstance(n, _Node)]) for b in blocks) > max_nodes:
        blocks = _chunks(base, "base", max_nodes)

    lines = [
        "digraph network {",
        '  graph [rankdir=TB, nodesep=0.25, ranksep=0.3, fontname="Helvetica", fontsize=12, labeljust=l];',
        '  node [shape=box, fontname="Helvetica", fontsize=10, color="#5f6b7a", margin="0.12,0.05"];',
        '  edge [color="#5f6b7a", arrowsize=0.6];',
    ]
    if title:
        lines.append(f'  label="{escape(title)}"; labelloc=t;')
    chain: list[str] = []
    ids = itertools.count()

    def emit(node: _Node, indent: str) -> str:
        node_id = f"n{next(ids)}"
        lines.append(f"{indent}{node_id} [{_attributes(node)}];")
        chain.append(node_id)
        return node_id

    row: list[str] = []
    rows_drawn: list[list[str]] = []

    def close_row(indent: str = "  ") -> None:
        if len(row) > 1:
            lines.append(f"{indent}{{rank=same; {'; '.join(row)}}}")
        if row:
            rows_drawn.append(list(row))
        row.clear()

    if len(inputs):
        lines.append(f'  input [label="{escape("input" + chr(10) + _shape(inputs["output_shape"].iloc[-1]))}", '
                     f'shape=oval, style=filled, fillcolor="{INPUT_FILL}", '
                     f'tooltip="{escape(", ".join(map(str, inputs["name"])))}"];')
        chain.append("input")
        row.append("input")
    for index, block in enumerate(blocks):
        if isinstance(block[0], _Cluster):  # a block with sub-blocks: a frame around a row of its own
            close_row()
            cluster = block[0]
            lines.append(f"  subgraph cluster_{index} {{")
            lines.append(f'    label="{escape(f"{cluster.label}: {cluster.sub_blocks} blocks, {cluster.layers} layers")}"; '
                         'style="rounded,dashed"; color="#8a94a3"; fontsize=11;')
            row.extend(emit(node, "    ") for node in block[1:])
            close_row("    ")
            lines.append("  }")
            continue
        if len(row) == ROW_MAX:
            close_row()
        row.append(emit(block[0], "  "))
    close_row()
    if cut is not None:
        lines.append(f'  cut [label="{escape(cut_label)}", shape=box, style="dashed,bold", '
                     f'color="{CUT_COLOUR}", fontcolor="{CUT_COLOUR}", penwidth=2, '
                     f'tooltip="{escape("after " + cut)}"];')
        chain.append("cut")
        rows_drawn.append(["cut"])
    for rows, kind, label, colour in ((after_rows, "after", after_label, "#d28b88"),
                                      (head_rows, "head", head_label, "#4f9a5d")):
        if not len(rows):
            continue
        lines.append(f"  subgraph cluster_{kind} {{")
        lines.append(f'    label="{escape(label)}"; style="rounded"; color="{colour}"; fontsize=11;')
        nodes = ([_node(rows.iloc[[i]], str(rows["name"].iloc[i]), kind) for i in range(len(rows))]
                 if len(rows) <= PER_LAYER_MAX else [block[0] for block in _chunks(rows, kind, PER_LAYER_MAX)])
        for node in nodes:
            if len(row) == ROW_MAX:
                close_row("    ")
            row.append(emit(node, "    "))
        close_row("    ")
        lines.append("  }")
    # Rows read like text: each row starts under the previous one's first box (an invisible edge
    # holds it there), and the edge from a row's last box to the next row's first does not move them.
    row_of = {node_id: number for number, ids_in_row in enumerate(rows_drawn) for node_id in ids_in_row}
    lines.extend(f"  {a} -> {b}" + (" [constraint=false];" if row_of[a] != row_of[b] else ";")
                 for a, b in zip(chain, chain[1:]))
    lines.extend(f"  {a[0]} -> {b[0]} [style=invis, weight=10];" for a, b in zip(rows_drawn, rows_drawn[1:]))
    lines.append("}")
    return "\n".join(lines) + "\n"


def transfer_graph(table: pd.DataFrame, *, title: str | None = None) -> str:
    """``network_graph`` of a transfer model: the base, the cut where it ends, and the new head.

    Args:
        table: ``layer_table(model, expand_nested=True)`` of a model that
            ``build_transfer_model`` builds (or ``TransferPlan.layers``); its head's
            layers are named ``head_*``.
        title: a line drawn above the diagram.

    Raises:
        ConfigError: a table without head layers.
    """
    head = head_layers(table)
    if not head:
        raise ConfigError(f"A transfer model's table must have head layers (named {HEAD_PREFIX}*). "
                          f"Received: {len(table)} layers without one")
    names = [str(n) for n in table["name"]]
    cut = names[names.index(head[0]) - 1]
    return network_graph(table, cut=cut, head=head, title=title, cut_label="cut: the pretrained base ends here",
                         head_label="new head: trained for your classes")


def block_ends(table: pd.DataFrame) -> list[str]:
    """The last layer of each block the diagram draws, in order (input layers left out).

    ``table`` is ``layer_table(model)`` (at least its name and type columns). VGG16 without
    its top gives ``block1_pool`` ... ``block5_pool``; with it, ``flatten``, ``fc1``, ``fc2``
    and ``predictions`` follow. The transfer curve taps these outputs.
    """
    rows = table[~table["type"].isin(_INPUT_TYPES)].reset_index(drop=True)
    if not len(rows):
        return []
    effective = _effective_names(rows)
    runs = _runs([block_key(name) for name in effective], effective)
    return [str(rows["name"].iloc[run[-1]]) for run in runs]
