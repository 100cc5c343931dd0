"""What a training job needs in memory, estimated before it is queued or started.

``check_job_memory`` refuses a job over ``TL_JOB_MEMORY_GB``; the job queue and
``tlcore.train`` both call it, so the notebook path has the same budget as the app.
"""

from __future__ import annotations

from tlcore.core.errors import BudgetError
from tlcore.core.settings import load_settings
from tlcore.models.build import model_cost
from tlcore.models.cost import FLOAT_BYTES, GB
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
            f"(TL_JOB_MEMORY_GB). Received: about {needed / GB:,.1f} GB for {spec.describe()}, "
            f"batch size {batch_size}; try a smaller batch, a smaller input or freezing more layers"
        )
    return needed
