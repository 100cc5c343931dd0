"""Limits checked before allocation: model size, activations, weights files and job memory.

Every size that comes from outside (a Build spec, an uploaded ``.keras`` file, a
weights file, a training job) is measured here *before* Keras allocates it:

- ``shapes_only()`` builds a Keras model whose variables have shapes but no
  memory (Keras's ``StatelessScope`` with deferred initialization), so a spec
  or a ``config.json`` declaring ten billion parameters is counted, not built.
- ``weights_file_problem`` reads an HDF5 weights file's declared dataset
  shapes from its metadata, without reading any data.

Limits are ``TL_*`` settings (``tlcore.settings``), read at call time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import random
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING

import h5py
import keras
from keras.src.backend.common import global_state
from keras.src.backend.common.stateless_scope import StatelessScope

from tlcore.errors import BudgetError, TLError
from tlcore.settings import load_settings

if TYPE_CHECKING:
    from tlcore.build import TransferSpec

FLOAT_BYTES = 4
"""Bytes of one float32 weight or activation."""
OPTIMIZER_COPIES = 3
"""Per trainable weight, training keeps a gradient and Adam's two moment slots."""
PROCESS_OVERHEAD_BYTES = 1_536 * 2**20
"""The training process before any model: TensorFlow, Keras and tlcore imported
(~700 MB RSS measured on Keras 3.15 / TF 2.21, 2 CPUs) plus runtime pools, the
input pipeline and the optimizer's compiled step (a MobileNetV2 at 32x32 peaks
at ~810 MB); rounded up to 1.5 GB. With it, ``estimate_job_memory`` was 1.25 to
1.9 times the measured peak RSS of real Adam steps (MobileNetV2, VGG16,
ResNet50, DenseNet121, EfficientNetB0; 32 to 160 px; batch 8 to 32)."""
MB = 2**20
GB = 2**30
_SKIPPED_GROUPS = ("optimizer", "optimizer_weights")
"""Top-level groups of a weights file that loading an uncompiled model never reads."""


@contextlib.contextmanager
def shapes_only() -> Iterator[None]:
    """Inside, Keras variables are created with shapes but without memory.

    Keras's global state is thread-local, so other threads building real models
    are not affected. On the way out (exception or not) the deferred variables
    made inside are forgotten, so nothing initializes them later, and Python's
    ``random`` state is put back (Keras draws initializer seeds from it), so a
    check never changes the weights of a model built afterwards with a seed.

    A model built inside must only be inspected (shapes, counts), never called
    on data or given weights.
    """
    pending = list(global_state.get_global_attribute("uninitialized_variables") or [])
    seeds = random.getstate()
    try:
        with StatelessScope(initialize_variables=False):
            yield
    finally:
        global_state.set_global_attribute("uninitialized_variables", pending)
        random.setstate(seeds)


@dataclasses.dataclass(frozen=True)
class ModelCost:
    """What a model needs in memory, known before it is allocated.

    Attributes:
        params: all weights (trainable and not), as ``model.count_params()``.
        trainable_params: weights that training updates.
        activation_bytes: float32 outputs of every layer for ONE image.
        trainable_activation_bytes: for ONE image, the outputs backprop must keep:
            those of every layer from the first trainable layer on (and its input).
    """

    params: int
    trainable_params: int
    activation_bytes: int
    trainable_activation_bytes: int


def _size(tensors: Iterable[keras.KerasTensor]) -> int:
    return sum(math.prod(d or 1 for d in t.shape[1:]) for t in tensors) * FLOAT_BYTES


def _walk(model: keras.Model, trainable: bool, reached: bool) -> tuple[int, int, bool]:
    """(activation bytes, backprop bytes, reached a trainable layer) for one call of ``model``."""
    total = kept = 0
    for layer in model.layers:
        layer_trainable = trainable and layer.trainable
        calls = max(1, len(layer._inbound_nodes))
        if isinstance(layer, keras.Model):
            inner, inner_kept, reached = _walk(layer, layer_trainable, reached)
            total, kept = total + calls * inner, kept + calls * inner_kept
            continue
        outputs = sum(_size(node.outputs) for node in layer._inbound_nodes)
        if not reached and layer_trainable and layer.trainable_weights:
            reached = True
            kept += sum(_size(node.input_tensors) for node in layer._inbound_nodes)
        total += outputs
        kept += outputs if reached else 0
    return total, kept, reached


