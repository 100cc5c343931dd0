"""Layers: every layer of a backbone, and what include_top=False removes."""

import streamlit as st

import tlcore
from ui import access, models, network_views, sidebar
from ui.code_panel import code_panel
from ui.share import copy_link
from ui.state import boolean, from_url, to_url

st.title("Layers")
copy_link("layers")
backbone = sidebar.choice().backbone
spec = tlcore.get_backbone(backbone)

SIZE = (8, 1024)  # the input size widget's (min, max)
from_url("include_top", True, cast=boolean, choices=[True, False])
from_url("size", spec.default_size, cast=int, bounds=SIZE)
from_url("pooling", "none", choices=["none", "avg", "max"])

controls = st.columns(3)
include_top = controls[0].toggle("Keep the ImageNet top (include_top)", key="include_top",
                                 help="The top is the network's last layers, which pick one of ImageNet's "
                                      "1,000 classes. Turn it off to see the part that is reused.")
size = controls[1].number_input("Input size without the top", *SIZE, step=1,
                                key="size", disabled=include_top,
                                help="The side of the square pictures, in pixels. With the top the size is fixed; "
                                     "without it the reused part takes other sizes.")
pooling = controls[2].selectbox("Pooling without the top", ["none", "avg", "max"], key="pooling",
                                disabled=include_top,
                                help="How the last grid of numbers becomes one list per picture: none keeps the "
                                     "grid, avg takes each map's average, max its largest value.")
to_url("include_top", "size", "pooling")
pool = None if pooling == "none" else pooling

try:
    views = models.layer_views(backbone, int(size), pool)
except tlcore.ShapeError as exc:
    if not include_top:
        st.error(f"**That input size does not work.** {access.message(exc)}")
        st.stop()
    size = spec.default_size  # the size field is off while the top is kept: its last value does not fit this network
    views = models.layer_views(backbone, size, pool)

table, counts = (views.full, views.full_counts) if include_top else (views.cut, views.cut_counts)
comparison = views.comparison
metrics = st.columns(4)
metrics[0].metric("Layers", len(table))
metrics[1].metric("Parameters", f"{counts.total:,}")
metrics[2].metric("Trainable", f"{counts.trainable:,}")
metrics[3].metric("Non-trainable", f"{counts.non_trainable:,}")
st.dataframe(table, hide_index=True, width="stretch", height=420,
             column_config={"params": st.column_config.NumberColumn(format="localized")})

st.caption("How to read it: *output_shape* is the size of what a layer passes on, e.g. (None, 224, 224, 3) is "
           "a picture 224 pixels high and wide with 3 colours (red, green, blue); *None* stands for however many "
           "pictures go in at once. *params* counts the numbers the layer learned; *trainable* says whether "
           "training may change them.")

st.subheader("The network in blocks")
network_views.diagram(network_views.layers_dot(views, include_top, int(size), pool),
                      f"{backbone}'s {len(table)} layers grouped into blocks by their names; the cut is where "
                      "include_top=False ends the base.")

st.subheader("With the top against without it")
st.caption(f"include_top=False removes the ImageNet classifier; the kept layers' output shapes follow "
           f"the input size ({size}x{size}) and pooling chosen above.")
STATUS_COLOURS = {"removed": "background-color: #fde2e1", "added": "background-color: #e2f5e4", "kept": ""}
st.dataframe(
    comparison.style.apply(lambda row: [STATUS_COLOURS[row["status"]]] * len(row), axis=1),
    hide_index=True, width="stretch", height=420,
)
removed = comparison.query("status == 'removed'")["name"].tolist()
st.caption(f"Removed: {', '.join(removed) or 'nothing'}.")
code_panel("Keras code", tlcore.layers_program(backbone, include_top, int(size), pool), "layers")

st.subheader("What a layer sees")
choice = sidebar.choice()
network = network_views.layer_network(choice)  # the sidebar's network with its top, shared with Predict
CONV_LAYERS = tlcore.conv_layer_names(network)
if st.session_state.get("sees_layer") not in CONV_LAYERS:
    st.session_state["sees_layer"] = CONV_LAYERS[0]  # an early layer; also after switching backbone
picker, grid = st.columns([1, 2], gap="large")
with picker:
    data, source_name = network_views.pick_image("sees")
    image = network_views.checked_image(data)
    layer = st.selectbox("Convolutional layer", CONV_LAYERS, key="sees_layer",
                         help="From the first (edges and colours) to the last (ImageNet's object parts).")
    top = st.select_slider("Channels shown", network_views.TOP_CHOICES, value=16, key="sees_top",
                           help="Each channel is one small detector of the layer; the strongest for this picture "
                                "are shown first.")
    if image is not None:
        st.image(image, caption=f"The image: {source_name}", width=200)
maps = network_views.strongest_channels(choice, network, data, layer, top) if image is not None else None
with grid:
    if maps is not None:
        st.image(tlcore.feature_grid(maps, columns=8 if top > 16 else 4),
                 caption=network_views.grid_caption(maps, source_name), width="stretch")
    st.info(tlcore.depth_note(CONV_LAYERS, layer))
    if choice.is_random:
        st.warning("These are untrained (random) filters: what they show is not learned. Random filters still "
                   "respond to edges and colours, so the early layers look like an edge or colour picture; the "
                   "late ones are noise until the network is trained. Choose ImageNet weights to see what "
                   "pretraining learned.")
