"""Which precision inference runs in: float32, or bfloat16 where it is measured faster here.

CPUs with bfloat16 units (AVX512-BF16, AMX) run some networks several times
faster in bfloat16 and others slower (VGG16 gains, MobileNetV2 loses on the same
CPU), so the choice is made per machine and per network, by measuring:

- ``TL_PRECISION`` (``Settings.precision``) is ``auto`` (the default),
  ``float32`` or ``bfloat16``; a person can force float32 for their own work
  with ``force_precision("float32")`` (the sidebar's switch does, per session);
- under ``auto`` a short calibration times the model's float32 forward pass
  against its bfloat16 copy's on the same inputs, alternately, and keeps the
  verdict for this machine (CPU model and flags, cores, TensorFlow version),
  backbone, input size, batch kind (one image or batches) and architecture, in
  ``<TL_DATA_DIR>/precision/<machine>.json``; later calls and processes read it;
- bfloat16 is chosen only when it was measured at least ``MIN_SPEEDUP`` times
  faster and its outputs agreed with float32's (cosine similarity at least
  ``MIN_COSINE`` on each of ``AGREEMENT_IMAGES`` made-up images): ``auto`` never
  picks a precision measured slower. Made-up images are not the person's data:
  ``compare_precisions`` checks a model on real held-out images;
- a calibration keeps to ``TL_MAX_ACTIVATION_MB`` in every pass (its made-up
  images run in passes that fit); a model that cannot take one image within it
  is not calibrated and runs in float32 ("too large to calibrate").

Only inference uses this (Predict, Features, the frozen-prefix feature cache);
training and the evaluation of a trained model stay float32.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import weakref
from collections.abc import Callable, Mapping

import keras
import numpy as np

from tlcore.core.errors import ConfigError
from tlcore.inference.calibration import (
    MIN_COSINE,
    TOO_LARGE,
    Calibration,
    PrecisionCheck,
    architecture_digest,
    bfloat16_units,
    calibrate,
    calibration_batch,
    calibration_fits,
    calibration_key,
    keep_calibration,
    known_calibration,
)
from tlcore.inference.forward import compiled_forward
from tlcore.inference.precision_setting import (
    PRECISIONS,
    check_precision,
    describe_backbone,
    force_precision,
    forced_precision,
    precision_setting,
    requested_precision,
)
from tlcore.models.remote import RemoteModel
from tlcore.models.zoo import BackboneSpec, get_backbone

_CALIBRATING = threading.Lock()
_NO_COPY: weakref.WeakSet = weakref.WeakSet()  # models Keras could not rebuild in bfloat16: not tried again


# --- the machine -------------------------------------------------------------------------------


# --- calibration -------------------------------------------------------------------------------


# --- verdicts kept on disk ---------------------------------------------------------------------


# --- the choice --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PrecisionChoice:
    """The precision a piece of inference runs in, and why.

    Attributes:
        precision: "float32" or "bfloat16".
        reason: where it comes from: "asked for", "forced for this session", "TL_PRECISION",
            "measured", "no bfloat16 units", "no bfloat16 copy of this model", or
            ``TOO_LARGE`` ("too large to calibrate within TL_MAX_ACTIVATION_MB").
        calibration: the measurement behind a "measured" choice.
    """

    precision: str
    reason: str
    calibration: Calibration | None = None

    def describe(self) -> str:
        """E.g. "bfloat16 (measured 2.1x faster here)" or "float32 (TL_PRECISION)"."""
        if self.calibration is not None:
            speedup = self.calibration.gain
            if self.precision == "bfloat16":
                return f"bfloat16 (measured {speedup:.1f}x faster here)"
            if self.calibration.cosine < MIN_COSINE:
                return f"float32 (bfloat16 disagreed: cosine {self.calibration.cosine:.3f})"
            return f"float32 (bfloat16 measured {speedup:.2f}x here)"
        if self.reason == "no bfloat16 units":
            return "float32 (this CPU has no bfloat16 units)"
        return f"{self.precision} ({self.reason})"


def choose_precision(model: keras.Model, *, backbone: str | BackboneSpec, batch: int = 1,
                     precision: str | None = None) -> PrecisionChoice:
    """The precision to run ``model`` in, for work in batches of ``batch`` images.

    Args:
        model: a model with one image input (classifier, feature extractor, frozen prefix).
        backbone: whose preprocessing its input expects (for the calibration inputs).
        batch: images per forward pass in the work ahead (1: Predict).
        precision: "auto", "float32" or "bfloat16"; None follows a forced
            precision, then ``TL_PRECISION``.

    Raises:
        ConfigError: a precision or ``TL_PRECISION`` outside ``PRECISIONS``. (A model
            Keras cannot rebuild in bfloat16 gets float32 under ``auto``; an explicit
            "bfloat16" for it fails when its forward pass is built. A model whose one image
            does not fit ``TL_MAX_ACTIVATION_MB`` gets float32 under ``auto``, measuring nothing.)
    """
    wanted, reason = requested_precision(precision)
    if wanted != "auto":
        return PrecisionChoice(wanted, reason)
    if bfloat16_units() is False:
        return PrecisionChoice("float32", "no bfloat16 units")
    if model in _NO_COPY:
        return PrecisionChoice("float32", "no bfloat16 copy of this model")
    fits = calibration_fits(model)
    if fits < 1:  # not one image within TL_MAX_ACTIVATION_MB: no made-up passes, float32
        return PrecisionChoice("float32", TOO_LARGE)
    spec = get_backbone(backbone)
    size = tuple(int(d) for d in model.inputs[0].shape[1:3])
    key = calibration_key(spec.name, size, calibration_batch(batch, fits), architecture_digest(model))
    found = known_calibration(key)
    if found is None:
        with _CALIBRATING:  # one calibration at a time: two would time each other
            found = known_calibration(key)
            if found is None:
                try:
                    found = calibrate(model, backbone=spec, batch=batch)
                except ConfigError:  # no bfloat16 copy of this model: float32, and say so
                    _NO_COPY.add(model)
                    return PrecisionChoice("float32", "no bfloat16 copy of this model")
                keep_calibration(found)
    return PrecisionChoice(found.precision, "measured", found)


def inference_forward(model: keras.Model, *, backbone: str | BackboneSpec, batch: int = 1,
                      precision: str | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """``compiled_forward`` in the precision ``choose_precision`` picks (outputs float32).

    For a ``RemoteModel`` (an uploaded model held by a worker) each call of the function runs
    in the model's worker, where the precision is chosen (and calibrated) too; the precision
    asked for here, or forced for this session, travels with the pass.
    """
    if isinstance(model, RemoteModel):
        wanted, _ = requested_precision(precision)
        return functools.partial(model.run, "predicting", remote_forward, get_backbone(backbone).name,
                                 batch, wanted)
    choice = choose_precision(model, backbone=backbone, batch=batch, precision=precision)
    return compiled_forward(model, precision=choice.precision)


def remote_forward(model: keras.Model, backbone: str, batch: int, precision: str,
                   pixels: np.ndarray) -> np.ndarray:
    """``inference_forward(model, ...)(pixels)``: one pass as a model's worker runs it (``RemoteModel.run``)."""
    return inference_forward(model, backbone=backbone, batch=batch, precision=precision)(pixels)


