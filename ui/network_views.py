"""Pictures of a network for the Layers and Build pages: its diagram, and what a layer sees."""

from __future__ import annotations

import hashlib

import streamlit as st
from PIL import Image

import tlcore
from ui import access, first_screen, models, sidebar
from ui.samples import IMAGE_TYPES, decoded_image, sample_images

LEGEND = ("Each box is a block of layers (hover for its first and last layer), with its parameters and the "
          "shape it outputs. **Grey**: frozen, its weights stay as they are; **half grey**: partly frozen, the "
          "frozen share on the left; **white**: trainable; **green**: the new head; **pink**: after the cut, "
          "not part of the base; the **red dashed box** is the cut.")
TOP_CHOICES = [4, 8, 16, 32, 64]


def diagram(dot: str, caption: str) -> None:
    """Draw a DOT diagram (rendered in the browser) with the legend and a caption under it."""
    st.graphviz_chart(dot, width="content")
    st.caption(f"{caption} {LEGEND}")


def layers_dot(views: tlcore.LayerViews, include_top: bool, size: int, pooling: str | None) -> str:
    """The Layers page's diagram: with the ImageNet top after the cut, or what include_top=False leaves."""
    cut = tlcore.last_kept_layer(views.comparison)
    if include_top:
        return tlcore.network_graph(views.full, cut=cut, cut_label="cut: include_top=False ends the base here",
                                    after_label="the ImageNet top: include_top=False removes it")
    return tlcore.network_graph(views.cut, cut=cut, cut_label=f"cut: the base ends here ({size}x{size} input)",
                                after_label=f"added by pooling='{pooling}'")


def pick_image(key: str) -> tuple[bytes, str]:
    """An uploaded image or a sample, as (bytes, what to call it); the bytes are not decoded yet."""
    samples = sample_images()
    upload = st.file_uploader("Upload an image", type=IMAGE_TYPES, key=f"{key}_upload",
                              help="A photo or drawing: JPEG, PNG, WebP, BMP, GIF or TIFF.")
    sample = st.selectbox("...or pick a sample", list(samples), key=f"{key}_sample", disabled=upload is not None,
                          help="Photos that come with the app, to try it without one of your own.")
    if upload is not None:
        return upload.getvalue(), access.plain(upload.name)
    return samples[sample].read_bytes(), f"the {sample} sample"


def checked_image(data: bytes) -> Image.Image | None:
    """The decoded image, or None after saying plainly why the file cannot be used (as Predict does)."""
    try:
        return decoded_image(data)
    except tlcore.ImageError as exc:
        st.error(f"**That file cannot be used.** {access.message(exc)}")
        return None


def layer_network(choice: models.WeightsChoice):
    """The sidebar's network (with its top, shared with Predict); explains and stops when unavailable.

    ImageNet weights are used only when they are already on this machine: opening Layers
    never starts a download (Predict does, with a progress bar).
    """
    if choice.weights == "imagenet" and not tlcore.weights_status(choice.backbone).cached:
        if not first_screen.imagenet_available(choice.backbone):
            first_screen.imagenet_missing(choice.backbone, tlcore.WeightsError(
                tlcore.weights_status(choice.backbone).describe()))
        st.info(f"{choice.backbone}'s ImageNet weights are not on this machine yet. Classify an image on "
                f"*Predict* once to download them, or choose *{sidebar.RANDOM}* in the sidebar to see what "
                "untrained filters respond to.")
        st.stop()
    return sidebar.load_or_explain(models.classifier, choice)


@st.cache_data(max_entries=24, show_spinner="Computing the layer's output...")
def _strongest(backbone: str, weights: str | None, digest: str, layer: str, top: int, _model, _data: bytes):
    return tlcore.feature_maps(_model, _data, layer, backbone=backbone, top=top)


def strongest_channels(choice: models.WeightsChoice, model, data: bytes, layer: str,
                       top: int) -> tlcore.FeatureMaps | None:
    """The layer's strongest channels for this image (cached per network, image content, layer and count),
    or None after saying what went wrong."""
    try:
        return _strongest(choice.backbone, choice.weights, hashlib.sha256(data).hexdigest(), layer, top, model, data)
    except tlcore.TLError as exc:
        st.error(access.message(exc))
        return None


def grid_caption(maps: tlcore.FeatureMaps, source_name: str) -> str:
    strongest = ", ".join(f"{c} ({m:.3g})" for c, m in zip(maps.channels[:8], maps.means[:8]))
    more = "..." if len(maps.channels) > 8 else ""
    return (f"The {len(maps.channels)} strongest of {maps.channel_count} channels of {maps.layer} for "
            f"{source_name} at {maps.input_size[0]}x{maps.input_size[1]}, strongest first, row by row; each "
            f"scaled from its own lowest (dark purple) to highest (yellow) value. Channel (mean activation): "
            f"{strongest}{more}")
