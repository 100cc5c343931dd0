"""What Keras will read from an HDF5 weights file, checked from its metadata before Keras opens it.

Keras reads a weights file in one of two layouts, chosen by the file's name:

- the legacy ``.h5`` layout (Keras's ImageNet files; ``model.load_weights`` on a
  ``.h5`` path, ``keras.src.legacy.saving.legacy_h5_format``): the groups the
  ``layer_names`` attribute lists (on the root, or on ``model_weights`` when the
  root has none), in each group the datasets its ``weight_names`` attribute
  lists, resolved relative to the group, then ``top_level_model_weights``.
  Nothing else is read: not ``optimizer_weights`` unless it is listed.
- the Keras 3 layout (``.weights.h5``, and a ``.keras`` file's
  ``model.weights.h5``; ``keras.src.saving.saving_lib.H5IOStore``): the
  datasets of the ``vars`` groups at paths made from the model's attributes
  (``layers/<name>/vars/0``, ``optimizer/vars/0`` when the model has an
  optimizer). Every dataset in the file is checked, except under
  ``optimizer`` for a model without an optimizer: Keras never reads that path.

Every dataset Keras reads, counted once per read, must be a hard link inside
the file, hold numbers, declare one of the model's weight shapes, and all the
reads together may declare no more numbers than the model holds. No dataset's
data is read, and attributes are sized before they are read.
"""

from __future__ import annotations

import math
import os
from typing import IO

import h5py
import keras

MAX_NAMES = 10_000
"""Names one ``layer_names`` or ``weight_names`` attribute (with its numbered parts) may list."""

MAX_LISTED = 100_000
"""Names all the ``layer_names`` and ``weight_names`` attributes Keras reads may list together."""

MAX_NAME_CHARS = 1_000
"""Characters one listed name may have."""

KERAS3_SUFFIX = ".weights.h5"
"""A path ending so is read by Keras as the Keras 3 layout; any other ``.h5`` as the legacy one."""


class _Refused(Exception):
    """What Keras would read that cannot fit the model, as a sentence."""


class _Reads:
    """The model's weight shapes and the numbers read so far, counted once per read."""

    def __init__(self, model: keras.Model, variables: list) -> None:
        self.model = model.name
        self.shapes = {tuple(v.shape) for v in variables}
        self.capacity = sum(math.prod(v.shape) for v in variables)
        self.largest = ", ".join(str(s) for s in sorted(self.shapes, key=math.prod, reverse=True)[:3])
        self.declared = 0
        self.listed = 0

    def dataset(self, name: str, item: h5py.Dataset) -> None:
        """Check one read of ``item`` (named ``name``, as Keras reaches it through hard links)."""
        if item.is_virtual or item.external:
            raise _Refused(f"dataset {name!r} keeps its data outside the file")
        if item.dtype.kind not in "fiu" or item.dtype.itemsize > 8:
            raise _Refused(f"dataset {name!r} declares dtype {item.dtype}, and weights are numbers")
        if item.shape not in self.shapes:
            raise _Refused(f"dataset {name!r} declares shape {item.shape}, and {self.model} has no "
                           f"weight of that shape (its largest: {self.largest})")
        self.declared += math.prod(item.shape)
        if self.declared > self.capacity:
            raise _Refused(f"its datasets declare more than the {self.capacity:,} numbers {self.model} "
                           f"holds (at {name!r}; a dataset counts each time Keras reads it)")


def _single(name: str, item: h5py.Group | h5py.Dataset) -> None:
    """Refuse an object with more than one name: Keras would read it under each."""
    links = h5py.h5o.get_info(item.id).rc
    if links > 1:
        raise _Refused(f"{name!r} is one HDF5 object under {links} names, and Keras would read it "
                       f"under each (a weights file names each group and dataset once)")


def _link(parent: h5py.Group, part: str, name: str) -> h5py.Group | h5py.Dataset:
    """``parent[part]`` through a hard link only (``name``: the whole path, for messages)."""
    kind = parent.get(part, getclass=True, getlink=True)
    if kind is h5py.SoftLink:
        raise _Refused(f"{name!r} is a soft link, and Keras reads hard links only")
    if kind is h5py.ExternalLink:
        raise _Refused(f"{name!r} links to another file ({parent.get(part, getlink=True).filename!r})")
    item = parent[part]
    _single(name, item)
    return item


