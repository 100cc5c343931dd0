"""Top-k predictions for one image."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import pandas as pd

from tlcore.data.images import ImageSource, ResizeMode, fit_image, load_image
from tlcore.inference.precision import inference_forward
from tlcore.inference.top_k import TOP_K_COLUMNS, class_names, top_k_table
from tlcore.models.zoo import BackboneSpec, get_backbone

__all__ = ["TOP_K_COLUMNS", "model_input_size", "predict_top_k", "prepare_input", "top_k_table"]


def model_input_size(model: keras.Model) -> tuple[int, int]:
    """The (height, width) a model takes."""
    return tuple(int(d) for d in model.inputs[0].shape[1:3])


def prepare_input(
    image: ImageSource, model: keras.Model, *, backbone: str | BackboneSpec, mode: ResizeMode = "crop"
) -> np.ndarray:
    """Decode, fit and preprocess one image into a (1, h, w, 3) batch for ``model``."""
    fitted = fit_image(load_image(image), model_input_size(model), mode=mode)
    pixels = np.asarray(fitted, dtype=np.float32)[None]
    return get_backbone(backbone).preprocess(pixels)


def predict_top_k(
    model: keras.Model,
    image: ImageSource,
    *,
    backbone: str | BackboneSpec,
    k: int = 5,
    labels: Sequence[str] | None = None,
    mode: ResizeMode = "crop",
    precision: str | None = None,
) -> pd.DataFrame:
    """Classify one image.

    Args:
        model: a classifier ending in a softmax (an ImageNet backbone with
            ``include_top=True``, or a trained transfer model).
        image: anything ``load_image`` accepts.
        backbone: whose preprocessing the model expects.
        k: how many classes to return; clamped to the number of classes.
        labels: class names; ImageNet's for 1,000 outputs when None.
        mode: "crop" (centre crop, default) or "squash".
        precision: "auto", "float32" or "bfloat16"; None follows a forced precision,
            then ``TL_PRECISION`` (a trained run passes ``precision_for_run``'s answer).

    Returns:
        DataFrame with columns rank, label, class_id, probability, most probable
        first; equal probabilities in class-id order (lowest first). ImageNet
        labels are the readable names ("great white shark").

    Raises:
        ImageError: the image is not usable.
        ConfigError: labels that do not match the model's outputs.
    """
    forward = inference_forward(model, backbone=backbone, precision=precision)  # bfloat16 where measured faster
    probabilities = forward(prepare_input(image, model, backbone=backbone, mode=mode))[0]
    return top_k_table(probabilities, class_names(probabilities.shape[-1], labels), k)