def measure_model(model: keras.Model) -> ModelCost:
    """Parameters and activation bytes of a built model (real or ``shapes_only``).

    Args:
        model: a functional or sequential Keras model; nested models are walked.

    Returns:
        The model's cost; activations count every layer call's outputs.
    """
    total, kept, _ = _walk(model, True, False)
    return ModelCost(
        params=sum(math.prod(w.shape) for w in model.weights),
        trainable_params=sum(math.prod(w.shape) for w in model.trainable_weights),
        activation_bytes=total,
        trainable_activation_bytes=kept,
    )


def model_cost(spec: TransferSpec) -> ModelCost:
    """The cost of the model ``spec`` builds, counted without allocating it.

    The spec's architecture (registry base without weights, its frozen layers
    and head) is built inside ``shapes_only``; a develop-a-model base has the
    same architecture as the registry's. Call ``check_transfer_spec`` first:
    this does not validate ``spec``.

    Args:
        spec: a checked spec.

    Returns:
        Its parameters and activation bytes (remembered for the last 64 specs).
    """
    return _spec_cost(dataclasses.replace(spec, input_shape=tuple(spec.input_shape)))


@functools.lru_cache(maxsize=64)
def _spec_cost(spec: TransferSpec) -> ModelCost:
    from tlcore.build import transfer_architecture  # build.py imports this module

    with shapes_only():
        return measure_model(transfer_architecture(spec))


def _described(spec: TransferSpec) -> str:
    head = f"{spec.hidden_units:,} hidden units" if spec.hidden_units else "no hidden layer"
    pooling = {"avg": "global average pooling", "max": "global max pooling"}.get(spec.pooling, spec.pooling)
    blocks = spec.conv_blocks
    convs = (f"{blocks} new convolutional block{'s' if blocks > 1 else ''} of {spec.conv_filters:,} "
             f"{spec.conv_kernel}x{spec.conv_kernel} filters, " if blocks else "")
    return f"{spec.backbone} at {spec.input_shape[0]}x{spec.input_shape[1]}, {convs}{pooling} head with {head}"


def check_model_cost(
    cost: ModelCost,
    *,
    described: str,
    params_advice: str,
    activation_advice: str,
    error: type[TLError] = BudgetError,
) -> None:
    """Refuse a model over ``TL_MAX_MODEL_PARAMS`` or ``TL_MAX_ACTIVATION_MB``.

    Args:
        cost: the model's cost (``measure_model`` inside ``shapes_only``).
        described: what the model is, for the message.
        params_advice: what to change when there are too many parameters.
        activation_advice: what to change when activations are too large.
        error: the error class to raise (the caller's own, e.g. ``ModelFileError``).

    Raises:
        error: naming the limit, its setting and the model's number.
    """
    settings = load_settings()
    if cost.params > settings.max_model_params:
        raise error(
            f"A model may have at most {settings.max_model_params:,} parameters on this server "
            f"(TL_MAX_MODEL_PARAMS). Received: {cost.params:,} parameters ({described}); {params_advice}"
        )
    if cost.activation_bytes > settings.max_activation_mb * MB:
        raise error(
            f"A model's activations for one image may take at most {settings.max_activation_mb:,} MB "
            f"on this server (TL_MAX_ACTIVATION_MB). Received: {cost.activation_bytes / MB:,.0f} MB "
            f"({described}); {activation_advice}"
        )


