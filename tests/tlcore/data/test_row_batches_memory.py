"""Cached rows read in memory by TensorFlow alone, or from a memory-mapped file a block at a time."""

import numpy as np
import pytest

from tlcore.data import pipeline
from tlcore.data.pipeline import row_batches


class CountingArray(np.ndarray):
    """An in-memory array that counts the reads Python makes of it."""

    reads = 0

    def __getitem__(self, item):
        CountingArray.reads += 1
        return super().__getitem__(item)


class CountingMap(np.memmap):
    """A memory-mapped file that counts its reads and the most rows one read took."""

    reads, most = 0, 0

    def __getitem__(self, item):
        picked = super().__getitem__(item)
        if isinstance(item, np.ndarray):
            CountingMap.reads += 1
            CountingMap.most = max(CountingMap.most, len(picked))
        return picked


@pytest.fixture
def stored(tmp_path):
    rows = np.arange(300 * 4, dtype="float32").reshape(300, 4)
    np.save(tmp_path / "rows.npy", rows)
    return rows, np.load(tmp_path / "rows.npy", mmap_mode="r")


def batches(data):
    return [(x.numpy(), y.numpy()) for x, y in data]


def test_rows_in_memory_and_mapped_give_the_same_batches_in_the_same_seeded_order(stored):
    rows, mapped = stored
    labels = np.arange(300) % 7
    indices = np.random.default_rng(0).permutation(300)[:250]
    in_memory = batches(row_batches(rows, labels, indices, batch_size=16, seed=5))
    from_disk = batches(row_batches(mapped, labels, indices, batch_size=16, seed=5))
    assert [len(y) for _, y in in_memory] == [16] * 15 + [10]
    for (xa, ya), (xb, yb) in zip(in_memory, from_disk, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    order = np.concatenate([x[:, 0] for x, _ in in_memory]) // 4
    assert sorted(order.astype(int)) == sorted(indices) and list(order) != list(indices)  # shuffled, all there
    np.testing.assert_array_equal(np.concatenate([y for _, y in in_memory]), labels[order.astype(int)])


def test_rows_in_memory_are_read_once_not_once_a_batch(stored):
    rows, _ = stored
    counted = rows.view(CountingArray)
    CountingArray.reads = 0
    data = row_batches(counted, np.zeros(300, np.int64), np.arange(300), batch_size=8, seed=1)
    built = CountingArray.reads
    assert len(batches(data)) == 38 and len(batches(data)) == 38  # two epochs
    assert built == 1 and CountingArray.reads == built


def test_a_mapped_file_is_read_a_block_of_batches_at_a_time(stored, monkeypatch):
    _, mapped = stored
    monkeypatch.setattr(pipeline, "READ_BYTES", 4 * 4 * 8 * 5)  # five batches of 8 rows of 4 floats
    counted = mapped.view(CountingMap)
    CountingMap.reads = CountingMap.most = 0
    data = batches(row_batches(counted, np.zeros(300, np.int64), np.arange(300), batch_size=8, seed=1))
    assert len(data) == 38 and sum(len(y) for _, y in data) == 300
    assert CountingMap.reads == 8 and CountingMap.most == 40  # ceil(300 / 40) reads, never more than a block
