"""Build: a new input size, pooling, head and frozen layers around a pretrained base."""

import streamlit as st

import tlcore
from ui import access, control_help, datasets, models, network_views, sidebar, training, transfer_curve
from ui.code_panel import code_panel
from ui.share import copy_link
from ui.state import forget_gone, from_url, to_url

st.title("Build a transfer model")
copy_link("build", "this model, with every choice made here")
choice = sidebar.choice()
PRETRAINED = "pretrained"
runs = training.run_store().with_models()
run_names = tlcore.run_titles(runs, access.owner_label)  # the same titles as on Runs
forget_gone("base_run", [PRETRAINED, *run_names], "The run whose base you reused")
from_url("base_run", PRETRAINED, choices=[PRETRAINED, *run_names],
         accepted=f"{PRETRAINED} or the id of a finished run on this server")
HELP = control_help.BUILD
STARTS = {"imagenet": f"{choice.backbone} pretrained on ImageNet", None: f"{choice.backbone} with random "
          "(untrained) weights, as chosen in the sidebar"}
base_run = st.selectbox(
    "Start from", [PRETRAINED, *run_names], key="base_run", help=HELP["base_run"],
    format_func=lambda r: STARTS.get(choice.weights, f"{choice.backbone} with the weights in {choice.label}, as "
                                                     "chosen in the sidebar") if r == PRETRAINED
    else f"Develop-a-model: the trained base of run {run_names[r]}",
)
source = None if base_run == PRETRAINED else training.run_store().get(base_run)
backbone = source.spec.backbone if source else choice.backbone
spec = tlcore.get_backbone(backbone)
st.caption(f"{backbone} without its ImageNet top, and a new head for your own classes."
           if source is None else
           f"The base that run `{base_run}` trained on {access.plain(source.dataset.get('name'))}, reused for a new task "
           f"at its input size, {source.spec.input_shape[0]}x{source.spec.input_shape[1]}.")

PRESETS = ["224", "128", "300", "48", "custom"]
POOLING_NAMES = {"avg": "global average", "max": "global max", "flatten": "flatten"}
FROZEN, FROM_LAYER, EVERYTHING = "All frozen", "Train from a layer", "Everything trainable"
CUSTOM_SIZE, HIDDEN, DROPOUT, CLASSES = (1, 4096), (0, 4096), (0.0, 0.9), (2, 1000)  # the widgets' (min, max)
WINDOW = (0, 16)  # average pooling window; 0 for none
from_url("preset", str(spec.default_size) if str(spec.default_size) in PRESETS else "224", choices=PRESETS)
from_url("custom_size", 64, cast=int, bounds=CUSTOM_SIZE)
from_url("build_pooling", "avg", choices=list(tlcore.POOLINGS))
from_url("training", FROZEN, choices=[FROZEN, FROM_LAYER, EVERYTHING])
from_url("hidden", 256, cast=int, bounds=HIDDEN)
from_url("dropout", 0.2, cast=float, bounds=DROPOUT)
from_url("classes", 2, cast=int, bounds=CLASSES)
from_url("conv_blocks", 0, cast=int, bounds=tlcore.CONV_BLOCKS)
from_url("conv_filters", 64, cast=int, bounds=tlcore.CONV_FILTERS)
from_url("conv_kernel", 3, cast=int, bounds=tlcore.CONV_KERNELS)
from_url("conv_pool", 2, cast=int, bounds=tlcore.CONV_POOLS)
from_url("pool_size", 0, cast=int, bounds=WINDOW)

shape_col, freeze_col, head_col = st.columns(3, gap="large")
with shape_col:
    st.subheader("Input")
    preset = st.selectbox("Input size", PRESETS, key="preset", disabled=source is not None,
                          format_func=lambda p: p if p == "custom" else f"{p}x{p}", help=HELP["preset"])
    size = (st.number_input("Custom size (pixels)", *CUSTOM_SIZE, key="custom_size", help=HELP["custom_size"])
            if preset == "custom" else int(preset))
    if source is not None:
        size = source.spec.input_shape[0]
    pooling = st.radio("Pooling", tlcore.POOLINGS, key="build_pooling", horizontal=True,
                       format_func=POOLING_NAMES.get, help=HELP["build_pooling"])