def check_spec_budget(spec: TransferSpec) -> ModelCost:
    """Refuse a spec whose model is over a budget, before anything is allocated.

    Returns:
        The spec's cost.

    Raises:
        BudgetError: too many parameters (TL_MAX_MODEL_PARAMS) or activations
            (TL_MAX_ACTIVATION_MB), with what to change.
    """
    cost = model_cost(spec)
    height, width, _ = spec.input_shape
    # activations grow with the area: the side that fits, rounded down to a multiple of 32
    scale = math.sqrt(load_settings().max_activation_mb * MB / max(cost.activation_bytes, 1))
    fits = max(32, int(min(height, width) * scale) // 32 * 32)
    check_model_cost(
        cost,
        described=_described(spec),
        params_advice=("use global average pooling, a smaller input or fewer hidden units"
                       if spec.pooling == "flatten" else
                       "use fewer or smaller new convolutions, fewer hidden units or a smaller backbone"
                       if spec.conv_blocks else "use fewer hidden units or a smaller backbone"),
        activation_advice=f"use a smaller input (about {fits}x{fits} fits)",
    )
    return cost


def estimate_job_memory(spec: TransferSpec, batch_size: int) -> int:
    """An upper bound of the memory a training job of ``spec`` needs, in bytes.

    weights + (gradient and Adam's two slots) per trainable weight
    + batch_size x (activations + the activations backprop keeps)
    + ``PROCESS_OVERHEAD_BYTES`` (TensorFlow and the process).

    Args:
        spec: a checked spec.
        batch_size: images per training step.

    Returns:
        Bytes.
    """
    cost = model_cost(spec)
    return (
        cost.params * FLOAT_BYTES
        + cost.trainable_params * FLOAT_BYTES * OPTIMIZER_COPIES
        + batch_size * (cost.activation_bytes + cost.trainable_activation_bytes)
        + PROCESS_OVERHEAD_BYTES
    )


def check_job_memory(spec: TransferSpec, batch_size: int) -> int:
    """Refuse a training job whose estimated memory is over ``TL_JOB_MEMORY_GB``.

    Returns:
        The estimate in bytes.

    Raises:
        BudgetError: naming the estimate, the limit and what to try.
    """
    if batch_size < 1:
        raise BudgetError(f"A batch must hold at least 1 image. Received: batch_size={batch_size}")
    limit = load_settings().job_memory_gb
    needed = estimate_job_memory(spec, batch_size)
    if needed > limit * GB:
        raise BudgetError(
            f"A training job may need at most {limit:g} GB of memory on this server "
            f"(TL_JOB_MEMORY_GB). Received: about {needed / GB:,.1f} GB for {_described(spec)}, "
            f"batch size {batch_size}; try a smaller batch, a smaller input or freezing more layers"
        )
    return needed


def weights_file_problem(source: str | IO[bytes], model: keras.Model) -> str | None:
    """What in an HDF5 weights file cannot fit ``model``, read from metadata only.

    Both layouts are walked: Keras 3 ``.weights.h5`` (``layers/.../vars/0``) and
    the legacy Keras-applications ``.h5`` (one group per layer). Every dataset's
    declared shape must be the shape of one of the model's variables, and all
    of them together may not hold more numbers than the model has. The
    optimizer's groups are skipped: loading into an uncompiled model never reads
    them. No dataset's data is read.

    Args:
        source: a path or a seekable binary file object.
        model: the model the weights are for (real or ``shapes_only``).

    Returns:
        None if every declared shape fits; else a sentence naming the first
        dataset that does not, its declared shape and what the model expects.
    """
    shapes = {tuple(v.shape) for v in model.variables}
    capacity = sum(math.prod(v.shape) for v in model.variables)
    largest = ", ".join(str(s) for s in sorted(shapes, key=math.prod, reverse=True)[:3])
    declared = 0
    problem: str | None = None

    def visit(name: str, link: h5py.HardLink | h5py.SoftLink | h5py.ExternalLink) -> bool | None:
        nonlocal declared, problem
        if name.split("/")[0] in _SKIPPED_GROUPS:
            return None
        if isinstance(link, h5py.ExternalLink):
            problem = f"{name!r} links to another file ({link.filename!r})"
            return True
        item = handle.get(name)
        if not isinstance(item, h5py.Dataset) or not isinstance(link, h5py.HardLink):
            return None
        if item.is_virtual or item.external:
            problem = f"dataset {name!r} keeps its data outside the file"
        elif item.dtype.kind not in "fiu" or item.dtype.itemsize > 8:
            problem = f"dataset {name!r} declares dtype {item.dtype}, and weights are numbers"
        elif item.shape not in shapes:
            problem = (f"dataset {name!r} declares shape {item.shape}, and {model.name} has no "
                       f"weight of that shape (its largest: {largest})")
        else:
            declared += math.prod(item.shape)
            if declared > capacity:
                problem = (f"its datasets declare more than the {capacity:,} numbers "
                           f"{model.name} holds (at {name!r})")
        return True if problem else None

    with h5py.File(source, "r") as handle:
        handle.visititems_links(visit)
    return problem
