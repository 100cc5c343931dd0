import io
import json
import os
import shutil
import stat
import zipfile

import numpy as np
import pytest
from PIL import Image
from support import image_bytes

import tlcore
from tlcore.data.images import fit_image
from tlcore.data.pipeline import fitted_pixels


def make_zip(members: dict[str, bytes], **zip_kwargs) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", **zip_kwargs) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def two_classes(prefix: str = "", n: int = 3) -> dict[str, bytes]:
    return {f"{prefix}{kind}/{i}.png": image_bytes((20, 20), seed=i + 10 * k)
            for k, kind in enumerate(("cats", "dogs")) for i in range(n)}


def test_zip_of_class_folders():
    dataset = tlcore.load_dataset(make_zip(two_classes()))
    assert dataset.class_names == ("cats", "dogs")
    assert dataset.counts == {"cats": 3, "dogs": 3}
    assert all(f.suffix == ".png" and f.is_file() for f in dataset.files)
    assert all(f.is_relative_to(tlcore.load_settings().data_dir) for f in dataset.files)


def test_wrapper_folder_and_system_entries_are_skipped():
    members = two_classes("photos/")
    members.update({"__MACOSX/photos/cats/._0.png": b"junk", "photos/.DS_Store": b"junk",
                    "photos/cats/Thumbs.db": b"junk", "photos/dogs/.hidden.png": b"junk"})
    dataset = tlcore.load_dataset(make_zip(members))
    assert dataset.class_names == ("cats", "dogs") and len(dataset) == 6


def test_unreadable_images_are_skipped_and_listed():
    members = two_classes()
    members["cats/broken.jpg"] = b"not really a jpeg"
    dataset = tlcore.load_dataset(make_zip(members))
    assert len(dataset) == 6
    assert len(dataset.skipped) == 1 and "cats/broken.jpg" in dataset.skipped[0]


def test_user_names_never_become_paths():
    members = {f"{kind}/{name}": image_bytes((20, 20), seed=i) for i, (kind, name) in
               enumerate([("gatos ñ", "a b.png"), ("gatos ñ", "c;rm -rf.png"), ("perros", "x.png"), ("perros", "y.png")])}
    dataset = tlcore.load_dataset(make_zip(members))
    assert dataset.class_names == ("gatos ñ", "perros")
    assert {f.name for f in dataset.files} == {"000000.png", "000001.png", "000002.png", "000003.png"}


@pytest.mark.parametrize("name,message", [
    ("../evil/1.png", "must be relative paths"),
    ("/etc/1.png", "must be relative paths"),
    ("cats/\x00.png", "must be relative paths"),
])
def test_unsafe_member_names(name, message):
    members = two_classes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)
        info = zipfile.ZipInfo("placeholder")
        info.filename = name  # bypass zipfile's own clean-up, as a crafted archive would
        archive.writestr(info, image_bytes())
    with pytest.raises(tlcore.DatasetError, match=message):
        tlcore.load_dataset(buffer.getvalue())