def _path(group: h5py.Group, name: str) -> str:
    return f"{group.name.strip('/')}/{name}".strip("/")


def _resolve(group: h5py.Group, name: str, *, what: str, owner: str) -> h5py.Group | h5py.Dataset:
    """``name`` resolved from ``group`` part by part, as Keras's ``safe_get_h5_group`` does."""
    current = group
    parts = name.split("/")
    for index, part in enumerate(parts):
        if not part:
            raise _Refused(f"{owner} lists {what} {name!r}, which Keras cannot follow (an empty "
                           f"part: names are relative, without a leading, double or trailing '/')")
        if not isinstance(current, h5py.Group) or part not in current:  # never `in` a dataset: it iterates
            place = "dataset" if what == "weight" else "group"
            raise _Refused(f"{owner} lists {what} {name!r}, and the file has no {place} there")
        try:
            current = _link(current, part, _path(group, "/".join(parts[:index + 1])))
        except (KeyError, ValueError, RuntimeError) as exc:
            raise _Refused(f"{owner} lists {what} {name!r}, which Keras cannot follow ({exc})") from exc
    return current


def _names(group: h5py.Group, attribute: str, reads: _Reads) -> list[str]:
    """The names Keras's ``load_attributes_from_hdf5_group`` reads, sized before they are read.

    Keras reads the attribute, or when it is missing its numbered parts
    (``layer_names0``, ``layer_names1``, ...) until one is missing.
    """
    where = group.name
    if attribute in group.attrs:
        parts = [attribute]
    else:
        parts = []
        while f"{attribute}{len(parts)}" in group.attrs:
            if len(parts) == MAX_NAMES:
                raise _Refused(f"attribute {attribute!r} of {where!r} may come in at most {MAX_NAMES:,} "
                               f"numbered parts. Received: more")
            parts.append(f"{attribute}{len(parts)}")
    names: list[str] = []
    for part in parts:
        attr = group.attrs.get_id(part)
        rule = f"attribute {part!r} of {where!r} must be a list of names (strings)"
        if attr.shape == (0,):  # Keras writes a layer without weights as an empty list of float64
            continue
        text = h5py.check_string_dtype(attr.dtype)
        if text is None:
            raise _Refused(f"{rule}. Received: {attr.dtype}")
        if text.length is not None and text.length > 4 * MAX_NAME_CHARS:  # fixed length: sized unread
            raise _Refused(f"{rule}, at most {MAX_NAME_CHARS:,} characters each. "
                           f"Received: {text.length:,} bytes each")
        if len(attr.shape) != 1:
            received = f"shape {attr.shape}" if attr.shape else "a single value"
            raise _Refused(f"{rule}. Received: {received}")
        if len(names) + attr.shape[0] > MAX_NAMES:
            raise _Refused(f"attribute {part!r} of {where!r} may list at most {MAX_NAMES:,} names. "
                           f"Received: {len(names) + attr.shape[0]:,}")
        reads.listed += attr.shape[0]
        if reads.listed > MAX_LISTED:
            raise _Refused(f"the layer_names and weight_names Keras reads may list at most {MAX_LISTED:,} "
                           f"names in all. Received: more, by attribute {part!r} of {where!r}")
        try:
            values = group.attrs[part]
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # h5py: an attribute it cannot read
            raise _Refused(f"{rule}. Received: an attribute that cannot be read ({str(exc)[:200]})") from exc
        for value in values:
            try:
                value = value.decode("utf8") if hasattr(value, "decode") else value
            except UnicodeDecodeError:
                value = None
            if not isinstance(value, str) or len(value) > MAX_NAME_CHARS:
                raise _Refused(f"attribute {part!r} of {where!r} must list names of UTF-8 text, at most "
                               f"{MAX_NAME_CHARS:,} characters each. Received: {str(value)[:80]!r}")
            names.append(value)
    return names


