import io
import stat
import zipfile

import numpy as np
import pytest
from PIL import Image

import tlcore
from conftest import image_bytes


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
    pixels, labels = first.arrays((32, 32))
    assert pixels.shape == (20, 32, 32, 3) and labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5
    import shutil

    shutil.rmtree(first.root)
    again, _ = tlcore.sample_dataset(per_class=5, size=32, seed=3).arrays((32, 32))
    np.testing.assert_array_equal(again, pixels)
    assert not np.array_equal(pixels[0], pixels[5])


def test_images_are_reencoded_and_large_ones_shrunk():
    big = io.BytesIO()
    Image.new("RGB", (1500, 900), (10, 200, 30)).save(big, "JPEG")
    dataset = tlcore.load_dataset({"a": [big.getvalue(), image_bytes()], "b": [image_bytes(seed=1), image_bytes(seed=2)]})
    stored = Image.open(dataset.files[0])
    assert stored.format == "PNG" and max(stored.size) == 512
