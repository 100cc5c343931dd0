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

import dataclasses
import functools
import hashlib
import json
import os
import platform
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tlcore.core.atomic import atomic_write_text
from tlcore.core.errors import BudgetError, ConfigError
from tlcore.core.settings import load_settings
from tlcore.inference.forward import compiled_forward, forget_forward
from tlcore.models.cost import MB, activation_bytes, images_per_pass
from tlcore.models.zoo import BackboneSpec, get_backbone

_LOCK = threading.Lock()  # guards the verdicts kept in memory and their file


MIN_SPEEDUP = 1.2
"""``auto`` picks bfloat16 only when measured at least this many times faster than float32: a smaller
gain is within what a busy machine's timings wander (DenseNet121 measured 0.66x-1.37x in five runs),
and not worth the copy's memory (half the model's weights again)."""


MIN_COSINE = 0.995
"""``auto`` picks bfloat16 only when every calibration output is at least this similar to float32's."""


CALIBRATION_BATCH = 8
"""Images per forward pass when calibrating for batch work (feature extraction, the feature cache)."""


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


BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")
"""CPU flags (Linux ``/proc/cpuinfo``) of units that compute in bfloat16."""


_KNOWN: dict[tuple[str, str], Calibration] = {}  # (store file, key) -> verdict, read or measured


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str] | None]:
    """(CPU model name, flags), flags None where the system does not list them."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), None
    model, flags = platform.machine(), set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            model = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
    return model, frozenset(flags)


def bfloat16_units() -> bool | None:
    """Whether this CPU reports bfloat16 units (True/False), or None where it cannot tell."""
    _, flags = _cpuinfo()
    return None if flags is None else any(flag in flags for flag in BFLOAT16_FLAGS)


def machine() -> dict:
    """What decides the speed of a precision here: CPU model, its bfloat16 flags, cores, versions."""
    model, flags = _cpuinfo()
    return {
        "cpu": model,
        "bfloat16_flags": sorted(f for f in (flags or ()) if "bf16" in f or f.startswith("amx")),
        "cores": os.cpu_count(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def machine_id() -> str:
    """A short digest of ``machine()``: verdicts are kept per machine."""
    return hashlib.sha256(json.dumps(machine(), sort_keys=True).encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Calibration:
    """One measurement of float32 against bfloat16 for one model on this machine.

    Attributes:
        backbone: the registry name.
        input_size: (height, width) of the model input.
        batch: images per timed forward pass (1, or ``CALIBRATION_BATCH`` for batch work, or
            fewer where only fewer fit ``TL_MAX_ACTIVATION_MB``).
        architecture: a digest of the model's layer types and output shape.
        float32_ms: the fastest float32 forward pass, in milliseconds.
        bfloat16_ms: the fastest bfloat16 forward pass, in milliseconds.
        cosine: the lowest cosine similarity between the two precisions' outputs.
        measured_at: when (seconds since the epoch).
        float32_cpu_ms: the least CPU time (this process, all threads) of a float32 pass.
        bfloat16_cpu_ms: the same for bfloat16. Wall time alone misleads on a busy machine
            (EfficientNetB0 once measured 1.49x faster by the clock at a load of 10 on 2
            cores, 0.92-0.96x by CPU time); both must show the gain.
    """

    backbone: str
    input_size: tuple[int, int]
    batch: int
    architecture: str
    float32_ms: float
    bfloat16_ms: float
    cosine: float
    measured_at: float
    float32_cpu_ms: float | None = None
    bfloat16_cpu_ms: float | None = None

    @property
    def speedup(self) -> float:
        """How many times faster bfloat16 was by the clock (below 1: slower)."""
        return self.float32_ms / self.bfloat16_ms

    @property
    def cpu_speedup(self) -> float | None:
        """How many times less CPU time bfloat16 took (None where not measured)."""
        if self.float32_cpu_ms is None or not self.bfloat16_cpu_ms:
            return None
        return self.float32_cpu_ms / self.bfloat16_cpu_ms

    @property
    def gain(self) -> float:
        """The smaller of the two speed-ups (clock and CPU time): what the verdict goes by."""
        return self.speedup if self.cpu_speedup is None else min(self.speedup, self.cpu_speedup)

    @property
    def precision(self) -> str:
        """The verdict: bfloat16 only when ``MIN_SPEEDUP`` faster by the clock and by CPU time, and in agreement."""
        return "bfloat16" if self.gain >= MIN_SPEEDUP and self.cosine >= MIN_COSINE else "float32"

    @property
    def key(self) -> str:
        return calibration_key(self.backbone, self.input_size, self.batch, self.architecture)


def calibration_key(backbone: str, input_size: tuple[int, int], batch: int, architecture: str) -> str:
    return f"{backbone}|{input_size[0]}x{input_size[1]}|batch {batch}|{architecture}"


def architecture_digest(model: keras.Model) -> str:
    """What the model computes, without weights or names: its layer types and output shape."""
    def types(m: keras.Model) -> list[str]:
        found = []
        for layer in m.layers:
            found.extend(types(layer) if isinstance(layer, keras.Model) else [type(layer).__name__])
        return found

    described = [types(model), [int(d) for d in model.output.shape[1:]]]
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
    height, width, channels = (int(d) for d in model.input.shape[1:])
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
        backbone=spec.name, input_size=tuple(int(d) for d in model.input.shape[1:3]), batch=batch,
        architecture=architecture_digest(model), float32_ms=round(best["float32"], 3),
        bfloat16_ms=round(best["bfloat16"], 3), cosine=round(cosine, 6), measured_at=time.time(),
        float32_cpu_ms=round(cpu["float32"], 3), bfloat16_cpu_ms=round(cpu["bfloat16"], 3),
    )
    if calibration.precision != "bfloat16":
        forget_forward(model, "bfloat16")
    return calibration


def store_path() -> Path:
    """This machine's verdicts: ``<TL_DATA_DIR>/precision/<machine_id>.json``."""
    return load_settings().data_dir / "precision" / f"{machine_id()}.json"


