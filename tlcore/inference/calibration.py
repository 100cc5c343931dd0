"""Measuring precision: does bfloat16 run a model faster here, and do its outputs agree with float32's?

``calibrate`` times a model's float32 forward pass against its bfloat16 copy's on made-up
inputs, alternately, and keeps the verdict per machine (CPU model and flags, cores,
TensorFlow version), backbone, input size, batch kind and architecture in
``<TL_DATA_DIR>/precision/<machine>.json``; ``compare_precisions`` checks a model on real
held-out images. The choice made from these measurements is ``tlcore.inference.precision``'s.

A calibration keeps to ``TL_MAX_ACTIVATION_MB`` like every pass: its made-up images run
in passes that fit (``calibration_fits``), it times batch work at the pass size that work
will run at, and a model that cannot take one image within the budget is not calibrated.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable

import keras
import numpy as np
import tensorflow as tf

from tlcore.core.errors import BudgetError, ConfigError
from tlcore.core.settings import load_settings
from tlcore.inference.forward import compiled_forward, forget_forward
from tlcore.inference.verdicts import (
    CALIBRATION_BATCH,
    MIN_COSINE,
    MIN_SPEEDUP,
    Calibration,
    PrecisionCheck,
    bfloat16_units,
    calibration_key,
    calibrations,
    forget_calibrations,
    keep_calibration,
    known_calibration,
    machine,
    machine_id,
    store_path,
)
from tlcore.models.cost import MB, activation_bytes, images_per_pass
from tlcore.models.zoo import BackboneSpec, get_backbone

AGREEMENT_IMAGES = 8
"""Made-up images both precisions run on before any timing; every output must agree (``MIN_COSINE``)."""


CALIBRATION_REPEATS = 3
"""Timed forward passes per precision (after one untimed warm-up); the fastest counts."""


CALIBRATION_MAX_REPEATS = 8
"""Up to this many when the two are close (``UNSURE_BAND``): a close call gets a second look."""


UNSURE_BAND = (0.8, 1.3)
"""Speed-ups in this range are measured again (within ``CALIBRATION_BUDGET_S``) before the verdict."""


CALIBRATION_BUDGET_S = 12.0
"""A calibration stops repeating once it has spent this long (each precision is timed at least once)."""


def architecture_digest(model: keras.Model) -> str:
    """What the model computes, without weights or names: its layer types and output shape."""
    def types(m: keras.Model) -> list[str]:
        found = []
        for layer in m.layers:
            found.extend(types(layer) if isinstance(layer, keras.Model) else [type(layer).__name__])
        return found

    described = [types(model), [int(d) for d in model.outputs[0].shape[1:]]]
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()[:12]


def calibration_batch(batch: int, fits: int = CALIBRATION_BATCH) -> int:
    """The batch a calibration for work in batches of ``batch`` times: 1, or ``CALIBRATION_BATCH``,
    or fewer when only ``fits`` images fit one pass (``calibration_fits``): the passes the work will run."""
    return 1 if batch <= 1 else max(1, min(CALIBRATION_BATCH, fits))


def calibration_fits(model: keras.Model) -> int:
    """How many made-up images one calibration pass over ``model`` may take within ``TL_MAX_ACTIVATION_MB``.

    At most ``max(CALIBRATION_BATCH, AGREEMENT_IMAGES)`` (all a calibration needs); 0 when
    not even one image fits, and then the model is not calibrated.
    """
    return images_per_pass(activation_bytes(model), max(CALIBRATION_BATCH, AGREEMENT_IMAGES))


TOO_LARGE = "too large to calibrate within TL_MAX_ACTIVATION_MB"
"""Why a model whose one image does not fit the activation budget is not calibrated (and runs in float32)."""


def calibration_inputs(model: keras.Model, spec: BackboneSpec, batch: int, *, seed: int = 0) -> np.ndarray:
    """``batch`` made-up images at the model's input size, preprocessed for the backbone.

    Every other one is pixel noise; the rest are smooth (4x4 random colours
    stretched over the image), which drive a network more like photographs do.
    """
    height, width, channels = (int(d) for d in model.inputs[0].shape[1:])
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(0, 255, (batch, height, width, channels)).astype(np.float32)
    coarse = rng.uniform(0, 255, (batch, 4, 4, channels)).astype(np.float32)
    smooth = tf.image.resize(coarse, (height, width), method="bilinear").numpy()
    pixels[1::2] = smooth[1::2]
    return spec.preprocess(pixels)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    same = np.all(a == b, axis=1)
    return np.where(same, 1.0, (a * b).sum(axis=1) / np.maximum(norms, 1e-30))


def calibrate(model: keras.Model, *, backbone: str | BackboneSpec, batch: int = 1) -> Calibration:
    """Time ``model``'s float32 forward pass against its bfloat16 copy's, here and now.

    Both are traced, then compared on ``AGREEMENT_IMAGES`` made-up images and
    warmed at the batch size; then they run alternately on the same inputs,
    ``CALIBRATION_REPEATS`` times each, up to ``CALIBRATION_MAX_REPEATS`` when the
    ratio is a close call (fewer once ``CALIBRATION_BUDGET_S`` is spent), and the
    fastest of each counts (other work on the machine only ever adds time). The
    bfloat16 copy is kept only if it wins (``forget_forward`` otherwise), so a
    verdict of float32 costs no memory.

    Every pass keeps to ``TL_MAX_ACTIVATION_MB``: the made-up images run in passes
    that fit, and batch work is timed at the pass size it will run at
    (``calibration_batch``).

    Raises:
        BudgetError: not even one image of ``model`` fits ``TL_MAX_ACTIVATION_MB``.
    """
    spec = get_backbone(backbone)
    fits = calibration_fits(model)
    if fits < 1:
        raise BudgetError(
            f"A calibration pass may take at most {load_settings().max_activation_mb:,} MB of activations "
            f"on this server (TL_MAX_ACTIVATION_MB). Received: a model needing "
            f"{activation_bytes(model) / MB:,.1f} MB for one image"
        )
    batch = calibration_batch(batch, fits)
    x = calibration_inputs(model, spec, max(batch, AGREEMENT_IMAGES))
    float32 = compiled_forward(model)
    bfloat16 = compiled_forward(model, precision="bfloat16")
    cosine = float(_cosines(float32(x), bfloat16(x)).min())  # in passes that fit (compiled_forward)
    if batch < len(x):
        x = x[:batch]
        float32(x), bfloat16(x)  # the warm-up at this batch size
    best = {"float32": float("inf"), "bfloat16": float("inf")}
    cpu = {"float32": float("inf"), "bfloat16": float("inf")}
    started = time.perf_counter()
    for repeat in range(1, CALIBRATION_MAX_REPEATS + 1):
        for name, forward in (("float32", float32), ("bfloat16", bfloat16)):
            start, start_cpu = time.perf_counter(), time.process_time()
            forward(x)
            cpu[name] = min(cpu[name], (time.process_time() - start_cpu) * 1000)
            best[name] = min(best[name], (time.perf_counter() - start) * 1000)
        ratios = (best["float32"] / best["bfloat16"], cpu["float32"] / max(cpu["bfloat16"], 1e-6))
        close = any(UNSURE_BAND[0] <= ratio <= UNSURE_BAND[1] for ratio in ratios)
        if (repeat >= CALIBRATION_REPEATS and not close) or time.perf_counter() - started > CALIBRATION_BUDGET_S:
            break
    calibration = Calibration(
        backbone=spec.name, input_size=tuple(int(d) for d in model.inputs[0].shape[1:3]), batch=batch,
        architecture=architecture_digest(model), float32_ms=round(best["float32"], 3),
        bfloat16_ms=round(best["bfloat16"], 3), cosine=round(cosine, 6), measured_at=time.time(),
        float32_cpu_ms=round(cpu["float32"], 3), bfloat16_cpu_ms=round(cpu["bfloat16"], 3),
    )
    if calibration.precision != "bfloat16":
        forget_forward(model, "bfloat16")
    return calibration


def compare_precisions(model: keras.Model, batches: Iterable[np.ndarray]) -> PrecisionCheck:
    """Run ``model`` in float32 and in bfloat16 over ``batches`` (preprocessed inputs) and compare.

    Raises:
        ConfigError: no inputs, or a model that has no bfloat16 copy.
    """
    float32, bfloat16 = compiled_forward(model), compiled_forward(model, precision="bfloat16")
    pairs = [(float32(x), bfloat16(x)) for x in batches]
    if not pairs or not sum(len(a) for a, _ in pairs):
        raise ConfigError("Comparing precisions needs at least one input. Received: no batches")
    a = np.concatenate([p[0].reshape(len(p[0]), -1) for p in pairs])
    b = np.concatenate([p[1].reshape(len(p[1]), -1) for p in pairs])
    cosines = _cosines(a, b)
    return PrecisionCheck(
        images=len(a),
        top1_agreement=float(np.mean(a.argmax(axis=1) == b.argmax(axis=1))),
        max_abs_error=float(np.abs(a - b).max()),
        min_cosine=float(cosines.min()),
        mean_cosine=float(cosines.mean()),
    )


__all__ = [  # the measuring, and (from tlcore.inference.verdicts, for callers that import them here) the verdicts
    "AGREEMENT_IMAGES", "CALIBRATION_BATCH", "MIN_COSINE", "MIN_SPEEDUP", "TOO_LARGE", "Calibration",
    "PrecisionCheck", "architecture_digest", "bfloat16_units", "calibrate", "calibration_batch",
    "calibration_fits", "calibration_inputs", "calibration_key", "calibrations", "compare_precisions",
    "forget_calibrations", "keep_calibration", "known_calibration", "machine", "machine_id", "store_path",
]
