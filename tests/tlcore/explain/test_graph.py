"""tlcore.explain.graph: the network as Graphviz DOT, from the layer table; and the diagrams on Layers and Build."""

import re

import pandas as pd
import pytest
from support import open_page

import tlcore
from tlcore.explain import graph
from tlcore.models.build import transfer_architecture
from tlcore.models.scopes import shapes_only

# Reading the DOT back ----------------------------------------------------------------------------

ATTRIBUTE = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^,\]\s]+)')


def unquote(value: str) -> str:
    if not value.startswith('"'):
        return value
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value[1:-1])


def parse(dot: str):
    """(nodes: id -> attributes, edges: [(a, b, attributes)], cluster labels), checking the syntax on the way."""
    assert dot.startswith("digraph network {") and dot.rstrip().endswith("}")
    outside = re.sub(r'"(?:[^"\\]|\\.)*"', '""', dot)  # braces inside quoted strings do not count
    depth = 0
    for char in outside:
        depth += {"{": 1, "}": -1}.get(char, 0)
        assert depth >= 0
    assert depth == 0, "unbalanced braces"
    nodes, edges, clusters = {}, [], []
    for line in dot.splitlines():
        line = line.strip()
        if match := re.fullmatch(r"(\w+) -> (\w+)(?: \[(.*)\])?;", line):
            edges.append((match[1], match[2], {k: unquote(v) for k, v in ATTRIBUTE.findall(match[3] or "")}))
        elif match := re.fullmatch(r"(\w+) \[(.*)\];", line):
            if match[1] not in ("graph", "node", "edge"):
                nodes[match[1]] = {k: unquote(v) for k, v in ATTRIBUTE.findall(match[2])}
        elif line.startswith("label=") and "blocks," in line:
            clusters.append(unquote(ATTRIBUTE.match(line)[2]))
    assert set(a for a, _, _ in edges) | set(b for _, b, _ in edges) <= set(nodes)
    return nodes, edges, clusters


def chain(nodes, edges) -> list[str]:
    """The node ids along the drawn (visible) edges, from the first."""
    if len(nodes) == 1:
        return list(nodes)
    visible = [(a, b) for a, b, attrs in edges if attrs.get("style") != "invis"]
    following = dict(visible)
    assert len(following) == len(visible)  # one line, no branches
    start = (set(following) - set(following.values())).pop()
    order = [start]
    while order[-1] in following:
        order.append(following[order[-1]])
    assert set(order) == set(nodes)
    return order


def covered(table: pd.DataFrame, node: dict) -> pd.DataFrame:
    """The table rows a block node stands for (its tooltip names its first and last layer)."""
    names = list(table["name"])
    first, _, last = node["tooltip"].partition(" ... ")
    return table.iloc[names.index(first): names.index(last or first) + 1]


def transfer_table(backbone: str, trainable_from: str, *, weights=None, size=32) -> pd.DataFrame:
    spec = tlcore.TransferSpec(backbone=backbone, input_shape=(size, size, 3), weights=weights,
                               trainable_from=trainable_from, hidden_units=64)
    with shapes_only():  # architecture only: nothing allocated
        return tlcore.layer_table(transfer_architecture(spec), expand_nested=True)


def full_table(backbone: str, **kwargs) -> pd.DataFrame:
    with shapes_only():
        return tlcore.layer_table(tlcore.load_backbone(backbone, weights=None, **kwargs))


def check_blocks_cover_the_table(table, nodes, order):
    """Block nodes, in chain order, cover every non-input layer once, in the table's order."""
    seen = []
    for node_id in order:
        if node_id not in ("input", "cut"):
            seen.extend(covered(table, nodes[node_id])["name"])
    assert seen == list(table.loc[table["type"] != "InputLayer", "name"])


def check_shading(table, nodes):
    """Frozen fill exactly on blocks whose layers are all non-trainable; striped by share when some are."""
    for node_id, node in nodes.items():
        if node_id in ("input", "cut"):
            continue
        trainable = list(covered(table, node)["trainable"])
        fill = node["fillcolor"]
        if not any(trainable):
            assert fill == graph.FROZEN_FILL and "filled" in node["style"], node
        elif all(trainable):
            assert graph.FROZEN_FILL not in fill, node
        else:
            share = trainable.count(False) / len(trainable)
            assert node["style"] == "striped" and fill == f"{graph.FROZEN_FILL};{round(share, 3)}:#ffffff", node
            assert f"{trainable.count(False)} of {len(trainable)} layers frozen" in node["label"]


# The table to DOT --------------------------------------------------------------------------------

