"""What an HDF5 weights file declares, read from its metadata before Keras opens it."""

from __future__ import annotations

import math
from typing import IO

import h5py
import keras

_SKIPPED_GROUPS = ("optimizer", "optimizer_weights")
"""Top-level groups of a weights file that loading an uncompiled model never reads."""



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
