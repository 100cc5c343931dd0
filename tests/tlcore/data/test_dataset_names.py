"""Datasets are called so people can tell them apart: an upload by its file's name, a drawing by its size."""

import json

import pytest
from support import image_bytes, zip_of

import tlcore


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def _zip() -> bytes:
    return zip_of({f"{c}/{i}.png": image_bytes(size=(16, 16), seed=i + 10 * n)
                   for n, c in enumerate(("cats", "dogs")) for i in range(2)})


def test_an_uploaded_zip_is_called_by_its_files_name_even_when_stored_before(data_dir):
    data = _zip()
    assert tlcore.load_dataset(data).name == "uploaded archive"  # no name given: as before
    assert tlcore.load_dataset(data, name="cats and dogs.zip").name == "cats and dogs.zip"
    assert tlcore.load_dataset(data, name="two\nlines\u2028here.zip").name == "two lines here.zip"  # one line
    assert tlcore.load_dataset(data, name="x" * 500).name == "x" * 120


def test_two_drawings_of_the_sample_shapes_read_differently(data_dir):
    small = tlcore.sample_dataset(per_class=2, size=16, seed=1)
    large = tlcore.sample_dataset(per_class=3, size=24, seed=1)
    assert small.name == "built-in sample shapes, 2 a class at 16 px"
    assert large.name == "built-in sample shapes, 3 a class at 24 px"
    names = tlcore.list_datasets().set_index("id")["name"]
    assert names[small.root.name] == small.name and names[large.root.name] == large.name


def test_a_drawing_stored_under_the_old_name_is_listed_with_its_size(data_dir):
    sample = tlcore.sample_dataset(per_class=2, size=16, seed=2)
    record_file = sample.root / "dataset.json"
    record = json.loads(record_file.read_text())
    record["name"] = "built-in sample shapes"  # as an earlier release wrote it
    record_file.write_text(json.dumps(record))
    assert tlcore.list_datasets().set_index("id")["name"][sample.root.name] == (
        "built-in sample shapes, 2 a class at 16 px")
