"""The Train page's dataset picker and its cached, content-keyed dataset loaders.

Every upload is keyed by its sha256 (``tlcore.upload_key``): a rerun, another
session or a re-upload of the same bytes gets the stored dataset back without
decoding anything, and a refusal is remembered too, so a refused upload is not
decoded again on every rerun. The rules (what a server folder may be, the
budgets) live in ``tlcore``; this module only wires them to widgets.
"""

from __future__ import annotations

import dataclasses

import streamlit as st

import tlcore
from ui import access
from ui.samples import IMAGE_TYPES

SAMPLE, ZIP, GROUPS, FOLDER = "Built-in sample (shapes)", "Zip of class folders", "Images per class", "Folder on the server"
TRAIN_CLASSES = "train_classes"
"""Session-state key: how many classes the dataset last chosen on Train has (Build's head follows it)."""
CAMERA_OFF = "off"
SHOTS, SHOT_COUNT = "camera_shots", "camera_shot_count"
"""Session-state keys: class name -> the camera photos (JPEG bytes) taken for it; photos taken so far."""
MAX_SHOTS = 60
"""Camera photos kept per class in one session (each is a JPEG of some 50-150 KB)."""
FOLDER_OFF = ("**Folder on the server is off on this server.** Visitors may train only from folders an "
              "administrator lists in `TL_DATASET_ROOTS` (separated by `:`), and none is listed. "
              "Upload a .zip of class folders instead.")


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A stored dataset, or why the source was refused (remembered like a dataset)."""

    dataset: tlcore.ImageDataset | None
    error: str | None = None


def _outcome(load, *args) -> Outcome:
    try:
        return Outcome(load(*args))
    except tlcore.TLError as exc:
        return Outcome(None, str(exc))


# Each loader's first argument is the data folder (TL_DATA_DIR) its datasets are stored in: it keys the cache.

@st.cache_resource(max_entries=4, show_spinner="Drawing the sample dataset...")
def _sample(data_dir: str) -> tlcore.ImageDataset:
    return tlcore.sample_dataset(per_class=64, size=64)


@st.cache_resource(max_entries=16, show_spinner="Checking and storing the images...")
def _upload(data_dir: str, key: str, name: str | None, _source) -> Outcome:
    return _outcome(lambda source: tlcore.load_dataset(source, name=name), _source)


@st.cache_resource(max_entries=8, ttl=600, show_spinner="Checking and storing the folder's images...")
def _folder(data_dir: str, resolved: str) -> Outcome:
    """A server folder, re-read after 10 minutes (its files may change; unchanged content is not stored twice)."""
    return _outcome(tlcore.load_dataset, resolved)


def data_folder() -> str:
    """The server's data folder (TL_DATA_DIR), as the key of the caches of what is stored in it."""
    return str(tlcore.load_settings().data_dir)


def _still_stored(dataset: tlcore.ImageDataset | None) -> bool:
    return dataset is None or (dataset.root / "digest.txt").is_file()


def _cached(loader, *args) -> tlcore.ImageDataset:
    """``loader(*args)``'s dataset, loaded again if it was deleted since; raises DatasetError if refused."""
    outcome = loader(*args)
    if not _still_stored(outcome.dataset):  # deleted on the Runs page since it was cached
        loader.clear(*args)
        outcome = loader(*args)
    if outcome.error is not None:
        raise tlcore.DatasetError(outcome.error)
    return outcome.dataset


def forget_stored() -> None:
    """Drop every cached dataset and refusal (after datasets were deleted: room was made)."""
    _upload.clear()
    _folder.clear()


def sample_dataset() -> tlcore.ImageDataset:
    """The built-in sample, drawn and stored once; explains and stops the page when there is no room for it."""
    try:
        data_dir = data_folder()
        dataset = _sample(data_dir)
        if not _still_stored(dataset):
            _sample.clear(data_dir)
            dataset = _sample(data_dir)
    except tlcore.TLError as exc:  # e.g. no room under TL_MAX_DATA_GB (nothing is cached: tried again next run)
        st.error(f"**The sample dataset cannot be stored.** {access.message(exc)}")
        st.stop()
    return dataset


def dataset_from_archive(data: bytes, filename: str | None = None) -> tlcore.ImageDataset:
    """Each distinct archive is checked and stored once per server, called by the file's name ("cats.zip")."""
    return _cached(_upload, data_folder(), tlcore.upload_key(data), filename, data)


def dataset_from_groups(groups: dict[str, list[bytes]]) -> tlcore.ImageDataset:
    return _cached(_upload, data_folder(), tlcore.upload_key(groups), None, groups)


def dataset_from_folder(typed: str) -> tlcore.ImageDataset:
    """A folder a visitor typed, only inside ``TL_DATASET_ROOTS`` (raises DatasetError otherwise)."""
    return _cached(_folder, data_folder(), str(tlcore.server_folder(typed)))


