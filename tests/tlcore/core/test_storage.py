"""The data folder's disk budget: stored once, capped, listed and deleted."""

import io
import re
import zipfile

import pytest
from PIL import Image
from support import image_bytes

import tlcore
from tlcore.core.storage import folder_size


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    """A data folder of this test's own, so sizes measured are only what the test wrote."""
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def make_zip(n: int = 3, seed: int = 0, fmt: str = "PNG", **save) -> bytes:
    """The same bytes for the same arguments (a fixed member date: writestr with a name stamps the clock)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for k, kind in enumerate(("cats", "dogs")):
            for i in range(n):
                member = zipfile.ZipInfo(f"{kind}/{i}.{fmt.lower()}", date_time=(2026, 1, 1, 0, 0, 0))
                archive.writestr(member, image_bytes((24, 24), fmt, seed=seed + i + 100 * k, **save))
    return buffer.getvalue()


def groups(seed: int = 0) -> dict[str, list[bytes]]:
    return {"red": [image_bytes((24, 24), seed=seed + i) for i in range(2)],
            "blue": [image_bytes((24, 24), seed=seed + 50 + i) for i in range(2)]}


def test_an_identical_upload_is_stored_once(data_dir):
    first = tlcore.load_dataset(make_zip())
    after_first = folder_size(data_dir)
    assert after_first > 0
    again = tlcore.load_dataset(make_zip())
    assert folder_size(data_dir) == after_first  # the re-upload added no bytes
    assert again.root == first.root and again.files == first.files and again.digest == first.digest
    assert again.class_names == first.class_names and again.labels == first.labels

    uploads = tlcore.load_dataset(groups())
    after_groups = folder_size(data_dir)
    assert tlcore.load_dataset(groups()).root == uploads.root and folder_size(data_dir) == after_groups
    assert tlcore.load_dataset(groups(seed=1)).root != uploads.root  # other images: stored


def test_a_reused_upload_is_not_decoded_again(monkeypatch):
    from tlcore.data import datasets

    tlcore.load_dataset(make_zip(seed=3))
    monkeypatch.setattr(datasets, "load_image", lambda source: pytest.fail("decoded again"))
    assert len(tlcore.load_dataset(make_zip(seed=3))) == 6


def test_the_same_folder_read_twice_is_stored_once(tmp_path, data_dir):
    for name, data in zip(["a/1.png", "a/2.png", "b/1.png", "b/2.png"], groups()["red"] + groups()["blue"]):
        (tmp_path / "pets" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pets" / name).write_bytes(data)
    first = tlcore.load_dataset(tmp_path / "pets")
    size = folder_size(data_dir)
    second = tlcore.load_dataset(tmp_path / "pets")
    assert second.root == first.root and folder_size(data_dir) == size
    assert [p.name for p in (data_dir / "datasets").iterdir()] == [first.root.name]  # no leftovers


def test_the_data_cap_refuses_before_storing(monkeypatch, data_dir):
    kept = tlcore.load_dataset(make_zip())
    used = folder_size(data_dir)
    monkeypatch.setenv("TL_MAX_DATA_GB", str((used + 1_000) / 1e9))  # room for 1 KB more
    archive = make_zip(seed=10)
    with pytest.raises(tlcore.StorageError, match=r"The data folder may hold at most [\d.]+ KB \(TL_MAX_DATA_GB\). "
                                                  r"Received: a dataset \(uploaded archive\) of about [\d.]+ KB while "
                                                  r"[\d.]+ KB are in use; delete runs or datasets to make room."):
        tlcore.load_dataset(archive)
    assert folder_size(data_dir) == used
    assert all(path.is_file() for path in kept.files)  # what was saved before is intact
    assert tlcore.load_dataset(make_zip()).digest == kept.digest  # and a re-upload of it needs no room


def test_the_data_cap_is_enforced_while_writing(monkeypatch, data_dir):
    kept = tlcore.load_dataset(make_zip())
    used = folder_size(data_dir)
    rotated = Image.Exif()
    rotated[0x0112] = 6  # EXIF orientation: turned upright on storing, so stored as a (larger) PNG
    small_jpegs = make_zip(n=20, seed=20, fmt="JPEG", quality=10, exif=rotated.tobytes())
    declared = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(small_jpegs)).infolist())
    monkeypatch.setenv("TL_MAX_DATA_GB", str((used + 2 * declared) / 1e9))  # the declared size fits
    with pytest.raises(tlcore.StorageError, match=r"at most [\d.]+ KB \(TL_MAX_DATA_GB\). Received: a dataset "
                                                  r"\(uploaded archive\) that reached [\d.]+ KB while writing"):
        tlcore.load_dataset(small_jpegs)
    assert folder_size(data_dir) == used  # the partial folder is gone
    assert [p.name for p in (data_dir / "datasets").iterdir()] == [kept.root.name]
    assert all(path.is_file() for path in kept.files)


def test_list_and_delete_datasets_frees_their_bytes(data_dir):
    sample = tlcore.sample_dataset(per_class=2, size=16, seed=1)
    uploaded = tlcore.load_dataset(make_zip())
    table = tlcore.list_datasets()
    assert list(table.columns) == ["id", "name", "images", "classes", "bytes", "created", "builtin"]
    row = table.set_index("id").loc[uploaded.root.name]
    assert (row["name"], row["images"], row["classes"], row["builtin"]) == ("uploaded archive", 6, 2, False)
    assert row["bytes"] == folder_size(uploaded.root) and row["created"].year >= 2025
    assert table.set_index("id").loc[sample.root.name, "builtin"]

    before = tlcore.data_usage()
    freed = tlcore.delete_dataset(uploaded.root.name)
    assert freed == row["bytes"] and not uploaded.root.exists()
    assert tlcore.data_usage().used == before.used - freed
    assert uploaded.root.name not in set(tlcore.list_datasets()["id"])
    assert tlcore.load_dataset(make_zip()).digest == uploaded.digest  # stored again on the next upload


@pytest.mark.parametrize("dataset_id,message", [
    ("no-such-dataset", r"must be one listed by list_datasets \(\d stored dataset\(s\)\). Received: 'no-such-dataset'"),
    ("../../etc", r"must be one listed by list_datasets .* Received: '../../etc'"),
    ("", r"must be one listed by list_datasets .* Received: ''"),
])
def test_delete_refuses_anything_but_a_listed_dataset(dataset_id, message, data_dir):
    tlcore.load_dataset(make_zip())
    with pytest.raises(tlcore.DatasetError, match=message):
        tlcore.delete_dataset(dataset_id)


def test_built_in_samples_are_never_deleted():
    sample = tlcore.sample_dataset(per_class=2, size=16, seed=2)
    with pytest.raises(tlcore.DatasetError, match=r"Built-in sample datasets are not deleted.*Received: 'sample-2-16-2'"):
        tlcore.delete_dataset(sample.root.name)
    assert all(path.is_file() for path in sample.files)


def test_usage_against_the_cap(monkeypatch, data_dir):
    monkeypatch.setenv("TL_MAX_DATA_GB", "50")
    empty = tlcore.data_usage()
    assert (empty.used, empty.cap, empty.fraction) == (0, 50_000_000_000, 0.0)
    dataset = tlcore.load_dataset(make_zip())
    usage = tlcore.data_usage()
    assert usage.datasets == usage.used == folder_size(dataset.root) and str(usage).endswith("of 50 GB used")
    assert [tlcore.format_size(n) for n in (850, 12_345_678, 3_100_000_000, 48_200_000_000)] == \
        ["850 bytes", "12.3 MB", "3.1 GB", "48.2 GB"]


def test_unfinished_folders_are_not_listed_and_old_ones_are_swept(data_dir):
    import os
    import time

    tlcore.load_dataset(make_zip())
    stale = data_dir / "datasets" / ".building-old"
    stale.mkdir()
    (stale / "0.png").write_bytes(b"x" * 100)
    os.utime(stale, (time.time() - 2 * 86400,) * 2)
    fresh = data_dir / "datasets" / ".building-now"
    fresh.mkdir()
    assert len(tlcore.list_datasets()) == 1
    tlcore.load_dataset(make_zip(seed=30))
    assert not stale.exists() and fresh.exists()  # a build in progress is left alone


def test_a_full_data_folder_stores_nothing(monkeypatch, data_dir):
    big = io.BytesIO()
    Image.new("RGB", (600, 600), (1, 2, 3)).save(big, "PNG")
    monkeypatch.setenv("TL_MAX_DATA_GB", "0.000001")  # 1 KB: nothing fits
    with pytest.raises(tlcore.StorageError, match="TL_MAX_DATA_GB"):
        tlcore.load_dataset({"a": [big.getvalue()] * 2, "b": [image_bytes(seed=1), image_bytes(seed=2)]})
    assert folder_size(data_dir) == 0


def test_two_datasets_written_at_once_share_the_cap(monkeypatch):
    from tlcore.core.storage import WriteBudget

    monkeypatch.setenv("TL_MAX_DATA_GB", str(10_000 / 1e9))  # 10 KB, empty folder
    first, second = WriteBudget(expected=4_000), WriteBudget(expected=4_000)  # each fits alone
    first.take(6_000)
    second.take(3_000)
    with pytest.raises(tlcore.StorageError, match=r"at most 10.0 KB \(TL_MAX_DATA_GB\). Received: a dataset that "
                                                  r"reached 5.0 KB while writing, with 6.0 KB in use"):
        second.take(2_000)  # its 3 + 2 KB and the other's 6 KB: past 10 KB


def test_the_cap_message_in_gigabytes(monkeypatch):
    monkeypatch.setenv("TL_MAX_DATA_GB", "50")
    with pytest.raises(tlcore.StorageError) as refused:
        tlcore.check_room(3_100_000_000, used=48_200_000_000)
    assert str(refused.value) == ("The data folder may hold at most 50 GB (TL_MAX_DATA_GB). Received: a dataset of "
                                  "about 3.1 GB while 48.2 GB are in use; delete runs or datasets to make room.")
    assert tlcore.check_room(1_000_000_000, used=48_200_000_000) == 48_200_000_000
    with pytest.raises(tlcore.StorageError) as full:  # a size known only while writing, the folder already full
        tlcore.check_room(0, what="a dataset (built-in sample shapes)", used=51_000_000_000)
    assert str(full.value) == ("The data folder may hold at most 50 GB (TL_MAX_DATA_GB). Received: a dataset "
                               "(built-in sample shapes), while 51.0 GB are already in use; delete runs or datasets "
                               "to make room.")


def model_bytes(n: int = 5_000, seed: int = 0) -> bytes:
    """Bytes standing in for an uploaded file (the store reads only their size and digest)."""
    import numpy as np

    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def test_an_upload_past_the_room_left_is_refused_and_nothing_is_written(monkeypatch, data_dir):
    kept = tlcore.load_dataset(make_zip())
    used = folder_size(data_dir)
    monkeypatch.setenv("TL_MAX_DATA_GB", str((used + 4_000) / 1e9))  # room for 4 KB more
    with pytest.raises(tlcore.StorageError, match=r"The data folder may hold at most [\d.]+ KB \(TL_MAX_DATA_GB\). "
                                                  r"Received: an uploaded model file \('big.keras'\) of about "
                                                  r"5.\d KB while [\d.]+ KB are in use"):
        tlcore.store_model_upload(model_bytes(5_000), "big.keras", owner="ann")
    assert folder_size(data_dir) == used and not (data_dir / "uploads").exists()  # nothing written, not even a folder
    assert tlcore.list_uploads().empty
    assert all(path.is_file() for path in kept.files)

    small = tlcore.store_model_upload(model_bytes(3_000), "small.weights.h5", owner="ann")  # fits
    assert small.read_bytes() == model_bytes(3_000) and small.name.endswith(".weights.h5")


def test_the_same_upload_twice_is_stored_once_and_needs_no_room(monkeypatch, data_dir):
    first = tlcore.store_model_upload(model_bytes(seed=1), "mine.keras", owner="ann")
    size = folder_size(data_dir)
    monkeypatch.setenv("TL_MAX_DATA_GB", str(size / 1e9))  # full: the same bytes still need no room
    again = tlcore.store_model_upload(model_bytes(seed=1), "renamed.KERAS", owner="bob")
    assert again == first and folder_size(data_dir) == size
    table = tlcore.list_uploads()
    assert table[["id", "name", "kind", "bytes", "owner"]].values.tolist() == \
        [[first.name, "mine.keras", "model", 5_000, "ann"]]  # the first record is kept
    with pytest.raises(tlcore.StorageError, match="TL_MAX_DATA_GB"):
        tlcore.store_model_upload(model_bytes(seed=2), "other.keras")  # other bytes do need room


def test_a_stored_upload_counts_in_data_usage_and_can_be_deleted(data_dir):
    dataset = tlcore.load_dataset(make_zip())
    empty = tlcore.data_usage()
    assert empty.uploads == 0
    path = tlcore.store_model_upload(model_bytes(8_000, seed=3), "net.h5", owner="ann")
    usage = tlcore.data_usage()
    on_disk = folder_size(data_dir / "uploads")
    assert usage.uploads == on_disk > 8_000 and usage.used == empty.used + on_disk  # the file and its record
    assert usage.datasets == folder_size(dataset.root)
    row = tlcore.list_uploads().iloc[0]
    assert (row["id"], row["kind"], row["bytes"]) == (path.name, "weights", 8_000) and row["created"].year >= 2025

    with pytest.raises(tlcore.ModelFileError, match=r"cannot be deleted; stop the job.*Received: '[0-9a-f]+\.h5', in use"):
        tlcore.delete_upload(path.name, in_use=["imagenet", None, str(path)])
    assert path.is_file()
    freed = tlcore.delete_upload(path.name, in_use=["imagenet", None])
    assert freed == on_disk and not path.exists() and tlcore.list_uploads().empty
    after = tlcore.data_usage()
    assert (after.uploads, after.used) == (0, empty.used)
    assert all(p.is_file() for p in dataset.files)  # only the upload went


@pytest.mark.parametrize("upload_id", ["no-such-upload.keras", "../datasets", "", "../../etc/passwd"])
def test_delete_upload_refuses_anything_but_a_listed_upload(upload_id, data_dir):
    kept = tlcore.store_model_upload(model_bytes(seed=4), "kept.keras")
    with pytest.raises(tlcore.ModelFileError, match=re.escape(
            f"must be one listed by list_uploads (1 stored upload(s)). Received: {upload_id!r}")):
        tlcore.delete_upload(upload_id)
    assert kept.is_file()


def test_uploads_kept_by_older_versions_are_counted_listed_and_deleted(data_dir):
    legacy = data_dir / "weights" / "0123456789abcdef.weights.h5"  # what store_upload wrote before uploads/
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(model_bytes(2_000, seed=5))
    assert tlcore.data_usage().uploads == 2_000
    row = tlcore.list_uploads().iloc[0]
    assert (row["id"], row["name"], row["kind"], row["owner"]) == (
        legacy.name, "an upload stored before records", "weights", "")
    assert tlcore.delete_upload(legacy.name) == 2_000 and not legacy.exists()


@pytest.mark.parametrize("room", [0, 3_000])  # none at all; a few of its images, not all
def test_a_sample_dataset_without_room_is_refused_and_leaves_no_half_folder(room, monkeypatch, data_dir):
    tlcore.store_model_upload(model_bytes(seed=6), "kept.keras")
    used = folder_size(data_dir)
    monkeypatch.setenv("TL_MAX_DATA_GB", str((used + room) / 1e9))
    with pytest.raises(tlcore.StorageError, match=r"The data folder may hold at most [\d.]+ KB \(TL_MAX_DATA_GB\). "
                                                  r"Received: a dataset \(built-in sample shapes, 8 a class at 32 px\) "
                                                  r"that reached "
                                                  r"[\d.]+ KB while writing"):
        tlcore.sample_dataset(per_class=8, size=32, seed=7)
    assert folder_size(data_dir) == used
    datasets = data_dir / "datasets"
    assert not datasets.exists() or not any(datasets.iterdir())  # no .building- folder, no sample
    assert tlcore.list_datasets().empty

    monkeypatch.setenv("TL_MAX_DATA_GB", "50")
    sample = tlcore.sample_dataset(per_class=8, size=32, seed=7)  # with room: stored whole
    assert len(sample) == 32 and all(path.is_file() for path in sample.files)