def _legacy(handle: h5py.File, reads: _Reads) -> None:
    """Walk what ``legacy_h5_format.load_weights_from_hdf5_group`` reads, in its order."""
    root: h5py.Group = handle
    if "layer_names" not in handle.attrs and "model_weights" in handle:
        root = _resolve(handle, "model_weights", what="group", owner="the file")
        if not isinstance(root, h5py.Group):
            raise _Refused("'model_weights' must be a group of layers. Received: a dataset")
    owner = f"{root.name!r}" if root.name != "/" else "the file"
    layers: list[tuple[h5py.Group, list[str]]] = []
    for name in _names(root, "layer_names", reads):
        group = _resolve(root, name, what="layer", owner=owner)
        if not isinstance(group, h5py.Group):
            raise _Refused(f"{owner} lists layer {name!r}, and it is a dataset, not a group of weights")
        layers.append((group, _names(group, "weight_names", reads)))
    if "top_level_model_weights" in root:
        group = _resolve(root, "top_level_model_weights", what="layer", owner=owner)
        if isinstance(group, h5py.Group):
            layers.append((group, _names(group, "weight_names", reads)))
    for group, weight_names in layers:
        layer = repr(group.name.strip("/"))
        for weight in weight_names:
            item = _resolve(group, weight, what="weight", owner=layer)
            if not isinstance(item, h5py.Dataset):
                raise _Refused(f"{layer} lists weight {weight!r}, and the file has no dataset there "
                               f"(a group)")
            reads.dataset(_path(group, weight), item)


def _keras3(handle: h5py.File, reads: _Reads, *, skip_optimizer: bool) -> None:
    """Walk every dataset Keras 3's ``H5IOStore`` may read (all but an unread ``optimizer``)."""
    problem: str | None = None

    def visit(name: str, link: h5py.HardLink | h5py.SoftLink | h5py.ExternalLink) -> bool | None:
        nonlocal problem
        if skip_optimizer and name.split("/")[0] == "optimizer":
            return None
        try:
            parent, _, part = name.rpartition("/")
            item = _link(handle[parent] if parent else handle, part, name)
            if isinstance(item, h5py.Dataset):
                reads.dataset(name, item)
        except _Refused as exc:
            problem = str(exc)
        except (KeyError, ValueError, RuntimeError) as exc:  # h5py: a link it cannot follow
            problem = f"{name!r} cannot be followed ({str(exc)[:200]})"
        return True if problem else None

    handle.visititems_links(visit)
    if problem:
        raise _Refused(problem)


def weights_file_problem(
    source: str | os.PathLike | IO[bytes],
    model: keras.Model,
    *,
    legacy: bool | None = None,
) -> str | None:
    """What Keras would read from an HDF5 weights file that cannot fit ``model``.

    Read from the file's metadata only, following the file as Keras will for
    ``model.load_weights`` (see the module's docstring): every dataset read
    must be an in-file hard link of numbers, declare one of the model's weight
    shapes, and the reads together may declare no more numbers than the model
    holds. ``layer_names`` and ``weight_names`` must be lists of at most
    ``MAX_NAMES`` names, each naming a group or dataset that is there.

    Args:
        source: a path or a seekable binary file object.
        model: the model the weights are for (real or ``shapes_only``).
        legacy: the layout; None: as Keras chooses it, by the name (a path not
            ending in ``.weights.h5`` is legacy; a file object, the member of a
            ``.keras`` file, is Keras 3).

    Returns:
        None if everything Keras reads fits; else a sentence naming the first
        attribute, link or dataset that does not, and what the model expects.
    """
    if legacy is None:
        legacy = isinstance(source, (str, os.PathLike)) and not os.fspath(source).endswith(KERAS3_SUFFIX)
    variables = list(model.variables)
    optimizer = getattr(model, "optimizer", None)
    if not legacy and optimizer is not None:  # Keras 3 reads its variables at "optimizer/vars"
        variables += list(optimizer.variables)
    reads = _Reads(model, variables)
    try:
        with h5py.File(source, "r") as handle:
            if legacy:
                _legacy(handle, reads)
            else:
                _keras3(handle, reads, skip_optimizer=optimizer is None)
    except _Refused as exc:
        return str(exc)
    return None