def _read_store(path: Path) -> dict[str, Calibration]:
    try:
        rows = json.loads(path.read_text())["calibrations"]
        return {key: Calibration(**{**row, "input_size": tuple(row["input_size"])}) for key, row in rows.items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # none yet, or unreadable: measure again


def known_calibration(key: str) -> Calibration | None:
    """The verdict kept for ``key`` on this machine, if any (memory first, then the file)."""
    path = store_path()
    with _LOCK:
        found = _KNOWN.get((str(path), key))
        if found is None:
            found = _read_store(path).get(key)
            if found is not None:
                _KNOWN[(str(path), key)] = found
    return found


def keep_calibration(calibration: Calibration) -> None:
    """Add ``calibration`` to this machine's file (and memory), keeping what else is there."""
    path = store_path()
    with _LOCK:
        rows = _read_store(path)
        rows[calibration.key] = calibration
        atomic_write_text(path, json.dumps({
            "machine": machine(),
            "calibrations": {key: dataclasses.asdict(row) for key, row in sorted(rows.items())},
        }, indent=2))
        _KNOWN[(str(path), calibration.key)] = calibration


def calibrations(backbone: str | None = None) -> list[Calibration]:
    """Every verdict kept on this machine (for ``backbone`` only when given), oldest first."""
    rows = _read_store(store_path()).values()
    if backbone is not None:
        rows = [row for row in rows if row.backbone == get_backbone(backbone).name]
    return sorted(rows, key=lambda row: row.measured_at)


def forget_calibrations() -> None:
    """Drop this machine's verdicts (memory and file): the next ``auto`` choice measures again."""
    path = store_path()
    with _LOCK:
        for known in [k for k in _KNOWN if k[0] == str(path)]:
            del _KNOWN[known]
        path.unlink(missing_ok=True)


@dataclasses.dataclass(frozen=True)
class PrecisionCheck:
    """How far a model's bfloat16 outputs are from its float32 ones, over some inputs.

    Attributes:
        images: how many inputs were compared.
        top1_agreement: the share of inputs whose largest output is the same
            (for a classifier: the same top-1 class).
        max_abs_error: the largest absolute difference of any output (for a
            classifier: of any probability).
        min_cosine: the lowest cosine similarity between an input's two output vectors.
        mean_cosine: their mean.
    """

    images: int
    top1_agreement: float
    max_abs_error: float
    min_cosine: float
    mean_cosine: float


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