# --- accuracy ----------------------------------------------------------------------------------


RUN_MIN_AGREEMENT = 0.99
"""A trained run may predict in bfloat16 only if its validation images keep this share of top-1 classes."""
RUN_MAX_ERROR = 0.05
"""...and no probability moves by more than this."""


def precision_for_run(check: PrecisionCheck | None) -> str:
    """The precision a trained run's model may predict in, from its stored ``PrecisionCheck``.

    Args:
        check: ``RunResult.precision_check``: bfloat16 against float32 on the run's
            validation images, or None when it was never made. (A dict of its fields,
            as ``result.json`` holds it, is still read, for callers not yet moved.)

    Returns:
        "auto" (bfloat16 where measured faster) when the check passed; "float32" when
        it failed or was never made (older runs, or training under ``TL_PRECISION=float32``).
    """
    if check is None:
        return "float32"
    if isinstance(check, Mapping):
        check = PrecisionCheck(**check)
    passed = check.top1_agreement >= RUN_MIN_AGREEMENT and check.max_abs_error <= RUN_MAX_ERROR
    return "auto" if passed else "float32"


__all__ = [  # the choice, and (from tlcore.inference.precision_setting, for callers that import them here) the setting
    "PRECISIONS", "RUN_MAX_ERROR", "RUN_MIN_AGREEMENT", "PrecisionChoice", "check_precision", "choose_precision",
    "describe_backbone", "force_precision", "forced_precision", "inference_forward", "precision_for_run",
    "precision_setting", "remote_forward", "requested_precision",
]