def test_vgg16_with_its_top_as_on_layers():
    table = full_table("VGG16")
    with shapes_only():
        comparison = tlcore.compare_layers(tlcore.load_backbone("VGG16", weights=None),
                                           tlcore.load_backbone("VGG16", weights=None, include_top=False))
    cut = tlcore.last_kept_layer(comparison)
    assert cut == "block5_pool"
    nodes, edges, _ = parse(tlcore.network_graph(table, cut=cut, after_label="the ImageNet top"))
    order = chain(nodes, edges)
    titles = [nodes[n]["label"].split("\n")[0] for n in order]
    assert titles == ["input", "block1", "block2", "block3", "block4", "block5", "cut: the base ends here",
                      "flatten", "fc1", "fc2", "predictions"]
    block1, fc1 = nodes[order[1]], nodes[order[8]]
    assert block1["label"] == "block1\n3 layers · 38,720 params\n-> 112x112x64"
    assert fc1["label"] == "fc1\nDense · 102,764,544 params\n-> 4096"
    assert fc1["fillcolor"] == graph.AFTER_CUT_FILL  # the top that include_top=False removes
    assert nodes["input"]["label"] == "input\n224x224x3"
    assert (order[5], "cut") in [(a, b) for a, b, _ in edges] and order[6] == "cut"
    check_blocks_cover_the_table(table, nodes, order)
    assert not any(graph.FROZEN_FILL in n.get("fillcolor", "") for n in nodes.values())  # nothing frozen


@pytest.mark.parametrize("backbone, trainable_from, clusters, most", [
    ("VGG16", "block4_conv1", [], 14),
    ("MobileNetV2", "block_13_expand", [], 30),
    ("DenseNet121", "conv4_block13_1_conv",
     ["conv2: 6 blocks, 42 layers", "conv3: 12 blocks, 84 layers", "conv4: 24 blocks, 168 layers",
      "conv5: 16 blocks, 112 layers"], 30),
])
def test_transfer_models_show_blocks_cut_head_and_exactly_the_frozen_blocks(backbone, trainable_from, clusters, most):
    # ImageNet-style freezing (batch normalization stays frozen) makes partly frozen blocks too.
    table = transfer_table(backbone, trainable_from, weights="imagenet")
    nodes, edges, drawn_clusters = parse(tlcore.transfer_graph(table))
    order = chain(nodes, edges)
    assert len(nodes) <= most  # hundreds of layers, a readable number of boxes
    assert drawn_clusters == clusters
    check_blocks_cover_the_table(table, nodes, order)
    check_shading(table, nodes)
    head = tlcore.head_layers(table)
    assert head == ["head_pool", "head_dropout_1", "head_hidden", "head_dropout", "head_output"]
    cut_at = order.index("cut")
    assert [nodes[n]["tooltip"] for n in order[cut_at + 1:]] == head  # one box per head layer, after the cut
    assert all(nodes[n]["fillcolor"] == graph.HEAD_FILL for n in order[cut_at + 1:])
    base_end = table["name"].iloc[list(table["name"]).index("head_pool") - 1]
    assert nodes[order[cut_at - 1]]["tooltip"].endswith(base_end)  # the cut follows the base's last layer
    styles = [nodes[n].get("style") for n in order[1:cut_at]]
    fills = [nodes[n].get("fillcolor") for n in order[1:cut_at]]
    assert fills[0] == graph.FROZEN_FILL  # the first block is frozen...
    assert fills[-1] != graph.FROZEN_FILL  # ...the last is not (batch normalization may keep a share frozen)
    assert ("striped" in styles) == (backbone != "VGG16")  # VGG16 has no batch normalization


@pytest.mark.slow
def test_densenet121_full_network_is_a_few_dozen_boxes():
    table = full_table("DenseNet121")
    assert len(table) > 400
    nodes, edges, clusters = parse(tlcore.network_graph(table, cut="relu"))
    order = chain(nodes, edges)
    assert len(nodes) <= 30
    assert [c.split(":")[0] for c in clusters] == ["conv2", "conv3", "conv4", "conv5"]
    check_blocks_cover_the_table(table, nodes, order)
    titles = [nodes[n]["label"].split("\n")[0] for n in order]
    assert titles[-3:] == ["cut: the base ends here", "avg_pool", "predictions"]
    assert "conv4_block1 ... conv4_block24" in titles  # 24 blocks in one state share a box


