"""Helpers the tests import: made-up images and zips, the demo at its smallest, and the app opened on a page."""

import contextlib
import dataclasses
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def image_bytes(size=(64, 48), fmt="PNG", mode="RGB", seed=0, **save) -> bytes:
    """A made-up image encoded in ``fmt``."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def coloured_pngs(colour: tuple[int, int, int], count: int, seed: int, side: int = 40) -> list[bytes]:
    """``count`` PNGs of one colour with seeded noise (+-30 a channel): a class a small model can learn."""
    rng = np.random.default_rng(seed)
    pictures = []
    for _ in range(count):
        pixels = np.clip(np.array(colour) + rng.integers(-30, 30, (side, side, 3)), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG")
        pictures.append(buffer.getvalue())
    return pictures

@contextlib.contextmanager
def every_cpu_held():
    """Every CPU of the test's Ray cluster reserved, as another server's jobs or a sweep would hold them, until the
    block ends: what asks for a CPU inside it waits. Gives the number of CPUs."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    cpus = ray.cluster_resources()["CPU"]
    held = placement_group([{"CPU": cpus}])
    ray.get(held.ready(), timeout=60)
    try:
        yield cpus
    finally:
        remove_placement_group(held)


def pending_groups() -> list[str]:
    """The ids of the placement groups that wait for their CPUs."""
    from ray.util.placement_group import placement_group_table

    return [key for key, group in placement_group_table().items() if group["state"] == "PENDING"]


def ended_pid() -> int:
    """The process id of a process that has ended (a short-lived child): what a killed writer leaves named."""
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)


ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app" / "streamlit_app.py")  # the entrypoint; page paths are relative to it
RANDOM = "Random (untrained)"


def open_link(page: str, **params: str):
    """The app opened from a link: ``params`` in the query string, then ``page`` (relative to the entrypoint)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=180)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    if page != "../pages/home.py":
        at.switch_page(page).run()
        assert not at.exception, at.exception
    return at


def open_page(page: str, *, backbone: str = "VGG16", weights: str = RANDOM, **state):
    """An AppTest of the app on ``page`` (e.g. "../pages/build.py", relative to the entrypoint),
    with the sidebar's choices and any session state set."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["backbone"] = backbone
    at.session_state["weights"] = weights
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    if page != "../pages/home.py":
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def zip_of(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of ``members`` (member name -> bytes), in order, deflated unless ``compression`` says otherwise."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tiny_demo_recipe():
    """The develop-a-model demo at its smallest: VGG16 at 32 px, 4 images a class, one epoch a run."""
    import tlcore

    recipe = tlcore.DEMO_RECIPE
    return tlcore.DemoRecipe(
        seed=5, size=32, source_per_class=4, target_per_class=4,
        source_spec=dataclasses.replace(recipe.source_spec, backbone="VGG16", input_shape=(32, 32, 3)),
        source_config=dataclasses.replace(recipe.source_config, epochs=1, batch_size=8),
        target_spec=dataclasses.replace(recipe.target_spec, backbone="VGG16", input_shape=(32, 32, 3)),
        target_config=dataclasses.replace(recipe.target_config, epochs=1, batch_size=8, validation_fraction=0.5),
    )


def transfer_lab(*args, data_dir: Path, timeout=600) -> subprocess.CompletedProcess:
    """The command line as a user runs it: ``python -m tlcore_cli ARGS`` in a subprocess, in and over
    ``data_dir`` (its ``TL_DATA_DIR``)."""
    environ = {**os.environ, "TL_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "tlcore_cli", *map(str, args)], capture_output=True, text=True,
                          env=environ, timeout=timeout, cwd=data_dir)


def class_folders(root: Path, per_class: int, *, red_cats: bool = False) -> Path:
    """``root/images/{cat,dog}/N.png``, seeded noise at 40x40; with ``red_cats`` the classes also differ in
    colour (the cats' red channel full, the dogs' empty), so a probe can tell them apart. Returns ``root``."""
    for label, seed in (("cat", 0), ("dog", 50)):
        (root / "images" / label).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.random.default_rng(seed + i).integers(0, 255, (40, 40, 3), dtype=np.uint8)
            if red_cats:
                pixels[..., 0] = 255 if label == "cat" else 0
            Image.fromarray(pixels).save(root / "images" / label / f"{i}.png")
    return root


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(key))
    return int(line.split()[1]) * 1024


@contextlib.contextmanager
def peak_growth(limit_mb: float = 100):
    """Assert that the peak RSS inside grows less than ``limit_mb`` over the RSS before."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # resets VmHWM to the current RSS
    before = _status_bytes("VmRSS")
    measured = {}
    yield measured
    measured["mb"] = (_status_bytes("VmHWM") - before) / 2**20
    print(f"peak RSS growth: {measured['mb']:.1f} MB")
    assert measured["mb"] < limit_mb


def tiny_keras_file(folder: Path, side: int = 32, classes: int = 2) -> bytes:
    """The bytes of a small real ``.keras`` file: (side, side, 3) images in, ``classes`` scores out."""
    import keras

    inputs = keras.Input((side, side, 3))
    outputs = keras.layers.Dense(classes, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs))
    path = Path(folder) / f"model-{side}-{classes}.keras"
    keras.Model(inputs, outputs).save(path)
    return path.read_bytes()
