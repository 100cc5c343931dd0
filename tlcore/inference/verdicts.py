"""The precision verdicts kept per machine: what this CPU has, which machine it is, and the measurements.

Plain Python (no Keras, no TensorFlow): the sidebar says on every page what inference runs in here
(``tlcore.inference.precision_setting.describe_backbone``) from these, and must not load TensorFlow to
say it (issue 18: a first answer within 5 s). The measuring is ``tlcore.inference.calibration``'s.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import threading
from pathlib import Path

from tlcore.core.atomic import atomic_write_text
from tlcore.core.settings import load_settings
from tlcore.models.zoo import get_backbone


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


_LOCK = threading.Lock()  # guards the verdicts kept in memory and their file


MIN_SPEEDUP = 1.2
"""``auto`` picks bfloat16 only when measured at least this many times faster than float32: a smaller
gain is within what a busy machine's timings wander (DenseNet121 measured 0.66x-1.37x in five runs),
and not worth the copy's memory (half the model's weights again)."""


MIN_COSINE = 0.995
"""``auto`` picks bfloat16 only when every calibration output is at least this similar to float32's."""


CALIBRATION_BATCH = 8
"""Images per forward pass when calibrating for batch work (feature extraction, the feature cache)."""


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


@functools.cache
def _installed_version(package: str) -> str | None:
    """The installed version of the distribution that provides ``package`` (tensorflow may come as
    tensorflow-cpu), read from its metadata: asking needs no import of TensorFlow (issue 18)."""
    for distribution in importlib.metadata.packages_distributions().get(package, [package]):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def machine() -> dict:
    """What decides the speed of a precision here: CPU model, its bfloat16 flags, cores, versions."""
    model, flags = _cpuinfo()
    return {
        "cpu": model,
        "bfloat16_flags": sorted(f for f in (flags or ()) if "bf16" in f or f.startswith("amx")),
        "cores": os.cpu_count(),
        "tensorflow": _installed_version("tensorflow"),
        "keras": _installed_version("keras"),
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
