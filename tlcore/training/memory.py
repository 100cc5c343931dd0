"""What a training job needs in memory, estimated before it is queued or started.

``check_job_memory`` refuses a job over ``TL_JOB_MEMORY_GB``; the job queue and
``tlcore.train`` both call it, so the notebook path has the same budget as the app.
"""

from __future__ import annotations

import functools

from tlcore.core.errors import BudgetError
from tlcore.core.settings import load_settings
from tlcore.models.backbone import layer_names
from tlcore.models.build import model_cost
from tlcore.models.cost import FLOAT_BYTES, GB, ModelCost
from tlcore.models.spec import TransferSpec

OPTIMIZER_COPIES = 3
"""Per trainable weight, training keeps a gradient and Adam's two moment slots."""
PROCESS_OVERHEAD_BYTES = 1_536 * 2**20
"""The training process before any model: TensorFlow, Keras and tlcore imported
(~700 MB RSS measured on Keras 3.15 / TF 2.21, 2 CPUs) plus runtime pools, the
input pipeline and the optimizer's compiled step (a MobileNetV2 at 32x32 peaks
at ~810 MB); rounded up to 1.5 GB. With it, ``estimate_job_memory`` was 1.25 to
1.9 times the measured peak RSS of real Adam steps (MobileNetV2, VGG16,
ResNet50, DenseNet121, EfficientNetB0; 32 to 160 px; batch 8 to 32)."""
GRAPH_BYTES_PER_LAYER = 3 * 2**19
"""The safety margin, 1.5 MiB per layer of the base: a deep graph costs memory that neither the
weights nor the activations show (the traced forward and gradient graphs, their kernels and
buffers), and a Ray worker holds more than a plain process (its core worker, the input pipeline).
Measured in Ray workers (2 shared CPUs, Adam, batch 32, every layer trainable, 2 epochs): DenseNet121
(427 layers) at 32 px peaked at 1.98 GiB against an estimate of 1.85 without this margin, and a
worker was once stopped past 2.2 GiB with 2.16 estimated; in a plain process DenseNet121 at 32 px
peaked at 1.57 GiB with batch 8 and 1.64 with batch 32, VGG16 (19 layers) at 0.95: about 1.5 MiB per
layer that the batch does not explain. With it, the estimate was 1.26 (DenseNet121 32 px: 2.49 GiB),
1.18 (ResNet50 32 px, augmented: 2.31 GiB, peak 1.95), 1.30 (ResNet50 48 px), 1.42 (EfficientNetB0
64 px), 1.56 (MobileNetV2 96 px) and 1.53 (the demo's source) times the worker's peak."""
HEAD_LAYERS = 8
"""Layers a transfer model adds to its base, at most (input, pooling, dropout, dense, softmax...)."""


@functools.lru_cache(maxsize=32)
def _base_layers(backbone: str) -> int:
    """How many layers the registry's ``backbone`` has without its top (counted with shapes only, once)."""
    return len(layer_names(backbone, include_top=False))



def estimate_job_memory(spec: TransferSpec, batch_size: int) -> int:
    """An upper bound of the memory a training job of ``spec`` needs, in bytes.

    weights + (gradient and Adam's two slots) per trainable weight
    + batch_size x (activations + the activations backprop keeps)
    + ``PROCESS_OVERHEAD_BYTES`` (TensorFlow and the process)
    + ``GRAPH_BYTES_PER_LAYER`` x layers (the safety margin: deep graphs, the Ray worker).

    Args:
        spec: a checked spec.
        batch_size: images per training step.

    Returns:
        Bytes.
    """
    return job_memory(model_cost(spec), _base_layers(spec.backbone), batch_size)


def job_memory(cost: ModelCost, base_layers: int, batch_size: int) -> int:
    """``estimate_job_memory`` from a model's cost and its base's layer count (after its input).

    A model already built is measured (``measure_model``) rather than built again with shapes only.
    """
    return (
        cost.params * FLOAT_BYTES
        + cost.trainable_params * FLOAT_BYTES * OPTIMIZER_COPIES
        + batch_size * (cost.activation_bytes + cost.trainable_activation_bytes)
        + PROCESS_OVERHEAD_BYTES
        + GRAPH_BYTES_PER_LAYER * (base_layers + HEAD_LAYERS)
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
            f"(TL_JOB_MEMORY_GB). Received: about {needed / GB:,.1f} GB for {spec.describe()}, "
            f"batch size {batch_size}; try a smaller batch, a smaller input or freezing more layers"
        )
    return needed