def test_symlink_member():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for member, data in two_classes().items():
            archive.writestr(member, data)
        link = zipfile.ZipInfo("cats/link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(tlcore.DatasetError, match="may not contain links"):
        tlcore.load_dataset(buffer.getvalue())


def test_too_many_files(monkeypatch):
    monkeypatch.setenv("TL_MAX_ARCHIVE_FILES", "5")
    with pytest.raises(tlcore.DatasetError, match="at most 5 files. Received: 6"):
        tlcore.load_dataset(make_zip(two_classes()))


def test_too_deep(monkeypatch):
    monkeypatch.setenv("TL_MAX_ARCHIVE_DEPTH", "3")
    members = two_classes()
    members["a/b/c/d/e.png"] = image_bytes()
    with pytest.raises(tlcore.DatasetError, match="at most 3 deep"):
        tlcore.load_dataset(make_zip(members))


def test_total_size_limit(monkeypatch):
    monkeypatch.setenv("TL_MAX_ARCHIVE_BYTES", "1000")
    with pytest.raises(tlcore.DatasetError, match="unpack to at most 1,000 bytes"):
        tlcore.load_dataset(make_zip(two_classes()))


def test_compression_bomb():
    members = two_classes()
    members["cats/zeros.png"] = b"\0" * 5_000_000
    with pytest.raises(tlcore.DatasetError, match=r"compressed at most 100:1.*zip bomb"):
        tlcore.load_dataset(make_zip(members, compression=zipfile.ZIP_DEFLATED))


def test_lying_declared_size():
    data = bytearray(make_zip(two_classes(n=2)))
    # Make the first member declare (in the central directory) 10 bytes instead of its real size.
    central = data.find(b"PK\x01\x02")
    data[central + 24:central + 28] = (10).to_bytes(4, "little")
    assert zipfile.ZipFile(io.BytesIO(bytes(data))).infolist()[0].file_size == 10
    with pytest.raises(tlcore.DatasetError, match="no larger than they declare|Bad CRC"):
        tlcore.load_dataset(bytes(data))


def test_encrypted_member():
    data = bytearray(make_zip(two_classes()))
    # Set the "encrypted" flag bit in every header, as an encrypting zip tool would.
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (start := data.find(signature, start)) != -1:
            data[start + offset] |= 0x1
            start += 4
    with pytest.raises(tlcore.DatasetError, match="may not be encrypted"):
        tlcore.load_dataset(bytes(data))


def test_damaged_and_non_zip():
    with pytest.raises(tlcore.DatasetError, match="must be a readable .zip file"):
        tlcore.load_dataset(b"PK\x03\x04 this is not really a zip")
    data = make_zip(two_classes())
    with pytest.raises(tlcore.DatasetError, match="must be a readable .zip file"):
        tlcore.load_dataset(data[: len(data) // 2])


def test_one_class_and_tiny_class():
    with pytest.raises(tlcore.DatasetError, match=r"at least 2 classes.*Received: 1 class\(es\) \['cats'\]"):
        tlcore.load_dataset(make_zip({f"cats/{i}.png": image_bytes(seed=i) for i in range(3)}))
    members = two_classes()
    for i in (1, 2):
        del members[f"dogs/{i}.png"]
    with pytest.raises(tlcore.DatasetError, match=r"at least 2 usable images. Received: \{'dogs': 1\}"):
        tlcore.load_dataset(make_zip(members))


def test_folder_and_uploaded_groups(tmp_path):
    for name, data in two_classes("wrapper/").items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    assert tlcore.load_dataset(tmp_path).counts == {"cats": 3, "dogs": 3}
    groups = {"red": [image_bytes(seed=1), image_bytes(seed=2)], "blue": [image_bytes(seed=3), image_bytes(seed=4)]}
    assert tlcore.load_dataset(groups).class_names == ("red", "blue")


def test_stratified_seeded_split():
    dataset = tlcore.load_dataset(make_zip(two_classes(n=10)))
    train, validation = dataset.split(0.2, seed=1)
    labels = np.asarray(dataset.labels)
    assert np.bincount(labels[validation]).tolist() == [2, 2]
    assert sorted([*train, *validation]) == list(range(20))
    assert dataset.split(0.2, seed=1)[1].tolist() == validation.tolist()
    assert dataset.split(0.2, seed=2)[1].tolist() != validation.tolist()


def test_sample_dataset_is_deterministic_and_offline():
    first = tlcore.sample_dataset(per_class=5, size=32, seed=3)
    assert first.class_names == ("circle", "square", "triangle", "stripes") and len(first) == 20
    pixels = np.stack([fitted_pixels(str(f), (32, 32)) for f in first.files])
    assert pixels.shape == (20, 32, 32, 3) and list(first.labels) == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5
    import shutil

    shutil.rmtree(first.root)
    again = np.stack([fitted_pixels(str(f), (32, 32)) for f in tlcore.sample_dataset(per_class=5, size=32, seed=3).files])
    np.testing.assert_array_equal(again, pixels)
    assert not np.array_equal(pixels[0], pixels[5])


def test_images_are_reencoded_and_large_ones_shrunk():
    big = io.BytesIO()
    Image.new("RGB", (1500, 900), (10, 200, 30)).save(big, "JPEG")
    dataset = tlcore.load_dataset({"a": [big.getvalue(), image_bytes()], "b": [image_bytes(seed=1), image_bytes(seed=2)]})
    stored = Image.open(dataset.files[0])
    assert stored.format == "PNG" and max(stored.size) == 512


# --- What is stored: the bytes as they came when nothing needs changing, else PNG ------------------


def photo_jpeg(seed: int, size=(160, 120), quality: int = 15, **save) -> bytes:
    """A smooth, photo-like picture (gradients and a disc) saved as a low-quality JPEG."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[1], 0:size[0]] / max(size)
    channels = [np.sin(2 * np.pi * (x * rng.uniform(0.5, 2) + y * rng.uniform(0.5, 2)) + rng.uniform(0, 6))
                for _ in range(3)]
    pixels = (np.stack(channels, -1) * 90 + 128).astype(np.uint8)
    disc = (x - rng.uniform(0.2, 0.8)) ** 2 + (y - rng.uniform(0.2, 0.6)) ** 2 < 0.02
    pixels[disc] = rng.integers(0, 256, 3)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality, **save)
    return buffer.getvalue()


FORMATS = {".jpg": "JPEG", ".png": "PNG", ".webp": "WEBP"}


def assert_stored_as_validated(pairs) -> None:
    """Each stored file is named by its format, and what training reads is what ``load_image`` gave."""
    for path, original in pairs:
        with Image.open(path) as stored:
            assert FORMATS[path.suffix] == stored.format, path
        expected = np.asarray(fit_image(tlcore.load_image(original), (40, 56), mode="squash"))
        np.testing.assert_array_equal(fitted_pixels(str(path), (40, 56), "squash"), expected)


def test_a_zip_of_low_quality_jpegs_is_stored_as_it_came_with_a_stable_digest(monkeypatch, tmp_path):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "data"))
    members = {f"{kind}/{i:02d}.jpg": photo_jpeg(seed=10 * k + i) for k, kind in enumerate(("cats", "dogs"))
               for i in range(10)}
    archive = make_zip(members, compression=zipfile.ZIP_DEFLATED)
    dataset = tlcore.load_dataset(archive)
    stored = sum(path.stat().st_size for path in dataset.files)
    print(f"{len(members)} JPEGs: {len(archive):,} bytes zipped, {stored:,} bytes stored")
    assert len(dataset) == 20 and stored <= 1.5 * len(archive)  # as PNG: 461 KB, 18 times the zip
    assert sorted(path.read_bytes() for path in dataset.files) == sorted(members.values())
    assert {path.suffix for path in dataset.files} == {".jpg"}
    record = json.loads((dataset.root / "dataset.json").read_text())
    assert record["bytes"] == stored  # counted against TL_MAX_DATA_GB as written
    assert_stored_as_validated(zip(dataset.files, [members[name] for name in sorted(members)]))

    assert tlcore.load_dataset(archive) == dataset  # the same upload: found, not stored again
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "elsewhere"))
    again = tlcore.load_dataset(archive)  # stored afresh: the same files, the same digest
    assert again.digest == dataset.digest and again.root != dataset.root
    assert [path.relative_to(again.root) for path in again.files] == [path.relative_to(dataset.root)
                                                                      for path in dataset.files]


def png_of(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def webp_of(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", lossless=True)
    return buffer.getvalue()


def test_images_that_need_a_change_are_stored_as_png_and_the_others_as_they_came(monkeypatch, tmp_path):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "data"))
    turned = Image.Exif()
    turned[0x0112] = 6  # EXIF Orientation: turn 90 degrees to show upright
    transparent = np.zeros((30, 40, 4), np.uint8)
    transparent[..., 0], transparent[:15, :, 3] = 200, 255  # the lower half transparent: white once flattened
    deep = (np.arange(30 * 40, dtype=np.uint16).reshape(30, 40) * 50)
    inputs = {
        "kept": [photo_jpeg(1), photo_jpeg(2, quality=90),
                 image_bytes((40, 30), "WEBP", quality=60), image_bytes((40, 30), "JPEG", mode="L"),
                 image_bytes((40, 30), "PNG", mode="P")],
        "changed": [photo_jpeg(3, exif=turned.tobytes()), png_of(Image.fromarray(transparent, "RGBA")),
                    png_of(Image.fromarray(deep)), photo_jpeg(4, (900, 600)), photo_jpeg(5) + bytes(60_000),
                    image_bytes((40, 30), "BMP"), image_bytes((40, 30), "GIF"),
                    webp_of(Image.fromarray(transparent, "RGBA"))],
    }
    dataset = tlcore.load_dataset(inputs)
    originals = [*inputs["kept"], *inputs["changed"]]
    kept, changed = dataset.files[:5], dataset.files[5:]
    assert [path.suffix for path in kept] == [".jpg", ".jpg", ".webp", ".jpg", ".png"]
    assert [path.read_bytes() for path in kept] == inputs["kept"]
    assert {path.suffix for path in changed} == {".png"}
    assert all(path.read_bytes() != original for path, original in zip(changed, inputs["changed"]))
    assert Image.open(changed[0]).size == (120, 160)  # turned upright
    assert Image.open(changed[1]).getpixel((0, 29)) == (255, 255, 255)  # flattened on white
    assert max(Image.open(changed[3]).size) == 512  # shrunk
    assert_stored_as_validated((path, original) for path, original in zip(dataset.files, originals)
                               if path != changed[3])
    assert tlcore.load_dataset(inputs).digest == dataset.digest


# --- Folders on the server: only inside TL_DATASET_ROOTS, links never followed -------------------


def write_classes(folder, n: int = 3, seed: int = 0) -> None:
    for name, data in two_classes(n=n).items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data if not seed else image_bytes((20, 20), seed=seed + hash(name) % 1000))


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """An allowed root holding a dataset, and a secret dataset beside it (another user's)."""
    allowed, secret = tmp_path / "allowed", tmp_path / "secret"
    write_classes(allowed / "pets")
    write_classes(secret / "private", seed=7)
    monkeypatch.setenv("TL_DATASET_ROOTS", str(allowed))
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "data"))
    return allowed, secret


@pytest.fixture
def reads(monkeypatch):
    """Every path tlcore.datasets walks or opens while loading a folder."""
    from tlcore.data import intake as datasets

    seen: list[str] = []
    walk, read = datasets.os.walk, datasets._read_regular_file
    monkeypatch.setattr(datasets.os, "walk", lambda top, **kw: (seen.append(str(top)), walk(top, **kw))[1])
    monkeypatch.setattr(datasets, "_read_regular_file",
                        lambda path, top: (seen.append(str(path)), read(path, top))[1])
    return seen


def test_a_class_folder_swapped_for_a_link_after_listing_reads_nothing_outside(roots):
    """O_NOFOLLOW guards a path's last name only: cats/ swapped for a link to another user's folder between
    the listing and the reads led every read of cats/N.png there."""
    from tlcore.data.intake import folder_items

    allowed, secret = roots
    skipped: list[str] = []
    items, _ = folder_items(tlcore.server_folder("pets"), tlcore.load_settings(), skipped)
    cats = allowed / "pets" / "cats"
    shutil.move(cats, allowed.parent / "moved-cats")
    cats.symlink_to(secret / "private" / "cats", target_is_directory=True)
    for class_name, _shown, read in items:
        if class_name == "cats":
            with pytest.raises(tlcore.ImageError, match=r"must lie inside that folder\. Received: '.*' opened "
                                                        r"outside it"):
                read()
        else:
            assert read()[:4] == b"\x89PNG"


def test_server_folders_are_off_without_allowed_roots(monkeypatch, tmp_path):
    monkeypatch.delenv("TL_DATASET_ROOTS", raising=False)
    with pytest.raises(tlcore.DatasetError, match=r"only inside a folder listed in TL_DATASET_ROOTS, and this "
                                                  r"server lists none, so the option is off. Received: '/tmp'"):
        tlcore.server_folder("/tmp")


def test_a_folder_inside_an_allowed_root_resolves(roots):
    allowed, _ = roots
    assert tlcore.server_folder(str(allowed / "pets")) == (allowed / "pets").resolve()
    assert tlcore.server_folder("pets") == (allowed / "pets").resolve()  # relative: looked up in the roots
    assert tlcore.server_folder(f"{allowed}/pets/cats/..") == (allowed / "pets").resolve()
    dataset = tlcore.load_dataset(tlcore.server_folder("pets"))
    assert dataset.counts == {"cats": 3, "dogs": 3}


@pytest.mark.parametrize("typed", ["{allowed}/../secret/private", "../secret/private", "{secret}/private",
                                   "{allowed}/escape", "{allowed}/escape/cats", "/", "pets/../../secret"])
def test_paths_leaving_the_allowed_roots_are_refused_and_nothing_is_read(roots, reads, typed):
    allowed, secret = roots
    (allowed / "escape").symlink_to(secret / "private")  # a link inside the root, pointing out
    typed = typed.format(allowed=allowed, secret=secret)
    with pytest.raises(tlcore.DatasetError, match=r"must be inside one of the allowed folders \(TL_DATASET_ROOTS\): "
                                                  rf"{allowed}\. Received: '{typed}', which leaves them"):
        tlcore.server_folder(typed)
    assert reads == []
    assert not (tlcore.load_settings().data_dir / "datasets").exists()


def test_a_missing_folder_inside_a_root_is_named_but_never_one_outside(roots):
    allowed, _ = roots
    with pytest.raises(tlcore.DatasetError, match=r"must be an existing folder inside .* Received: 'nothing here'"):
        tlcore.server_folder("nothing here")
    with pytest.raises(tlcore.DatasetError, match="which leaves them"):  # same answer whether it exists or not
        tlcore.server_folder("/no/such/folder")


def test_links_inside_a_folder_are_not_followed(roots, reads):
    allowed, secret = roots
    pets = allowed / "pets"
    (pets / "cats" / "stolen.png").symlink_to(secret / "private" / "cats" / "0.png")
    (pets / "borrowed").symlink_to(secret / "private" / "dogs")
    os.mkfifo(pets / "dogs" / "pipe.png")  # reading it would block forever
    dataset = tlcore.load_dataset(tlcore.server_folder("pets"))
    assert dataset.counts == {"cats": 3, "dogs": 3}
    assert {line.split(":")[0] for line in dataset.skipped} == {"cats/stolen.png", "borrowed", "dogs/pipe.png"}
    assert "a link (links are not followed)" in " ".join(dataset.skipped)
    assert not [path for path in reads if str(secret) in path]


# --- Budgets: images, stored pixels, overlapping archive members --------------------------------------


def test_too_many_images_is_refused_before_anything_is_stored(monkeypatch, tmp_path):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TL_MAX_DATASET_IMAGES", "5")
    with pytest.raises(tlcore.DatasetError, match=r"at most 5 images \(TL_MAX_DATASET_IMAGES\). "
                                                  r"Received: 6 files in class folders in uploaded archive"):
        tlcore.load_dataset(make_zip(two_classes()))
    groups = {"a": [image_bytes(seed=i) for i in range(3)], "b": [image_bytes(seed=9 + i) for i in range(3)]}
    with pytest.raises(tlcore.DatasetError, match=r"TL_MAX_DATASET_IMAGES\). Received: 6 files"):
        tlcore.load_dataset(groups)
    write_classes(tmp_path / "folder")
    with pytest.raises(tlcore.DatasetError, match=r"TL_MAX_DATASET_IMAGES\). Received: more than that many files"):
        tlcore.load_dataset(tmp_path / "folder")
    assert not (tmp_path / "data").exists()  # nothing was written


def test_too_many_stored_pixels_stops_while_storing_and_removes_the_partial_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TL_MAX_DATASET_PIXELS", "1000")  # two 20x20 images fit, the third does not
    decoded = []
    from tlcore.data import datasets

    monkeypatch.setattr(datasets, "load_image", lambda source, **kw: (decoded.append(1), tlcore.load_image(source, **kw))[1])
    with pytest.raises(tlcore.DatasetError, match=r"at most 1,000 pixels in all, as stored \(TL_MAX_DATASET_PIXELS\)"
                                                  r"\. Received: more than that in uploaded archive, passed at image 3"):
        tlcore.load_dataset(make_zip(two_classes()))
    assert len(decoded) == 3  # refused as soon as the sum passed
    assert list((tmp_path / "data" / "datasets").iterdir()) == []  # the partial folder is gone


def overlapping_zip() -> bytes:
    """A zip whose second directory entry points at the first member's bytes (the overlapping-files bomb)."""
    data = bytearray(make_zip(two_classes()))
    entries = [i for i in range(len(data)) if data[i:i + 4] == b"PK\x01\x02"]
    first_offset = data[entries[0] + 42:entries[0] + 46]
    data[entries[1] + 42:entries[1] + 46] = first_offset
    return bytes(data)


def test_overlapping_members_are_refused_before_reading_any(monkeypatch):
    from tlcore.data import intake as datasets

    monkeypatch.setattr(datasets, "read_capped", lambda *a: pytest.fail("a member was read"))
    with pytest.raises(tlcore.DatasetError, match=r"Archive members may not overlap each other. "
                                                  r"Received: 'cats/\d.png' overlaps 'cats/\d.png'"):
        tlcore.load_dataset(overlapping_zip())


def test_a_member_whose_header_is_not_where_the_directory_says_is_refused():
    data = bytearray(make_zip(two_classes()))
    entry = data.find(b"PK\x01\x02")
    data[entry + 42:entry + 46] = (7).to_bytes(4, "little")  # into the middle of a header
    with pytest.raises(tlcore.DatasetError, match="must start with a local header where the directory says"):
        tlcore.load_dataset(bytes(data))


# --- The content digest ---------------------------------------------------------------------------------


def test_digest_is_the_same_for_the_same_content_and_changes_with_one_pixel(monkeypatch, tmp_path):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "data"))
    stored = tlcore.load_dataset(make_zip(two_classes()))
    deflated = tlcore.load_dataset(make_zip(two_classes(), compression=zipfile.ZIP_DEFLATED))
    assert stored.root != deflated.root  # other upload bytes, stored under another id...
    assert len(stored.digest) == 64 and stored.digest == deflated.digest  # ...but the same content
    assert (stored.root / "digest.txt").read_text() == stored.digest
    assert tlcore.load_dataset(make_zip(two_classes())).digest == stored.digest  # read back when reused

    members = two_classes()
    pixels = np.asarray(Image.open(io.BytesIO(members["dogs/2.png"]))).copy()
    pixels[0, 0, 0] ^= 1
    members["dogs/2.png"] = _png(pixels)
    assert tlcore.load_dataset(make_zip(members)).digest != stored.digest

    from tlcore.data.datasets import content_digest

    files = [(label, path.read_bytes()) for path, label in zip(stored.files, stored.labels)]
    assert content_digest(stored.class_names, files) == stored.digest  # the documented definition
    assert content_digest(("dogs", "cats"), files) != stored.digest  # class names count too


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def test_sample_dataset_has_a_stable_digest_and_datasets_pickle(tmp_path, monkeypatch):
    import pickle
    import shutil

    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "data"))
    first = tlcore.sample_dataset(per_class=3, size=32, seed=5)
    assert (first.root / "digest.txt").read_text() == first.digest
    (first.root / "digest.txt").unlink()  # as stored before datasets had digests
    assert tlcore.sample_dataset(per_class=3, size=32, seed=5).digest == first.digest
    shutil.rmtree(first.root)
    assert tlcore.sample_dataset(per_class=3, size=32, seed=5).digest == first.digest
    assert tlcore.sample_dataset(per_class=3, size=32, seed=6).digest != first.digest
    assert pickle.loads(pickle.dumps(first)) == first


