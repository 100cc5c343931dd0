"""Copies of a dataset on a machine without the server's disk: by digest, under budgets, never half-written."""

import os

import pytest
from support import ended_pid

import tlcore
from tlcore.core.atomic import StorageError
from tlcore.core.errors import DatasetError
from tlcore.data.replica import COPY_PREFIX, Manifest, Receiver, local_copy, manifest, parts


@pytest.fixture
def server_dataset(tmp_path, monkeypatch):
    """A dataset stored in the server's data folder; then the environment is another machine's."""
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "server"))
    dataset = tlcore.sample_dataset(per_class=5, size=40, seed=3)
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "worker"))
    return dataset


def copy(dataset, part_bytes=4_000):
    receiver = Receiver(manifest(dataset))
    receiver.begin()
    for files in parts(dataset, part_bytes):
        receiver.write(files)
    return receiver, receiver.finish()


def leftovers(tmp_path):
    folder = tmp_path / "worker" / "datasets"
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


def test_a_copy_is_the_same_dataset_under_its_digest_in_this_machines_data_folder(server_dataset, tmp_path,
                                                                                 monkeypatch):
    assert local_copy(server_dataset.digest) is None  # nothing here yet
    receiver, copied = copy(server_dataset)
    assert copied.root == tmp_path / "worker" / "datasets" / server_dataset.digest
    assert copied.digest == server_dataset.digest and copied.class_names == server_dataset.class_names
    assert copied.labels == server_dataset.labels
    assert [p.read_bytes() for p in copied.files] == [p.read_bytes() for p in server_dataset.files]
    assert receiver.received == sum(p.stat().st_size for p in server_dataset.files) == manifest(server_dataset).bytes
    assert local_copy(server_dataset.digest).files == copied.files
    assert leftovers(tmp_path) == [server_dataset.digest]
    assert local_copy(server_dataset).root == copied.root  # the server's folder is never read here
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "server"))
    assert local_copy(server_dataset) == server_dataset  # on the server's machine: the dataset itself
    assert len(list(parts(server_dataset, 4_000))) > 3  # it did travel in several parts


def test_a_copy_whose_bytes_differ_from_its_digest_is_not_kept(server_dataset, tmp_path):
    receiver = Receiver(manifest(server_dataset))
    receiver.begin()
    for files in parts(server_dataset):
        receiver.write([data[:-1] + bytes([data[-1] ^ 1]) for data in files])  # one bit flipped per file
    with pytest.raises(DatasetError, match="must have the digest it was sent under"):
        receiver.finish()
    assert leftovers(tmp_path) == [] and local_copy(server_dataset.digest) is None


def test_a_file_of_another_size_or_a_missing_file_stops_the_copy_and_leaves_nothing(server_dataset, tmp_path):
    receiver = Receiver(manifest(server_dataset))
    receiver.begin()
    with pytest.raises(DatasetError, match=r"File 1 of the dataset copy must be [\d,]+ bytes. Received: 3"):
        receiver.write([b"abc"])
    assert leftovers(tmp_path) == []
    receiver = Receiver(manifest(server_dataset))
    receiver.begin()
    receiver.write(next(parts(server_dataset, 1)))  # one file of twenty
    with pytest.raises(DatasetError, match="must hold 20 files. Received: 1"):
        receiver.finish()
    assert leftovers(tmp_path) == []


def test_the_upload_budgets_are_checked_from_the_manifest_before_a_byte_is_written(server_dataset, tmp_path,
                                                                                   monkeypatch):
    described = manifest(server_dataset)
    monkeypatch.setenv("TL_MAX_DATASET_IMAGES", "10")
    with pytest.raises(DatasetError, match="TL_MAX_DATASET_IMAGES"):
        Receiver(described)
    monkeypatch.delenv("TL_MAX_DATASET_IMAGES")
    monkeypatch.setenv("TL_MAX_DATA_GB", str(described.bytes / 2 / 1e9))
    with pytest.raises(StorageError, match="TL_MAX_DATA_GB"):
        Receiver(described).begin()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("change, words", [
    (dict(suffixes=("/../../x",) * 20), "must be .jpg"),
    (dict(labels=(7,) * 20), "a label out of range"),
    (dict(digest="../../etc"), "64 hexadecimal digits"),
    (dict(sizes=(1,)), "one label, extension and size per file"),
])
def test_a_hostile_manifest_is_refused_in_words(server_dataset, change, words):
    fields = {**manifest(server_dataset).__dict__, **change}
    with pytest.raises(DatasetError, match=words.replace(".", r"\.")):
        Receiver(Manifest(**fields))


def test_a_copy_cut_off_by_a_killed_process_is_removed_by_the_next_copy(server_dataset, tmp_path):
    orphan = tmp_path / "worker" / "datasets" / f"{COPY_PREFIX}{ended_pid()}-0a1b"
    (orphan / "0").mkdir(parents=True)
    (orphan / "0" / "000000.png").write_bytes(b"half")
    mine = tmp_path / "worker" / "datasets" / f"{COPY_PREFIX}{os.getpid()}-ffff"  # a live process's: kept
    mine.mkdir()
    copy(server_dataset)
    assert leftovers(tmp_path) == sorted([server_dataset.digest, mine.name])
    receiver = Receiver(manifest(server_dataset))
    receiver.begin()
    receiver.abandon()  # told to stop: its folder goes at once
    assert leftovers(tmp_path) == sorted([server_dataset.digest, mine.name])


def test_a_model_file_is_kept_by_its_sha256_only_when_the_bytes_match(server_dataset, tmp_path):
    import hashlib

    from tlcore.data.replica import keep_file, local_file

    data = b"PK\x03\x04 a saved model" * 100
    digest = hashlib.sha256(data).hexdigest()
    server_path = str(tmp_path / "server" / "runs" / "r1" / "model.keras")
    assert local_file(server_path, digest) is None  # the server's folder is not this machine's
    with pytest.raises(DatasetError, match="must match its sha256"):
        keep_file(data + b"x", digest, ".keras")
    with pytest.raises(DatasetError, match="end in .keras or .h5"):
        keep_file(data, digest, "/../x")
    kept = keep_file(data, digest, ".keras")
    assert kept == str(tmp_path / "worker" / "model-copies" / f"{digest}.keras")
    assert local_file(server_path, digest) == kept and open(kept, "rb").read() == data