def _folder_widgets() -> tlcore.ImageDataset:
    roots = tlcore.load_settings().dataset_roots
    if not roots:
        st.info(FOLDER_OFF, icon=":material/folder_off:")
        st.stop()
    allowed = (", ".join(f"`{root}`" for root in roots) if access.is_local()
               else "the folders the administrator listed in TL_DATASET_ROOTS")
    st.caption(f"Allowed folders: {allowed}. A relative path is looked up "
               "inside them; links that lead elsewhere are not followed.")
    typed = st.text_input("Folder path on the server (one subfolder per class)", key="dataset_folder")
    if not typed:
        st.stop()
    return dataset_from_folder(typed)


def _camera(names: list[str]) -> dict[str, list[bytes]]:
    """One camera for every class, as Teachable Machine has: choose a class, take photos of it.

    Each photo joins the chosen class and the camera is ready for the next one (a
    fresh widget per photo). Off by default, so the browser asks for the camera
    only once someone wants it.
    """
    shots: dict[str, list[bytes]] = st.session_state.setdefault(SHOTS, {})
    target = st.radio("Take photos with the camera for", [CAMERA_OFF, *names], horizontal=True, key="camera_class",
                      format_func=lambda n: "nobody (camera off)" if n == CAMERA_OFF else access.plain(n))
    if target != CAMERA_OFF:
        count = st.session_state.get(SHOT_COUNT, 0)
        photo = st.camera_input(f"A photo of {access.plain(target)}", key=f"camera-{count}")
        if photo is not None:
            kept = shots.setdefault(target, [])
            if len(kept) < MAX_SHOTS:
                kept.append(photo.getvalue())
            st.session_state[SHOT_COUNT] = count + 1  # a new camera widget: ready for the next photo
            st.rerun()
        if len(shots.get(target, [])) >= MAX_SHOTS:
            st.caption(f"{MAX_SHOTS} photos is the most kept per class; upload files for more.")
    taken = {name: len(shots.get(name, [])) for name in names if shots.get(name)}
    if taken:
        st.caption("Camera photos: " + ", ".join(f"{access.plain(n)} {c}" for n, c in taken.items()) + ".")
        if st.button("Forget the camera photos", key="forget_shots"):
            shots.clear()
            st.rerun()
    return {name: shots.get(name, []) for name in names}


def _groups_widgets() -> tlcore.ImageDataset:
    """Class names, then for each its uploaded files and camera photos."""
    text = st.text_input("Class names, separated by commas", "class a, class b")
    names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    uploads = {name: st.file_uploader(f"Images of {access.plain(name)}", type=IMAGE_TYPES,
                                      accept_multiple_files=True, key=f"group-{name}") for name in names}
    photos = _camera(names)
    groups = {name: [f.getvalue() for f in uploads[name] or []] + photos[name] for name in names}
    if len(groups) < 2 or not all(len(images) >= 2 for images in groups.values()):
        st.info("Name at least two classes and give each at least two images: upload files, or take photos "
                "with the camera.")
        st.stop()
    return dataset_from_groups(groups)


def dataset_picker() -> tlcore.ImageDataset:
    """Widgets to choose a dataset; explains and stops the page until one is usable."""
    source = st.radio("Dataset", [SAMPLE, ZIP, GROUPS, FOLDER], horizontal=True, key="dataset_source",
                      help="The labelled pictures the model learns from: one group (class) per kind of thing "
                           "to recognise. The sample draws coloured shapes, so you can try it without images.")
    try:
        if source == SAMPLE:
            return sample_dataset()
        if source == ZIP:
            upload = st.file_uploader("A .zip with one folder per class (cats/1.jpg, dogs/2.png, ...)",
                                      type=["zip"], help="Each folder's name becomes a class name; the dataset "
                                                         "is called by the file's name.")
            if upload is None:
                st.stop()
            return dataset_from_archive(upload.getvalue(), upload.name)
        if source == GROUPS:
            return _groups_widgets()
        return _folder_widgets()
    except tlcore.TLError as exc:
        st.error(f"**That dataset cannot be used.** {access.message(exc)}")
        st.stop()


def show_copies(dataset: tlcore.ImageDataset) -> None:
    """Say which images appear twice: copies within a class stay on one side of every split; the same picture
    under two classes is a labelling question for people."""
    copies = dataset.copies
    if copies.within_class:
        st.caption(f"{copies.within_class} of these images are exact copies of another image of their class. "
                   "Each copy stays on the same side of the split as its original, so validation never scores an "
                   "exact copy of an image that training saw.")
    if copies.across_classes:
        names = [dataset.class_names[label] for label in sorted({dataset.labels[i] for i in copies.across_classes})]
        st.warning(f"**{len(copies.across_classes)} images appear under more than one class** (the same file in "
                   f"{', '.join(access.plain(n) for n in names)}). The model is taught two answers for one picture, "
                   "so these images always train and are never held out for validation; check those classes' "
                   "labels.", icon=":material/content_copy:")