with freeze_col:
    st.subheader("Frozen layers")
    training = st.radio("Which layers train", [FROZEN, FROM_LAYER, EVERYTHING], key="training",
                        help=HELP["training"])
    trainable_from = {FROZEN: None, EVERYTHING: tlcore.ALL_LAYERS}.get(training)
    if training == FROM_LAYER:
        names = models.layer_names(backbone)
        from_url("trainable_from", tlcore.default_trainable_from(backbone), choices=names,
                 accepted=f"the name of a layer of {backbone}")
        trainable_from = st.selectbox("Train from layer", names, key="trainable_from",
                                      help=HELP["trainable_from"])
with head_col:
    st.subheader("New head")
    blocks = st.number_input("New convolutional blocks", *tlcore.CONV_BLOCKS, key="conv_blocks",
                             help=HELP["conv_blocks"])
    conv = st.columns(3)
    filters = conv[0].number_input("Filters", *tlcore.CONV_FILTERS, step=16, key="conv_filters", disabled=not blocks,
                                   help=HELP["conv_filters"])
    kernel = conv[1].number_input("Kernel", *tlcore.CONV_KERNELS, key="conv_kernel", disabled=not blocks,
                                  help=HELP["conv_kernel"])
    block_pool = conv[2].number_input("Max pool", *tlcore.CONV_POOLS, key="conv_pool", disabled=not blocks,
                                      help=HELP["conv_pool"])
    window = st.number_input("Average pooling window before the dense layers (0 for none)", *WINDOW,
                             key="pool_size", help=HELP["pool_size"])
    hidden = st.number_input("Hidden units (0 for none)", *HIDDEN, step=32, key="hidden", help=HELP["hidden"])
    dropout = st.slider("Dropout", *DROPOUT, step=0.05, key="dropout", help=HELP["dropout"])
    trained_classes = st.session_state.get(datasets.TRAIN_CLASSES)
    if trained_classes is not None:  # the images chosen on Train decide the head's outputs
        st.session_state["classes"] = int(trained_classes)
    classes = st.number_input("Classes", *CLASSES, key="classes", help=HELP["classes"],
                              disabled=trained_classes is not None)
    st.caption(f"The {trained_classes} classes of the images chosen on Train." if trained_classes is not None
               else "Training sets this to the number of classes in the images you choose on Train.")
to_url("base_run", "preset", "custom_size", "build_pooling", "training", "hidden", "dropout", "classes",
       "conv_blocks", "conv_filters", "conv_kernel", "conv_pool", "pool_size",
       *(["trainable_from"] if training == FROM_LAYER else []))

transfer = tlcore.TransferSpec(
    backbone=backbone, input_shape=(int(size), int(size), 3), weights=choice.weights,
    base_model=str(source.model_path) if source else None,
    pooling=pooling, trainable_from=trainable_from, hidden_units=int(hidden),
    dropout=float(dropout), num_classes=int(classes), pool_size=int(window) or None, conv_blocks=int(blocks),
    conv_filters=int(filters), conv_kernel=int(kernel), conv_pool=int(block_pool),
)
try:
    plan = models.transfer_plan(transfer)
except tlcore.TLError as exc:
    st.error(f"**This model cannot be built.** {access.message(exc)}")
    st.stop()

st.session_state["transfer_spec"] = transfer  # what the Train page uses
st.divider()
height, width, channels = plan.check.feature_map
blocks_leave = ("; the new convolutional blocks make it **{}x{}x{}**".format(*plan.head_map)
                if transfer.conv_blocks else "")
st.success(f"{backbone} at {size}x{size} leaves a **{height}x{width}x{channels}** feature map{blocks_leave}; "
           f"the {POOLING_NAMES[pooling]} pooling turns it into the head's input.")
for note in plan.check.notes:
    st.info(note)
metrics = st.columns(3)
metrics[0].metric("Parameters", f"{plan.counts.total:,}")
metrics[1].metric("Trainable", f"{plan.counts.trainable:,}")
metrics[2].metric("Frozen", f"{plan.counts.non_trainable:,}")
st.dataframe(
    plan.layers.style.apply(
        lambda row: ["" if row["trainable"] else "color: #8a8a8a"] * len(row), axis=1),
    hide_index=True, width="stretch", height=460,
    column_config={"trainable": st.column_config.CheckboxColumn("trainable")},
)
st.caption("Grey rows are frozen: their pretrained weights stay as they are during training.")
st.subheader("The model in blocks")
network_views.diagram(tlcore.transfer_graph(plan.layers),
                      f"The base's {len(plan.layers) - len(tlcore.head_layers(plan.layers))} layers grouped into "
                      "blocks by their names, the cut where the base ends, and the new head layer by layer.")
code_panel("Keras code", tlcore.transfer_program(transfer), "build_model")
transfer_curve.section(transfer)