# --- The Train page's picker and the stored-datasets panel (AppTest) ---------------------------------


@pytest.mark.slow
def test_train_page_explains_the_folder_option_is_off_without_allowed_roots(monkeypatch):
    from support import open_page

    monkeypatch.delenv("TL_DATASET_ROOTS", raising=False)
    at = open_page("../pages/train.py")
    at.radio(key="dataset_source").set_value("Folder on the server").run()
    assert not at.exception
    assert "Folder on the server is off on this server" in at.info[0].value
    assert "TL_DATASET_ROOTS" in at.info[0].value
    assert not [box for box in at.text_input if box.key == "dataset_folder"]  # nothing to type a path into


@pytest.mark.slow
def test_train_page_takes_a_folder_only_inside_the_allowed_roots(roots):
    from support import open_page

    allowed, secret = roots
    at = open_page("../pages/train.py")
    at.radio(key="dataset_source").set_value("Folder on the server").run()
    captions = " ".join(c.value for c in at.caption)  # AppTest is no browser on localhost: no server paths
    assert "Allowed folders: the folders the administrator listed in TL_DATASET_ROOTS" in captions
    assert str(allowed) not in captions
    at.text_input(key="dataset_folder").set_value(f"{allowed}/../secret/private").run()
    assert not at.exception
    assert "must be inside one of the allowed folders (TL_DATASET_ROOTS)" in at.error[0].value
    assert not at.get("imgs")  # nothing from the secret folder is shown
    at.text_input(key="dataset_folder").set_value("pets").run()
    assert not at.error and "6 images in 2 classes from pets" in " ".join(c.value for c in at.caption)


