"""Hostile model and weights uploads: names that try to leave the uploads folder, links planted in it,
and a disk that refuses the write. Nothing outside the folder is read, listed or deleted; nothing
half-written is kept."""

import errno
import os

import numpy as np
import pytest

import tlcore
from tlcore.core.storage import folder_size


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def some_bytes(n: int = 2_000, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("filename", ["../../escape.keras", "/etc/passwd.keras", "..\\..\\win.keras",
                                      "a\x00b.keras", "x" * 5_000 + ".weights.h5"])
def test_an_uploads_name_never_becomes_a_path(filename, data_dir, tmp_path):
    path = tlcore.store_model_upload(some_bytes(), filename)
    assert path.parent == data_dir / "uploads" and sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    row = tlcore.list_uploads().iloc[0]
    assert len(row["name"]) <= 120 and row["name"].endswith(path.suffix)  # recorded, cut to a readable length


def test_a_link_planted_in_the_uploads_folder_is_neither_listed_nor_deleted(data_dir, tmp_path):
    outside = tmp_path / "precious.keras"
    outside.write_bytes(b"keep me")
    kept = tlcore.store_model_upload(some_bytes(), "mine.keras")
    planted = data_dir / "uploads" / ("f" * 32 + ".keras")
    os.symlink(outside, planted)
    assert tlcore.list_uploads()["id"].tolist() == [kept.name]
    with pytest.raises(tlcore.ModelFileError, match="must be one listed by list_uploads"):
        tlcore.delete_upload(planted.name)
    assert outside.read_bytes() == b"keep me" and planted.is_symlink()


def test_a_disk_that_refuses_the_write_keeps_nothing_half_written(monkeypatch, data_dir):
    from tlcore.core import atomic

    real_open = open

    def full_disk(path, mode="r", *args, **kwargs):
        named = os.readlink(f"/proc/self/fd/{path}") if isinstance(path, int) else str(path)  # a file opened by fd
        handle = real_open(path, mode, *args, **kwargs)
        if "w" in mode and named.startswith(str(data_dir / "uploads")):
            handle.close()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return handle

    with monkeypatch.context() as patched:
        patched.setattr(atomic, "open", full_disk, raising=False)
        with pytest.raises(tlcore.StorageError, match="needs free disk space .* Received: No space left on device"):
            tlcore.store_model_upload(some_bytes(), "mine.keras")
    assert tlcore.list_uploads().empty and folder_size(data_dir) == 0
    assert tlcore.store_model_upload(some_bytes(), "mine.keras").read_bytes() == some_bytes()  # room again: kept