def test_names_are_escaped_inside_quoted_labels():
    table = pd.DataFrame({
        "name": ["in", 'odd"name', "back\\slash", "brace}{", "new\nline"],
        "type": ["InputLayer", "Dense", "Dense", "Dense", "Dense"],
        "output_shape": ["(None, 4)"] * 5,
        "params": [0, 20, 20, 20, 20],
        "trainable": [True, False, True, True, True],
    })
    dot = tlcore.network_graph(table, cut="back\\slash", head=["new\nline"])
    nodes, edges, _ = parse(dot)  # braces balanced outside quotes
    titles = [nodes[n]["label"].split("\n")[0] for n in chain(nodes, edges)]
    assert titles == ["input", 'odd"name', "back\\slash", "cut: the base ends here", "brace}{", "new"]
    assert nodes[chain(nodes, edges)[-1]]["tooltip"] == "new\nline"
    assert nodes[chain(nodes, edges)[1]]["fillcolor"] == graph.FROZEN_FILL


def test_bad_arguments_are_explained():
    table = full_table("VGG16", include_top=False, input_shape=(32, 32, 3))
    with pytest.raises(tlcore.ConfigError, match="The cut must be the name of a layer of this table. "
                                                 "Received: cut='fc1'"):
        tlcore.network_graph(table, cut="fc1")
    with pytest.raises(tlcore.ConfigError, match="Head layers must come after the cut"):
        tlcore.network_graph(table, cut="block5_pool", head=["block1_conv1"])
    with pytest.raises(tlcore.ConfigError, match="must have head layers"):
        tlcore.transfer_graph(table)


def test_block_rule_and_type_named_layers():
    assert [graph.block_key(n) for n in ("block1_conv2", "conv2_block1_1_conv", "block_1_expand",
                                         "mixed9_0", "stem_conv", "Conv_1_bn")] == [
        "block1", "conv2", "block_1", "mixed9_0", "stem", "Conv_1"]
    assert graph.block_key("conv2_block1_1_conv", 2) == "conv2_block1"
    assert graph.is_automatic_name("conv2d_12", "Conv2D") and graph.is_automatic_name("add", "Add")
    assert graph.is_automatic_name("global_average_pooling2d", "GlobalAveragePooling2D")
    assert not graph.is_automatic_name("block1_conv1", "Conv2D")


def test_a_table_without_usable_names_falls_back_to_runs_of_rows():
    kinds = ["Conv2D", "BatchNormalization", "Activation"] * 100
    table = pd.DataFrame({"name": [f"{graph.snake_case(k)}_{i}" for i, k in enumerate(kinds)], "type": kinds,
                          "output_shape": ["(None, 8, 8, 4)"] * 300, "params": [1] * 300,
                          "trainable": [True] * 300})
    nodes, edges, _ = parse(tlcore.network_graph(table, max_nodes=20))
    assert len(nodes) <= 20
    check_blocks_cover_the_table(table, nodes, chain(nodes, edges))


# The pages ---------------------------------------------------------------------------------------

def graphviz_specs(at) -> list[str]:
    return [element.proto.spec for element in at.get("graphviz_chart")]


@pytest.mark.slow
def test_layers_page_draws_the_diagram_with_and_without_the_top():
    at = open_page("../pages/layers.py", backbone="MobileNetV2")
    nodes, edges, _ = parse(graphviz_specs(at)[0])
    titles = [nodes[n]["label"].split("\n")[0] for n in chain(nodes, edges)]
    assert titles[-3:] == ["cut: include_top=False ends the base here", "global_average_pooling2d", "predictions"]
    assert "block_16" in titles and len(titles) == 24
    at.toggle(key="include_top").set_value(False).run()
    nodes, edges, _ = parse(graphviz_specs(at)[0])
    titles = [nodes[n]["label"].split("\n")[0] for n in chain(nodes, edges)]
    assert titles[-2:] == ["out_relu", "cut: the base ends here (224x224 input)"]  # nothing after the cut
    assert any("grouped into blocks" in c.value for c in at.caption)


def test_build_page_diagram_shades_the_frozen_blocks():
    at = open_page("../pages/build.py", backbone="VGG16", preset="128", training="Train from a layer",
                   trainable_from="block5_conv1")
    assert not at.error
    nodes, edges, _ = parse(graphviz_specs(at)[0])
    order = chain(nodes, edges)
    fills = {nodes[n]["label"].split("\n")[0]: nodes[n].get("fillcolor") for n in order}
    assert [name for name, fill in fills.items() if fill == graph.FROZEN_FILL] == [
        "block1", "block2", "block3", "block4"]
    assert fills["block5"] == graph.TRAINABLE_FILL and fills["head_output"] == graph.HEAD_FILL
    assert nodes[order[order.index("cut") - 1]]["label"].endswith("-> 4x4x512")
