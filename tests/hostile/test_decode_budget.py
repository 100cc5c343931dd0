"""Decoding is where an upload's CPU goes: a 127 KB PNG may hold 40 million pixels (0.65 s to decode here),
so a zip of thousands of them cost hours of the server's CPU, each within every other budget. A dataset or a
batch may now decode ``TL_MAX_DECODED_PIXELS`` in all, each image counted from its header before it is
decoded; and a photo stored in a dataset is decoded at a reduced scale (Pillow's ``draft``), as its stored
copy is at most 512 pixels a side anyway."""

import functools
import io
import zipfile

import keras
import numpy as np
import pytest
from PIL import Image, ImageFile
from support import zip_of

import tlcore
from tlcore.data.datasets import BUILDING_PREFIX, MAX_STORED_SIDE, datasets_dir


def stored_zip(members: dict[str, bytes]) -> bytes:
    """A zip that stores its members as they are (a flat PNG deflates again past the ratio budget)."""
    return zip_of(members, zipfile.ZIP_STORED)


@functools.lru_cache(maxsize=8)
def _flat_png(width: int, height: int, colour=(10, 200, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


@functools.lru_cache(maxsize=8)
def _photo(width: int, height: int, seed: int = 0) -> tuple[Image.Image, bytes]:
    """A smooth, photo-like picture (gradients and noise) and its JPEG, made once (in float32: 5 s became 0.8 s)."""
    rng = np.random.default_rng(seed)
    x = np.arange(width, dtype=np.float32)[None, :]
    y = np.arange(height, dtype=np.float32)[:, None]
    pixels = np.empty((height, width, 3), np.float32)
    pixels[..., 0] = x * (255 / width)
    pixels[..., 1] = y * (255 / height)
    pixels[..., 2] = (x + y) * (127 / (width + height))
    pixels += 6 * rng.standard_normal(pixels.shape, dtype=np.float32)
    pixels = np.clip(pixels, 0, 255, out=pixels).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=92)
    return Image.fromarray(pixels), buffer.getvalue()


@pytest.fixture
def decoded(monkeypatch) -> list[tuple[int, int]]:
    """The size of every image Pillow decodes from here on."""
    sizes = []
    load = ImageFile.ImageFile.load

    def counted(image):
        if not getattr(image, "counted_by_test", False):  # its first load: the decoding
            image.counted_by_test = True
            sizes.append(image.size)
        return load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counted)
    return sizes


def test_a_dataset_over_the_decoding_budget_is_refused_before_the_image_that_passes_it(monkeypatch, decoded):
    monkeypatch.setenv("TL_MAX_DECODED_PIXELS", "30000000")
    members = {f"{label}/{i}.png": _flat_png(4000, 3000) for label in ("cat", "dog") for i in range(2)}
    archive = stored_zip(members)
    assert len(archive) < 200_000  # 48 million pixels in less than 200 KB
    with pytest.raises(tlcore.BudgetError) as refused:
        tlcore.load_dataset(archive, name="bombs.zip")
    assert str(refused.value) == (
        "The images of a dataset (bombs.zip) may hold at most 30,000,000 pixels in all as decoded "
        "(TL_MAX_DECODED_PIXELS). Received: more than that, passed at image 3 ('dog/0.png', 4000x3000)")
    assert decoded == [(4000, 3000), (4000, 3000)]  # the third was refused from its header
    folder = datasets_dir(tlcore.load_settings())
    assert not folder.is_dir() or not [p for p in folder.iterdir() if p.name.startswith(BUILDING_PREFIX)]


def test_a_dataset_within_the_budget_is_stored(monkeypatch):
    monkeypatch.setenv("TL_MAX_DECODED_PIXELS", "48000000")
    members = {f"{label}/{i}.png": _flat_png(4000, 3000, (i, 50, 90)) for label in ("cat", "dog") for i in range(2)}
    dataset = tlcore.load_dataset(stored_zip(members), name="four.zip")
    assert len(dataset) == 4 and dataset.class_names == ("cat", "dog")


def test_a_large_photo_is_decoded_at_a_reduced_scale_and_stored_as_before(monkeypatch, decoded):
    """4096x3072 decodes at 2048x1536 (a quarter of the pixels, so a quarter of the budget): never under twice
    the stored side, as Pillow's own thumbnail does, so the stored picture matches a full decode's."""
    full, jpeg = _photo(4096, 3072)
    monkeypatch.setenv("TL_MAX_DECODED_PIXELS", str(4 * 2048 * 1536))  # four photos decoded small: one in full
    others = {f"{label}/{i}.jpg": jpeg for label in "ab" for i in (0, 1)}  # one photo four times: each is decoded
    dataset = tlcore.load_dataset(stored_zip(others), name="photos")
    assert decoded == [(2048, 1536)] * 4
    stored = Image.open(dataset.files[0]).convert("RGB")
    assert stored.size == (MAX_STORED_SIDE, 384)
    reference = Image.open(io.BytesIO(jpeg)).convert("RGB")  # decoded in full, then shrunk
    reference.thumbnail((MAX_STORED_SIDE, MAX_STORED_SIDE))
    difference = np.abs(np.asarray(stored, np.int16) - np.asarray(reference, np.int16))
    assert difference.mean() < 1.5 and np.percentile(difference, 99) <= 8, (difference.mean(), difference.max())
    monkeypatch.setenv("TL_MAX_DECODED_PIXELS", str(4 * 2048 * 1536 - 1))  # a PNG of that size: in full
    png = _flat_png(*full.size)  # its header is all that is read
    with pytest.raises(tlcore.BudgetError, match=r"passed at image 1 \('a/0.png', 4096x3072\)"):
        tlcore.load_dataset(stored_zip({f"{label}/{i}.png": png for label in "ab" for i in (0, 1)}), name="pngs")


def test_a_small_jpeg_is_decoded_in_full_and_kept_as_it_came(decoded):
    _, jpeg = _photo(480, 320)
    members = {"a/1.jpg": jpeg, "a/2.jpg": _photo(480, 320, 1)[1], "b/1.jpg": _photo(480, 320, 2)[1],
               "b/2.jpg": _photo(480, 320, 3)[1]}
    dataset = tlcore.load_dataset(stored_zip(members), name="small")
    assert decoded[0] == (480, 320)
    assert dataset.files[0].read_bytes() == jpeg


def test_a_batch_over_the_decoding_budget_is_refused_not_skipped(monkeypatch, decoded):
    monkeypatch.setenv("TL_MAX_DECODED_PIXELS", "20000000")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs)))
    items = tlcore.batch_inputs([(f"{i}.png", _flat_png(4000, 3000)) for i in range(3)])
    with pytest.raises(tlcore.BudgetError, match=r"^The images of a batch \(3 files\) may hold at most 20,000,000 "
                                                 r"pixels in all as decoded \(TL_MAX_DECODED_PIXELS\)\. Received: more "
                                                 r"than that, passed at image 2 \('1.png', 4000x3000\)$"):
        tlcore.predict_batch(model, items, backbone="MobileNetV2", labels=["a", "b"])
    assert decoded == [(4000, 3000)]
    monkeypatch.setenv("TL_MAX_DECODED_PIXELS", "36000000")
    result = tlcore.predict_batch(model, items, backbone="MobileNetV2", labels=["a", "b"])
    assert result.table["file"].tolist() == ["0.png", "1.png", "2.png"] and not result.skipped
