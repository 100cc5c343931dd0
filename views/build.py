"""Build: a new input size, pooling, head and frozen layers around a pretrained base."""

import streamlit as st

import tlcore
from ui import models, sidebar
from ui.state import from_url, to_url

st.title("Build a transfer model")
choice = sidebar.choice()
spec = tlcore.get_backbone(choice.backbone)
st.caption(f"{choice.backbone} without its ImageNet top, and a new head for your own classes.")

PRESETS = ["224", "128", "300", "48", "custom"]
POOLING_NAMES = {"avg": "global average", "max": "global max", "flatten": "flatten"}
FROZEN, FROM_LAYER, EVERYTHING = "All frozen", "Train from a layer", "Everything trainable"
from_url("preset", str(spec.default_size) if str(spec.default_size) in PRESETS else "224", choices=PRESETS)
from_url("custom_size", 64, cast=int)
from_url("build_pooling", "avg", choices=list(tlcore.build.POOLINGS))
from_url("training", FROZEN, choices=[FROZEN, FROM_LAYER, EVERYTHING])
from_url("hidden", 256, cast=int)
from_url("dropout", 0.2, cast=float)
from_url("classes", 2, cast=int)

shape_col, freeze_col, head_col = st.columns(3, gap="large")
with shape_col:
    st.subheader("Input")
    preset = st.selectbox("Input size", PRESETS, key="preset",
                          format_func=lambda p: p if p == "custom" else f"{p}x{p}")
    size = (st.number_input("Custom size (pixels)", min_value=1, max_value=4096, key="custom_size")
            if preset == "custom" else int(preset))
    pooling = st.radio("Pooling", tlcore.build.POOLINGS, key="build_pooling", horizontal=True,
                       format_func=POOLING_NAMES.get)
with freeze_col:
    st.subheader("Frozen layers")
    training = st.radio("Which layers train", [FROZEN, FROM_LAYER, EVERYTHING], key="training")
    trainable_from = {FROZEN: None, EVERYTHING: tlcore.ALL_LAYERS}.get(training)
    if training == FROM_LAYER:
        names = models.layer_names(choice.backbone)
        from_url("trainable_from", names[-3] if len(names) > 2 else names[0], choices=names)
        trainable_from = st.selectbox("Train from layer", names, key="trainable_from",
                                      help="This layer and every layer after it train; "
                                           "the ones before stay frozen.")
with head_col:
    st.subheader("New head")
    hidden = st.number_input("Hidden units (0 for none)", min_value=0, max_value=4096, step=32, key="hidden")
    dropout = st.slider("Dropout", 0.0, 0.9, step=0.05, key="dropout")
    classes = st.number_input("Classes", min_value=2, max_value=1000, key="classes")
to_url("preset", "custom_size", "build_pooling", "training", "hidden", "dropout", "classes",
       *(["trainable_from"] if training == FROM_LAYER else []))

transfer = tlcore.TransferSpec(
    backbone=choice.backbone, input_shape=(int(size), int(size), 3), weights=choice.weights,
    pooling=pooling, trainable_from=trainable_from, hidden_units=int(hidden),
    dropout=float(dropout), num_classes=int(classes),
)
try:
    plan = models.transfer_plan(transfer)
except tlcore.TLError as exc:
    st.error(f"**This model cannot be built.** {exc}")
    st.stop()

st.session_state["transfer_spec"] = transfer  # what the Train page uses
st.divider()
height, width, channels = plan.check.feature_map
st.success(f"{choice.backbone} at {size}x{size} leaves a **{height}x{width}x{channels}** feature map; "
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