def _render_usage():
    from ui.storage import render_data_usage

    render_data_usage()


@pytest.mark.slow
def test_stored_datasets_panel_shows_usage_and_deletes_after_confirming(monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "data"))  # the panel's caches are keyed by the folder
    dataset = tlcore.load_dataset(make_zip(two_classes()))
    at = AppTest.from_function(_render_usage, default_timeout=60).run()
    assert not at.exception
    assert "of 50 GB used (TL_MAX_DATA_GB)" in at.get("progress")[0].proto.text
    assert at.dataframe[0].value["id"].tolist() == [dataset.root.name]
    assert at.button(key="delete_dataset").disabled  # confirm first
    at.checkbox(key=f"confirm-dataset-{dataset.root.name}").check().run()
    at.button(key="delete_dataset").click().run()
    assert not at.exception and not dataset.root.exists()
    assert "freed" in at.success[0].value and "No stored datasets yet" in at.caption[0].value


def _decode():
    import streamlit as st
    from support import image_bytes

    from ui.samples import decoded_image

    width, height = decoded_image(image_bytes((30, 20), seed=42)).size
    st.markdown(f"decoded {width}x{height}")


@pytest.mark.slow
def test_an_upload_is_decoded_once_across_reruns(monkeypatch):
    from streamlit.testing.v1 import AppTest

    from ui.samples import _decoded

    _decoded.clear()
    calls = []
    real = tlcore.load_image
    monkeypatch.setattr(tlcore, "load_image", lambda source, **kw: (calls.append(1), real(source, **kw))[1])
    at = AppTest.from_function(_decode).run()
    at.run()  # a rerun
    other = AppTest.from_function(_decode).run()  # another session, the same bytes
    assert at.markdown[0].value == other.markdown[0].value == "decoded 30x20"
    assert len(calls) == 1
