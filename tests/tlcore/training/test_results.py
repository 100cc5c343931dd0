"""RunResult: a run's result.json as a typed value, read back from this release's files and earlier ones."""

import dataclasses
import json
import math

import pytest

import tlcore

WRITTEN_BEFORE = {
    # what RunStore.finish wrote before RunResult (13 keys), for a 3-class VGG16 run stopped after 2 epochs
    "class_names": ["circle", "square", "triangle"],
    "accuracy": 0.5, "loss": 1.0794,
    "confusion": [[2, 0, 0], [1, 1, 0], [2, 0, 0]],
    "precision": [0.4, 1.0, 0.0], "recall": [1.0, 0.5, 0.0],
    "validation_indices": [0, 3, 7, 9, 12, 15],
    "confidently_wrong": [{"index": 12, "true": "triangle", "predicted": "circle", "confidence": 0.4121},
                          {"index": 7, "true": "square", "predicted": "circle", "confidence": 0.3712},
                          {"index": 15, "true": "triangle", "predicted": "circle", "confidence": 0.3508}],
    "stopped": True, "feature_cache": True, "seconds": 12.75,
    "recalibrated_batchnorm": 0,
    "precision_check": {"images": 6, "top1_agreement": 1.0, "max_abs_error": 0.0031, "min_cosine": 0.99998,
                        "mean_cosine": 0.99999},
}

FIRST_RELEASE = {
    # the first release's result.json: no confidently wrong images, batch-norm note or precision check
    "class_names": ["a", "b"], "accuracy": 1.0, "loss": 0.12, "confusion": [[1, 0], [0, 1]],
    "precision": [1.0, 1.0], "recall": [1.0, 1.0], "validation_indices": [1, 2],
    "stopped": False, "feature_cache": False, "seconds": 3.5,
}


def test_a_result_written_before_reads_into_typed_fields():
    result = tlcore.RunResult.from_json(WRITTEN_BEFORE)
    assert result.class_names == ("circle", "square", "triangle")
    assert (result.accuracy, result.loss, result.seconds) == (0.5, 1.0794, 12.75)
    assert result.confusion == ((2, 0, 0), (1, 1, 0), (2, 0, 0))
    assert result.precision == (0.4, 1.0, 0.0) and result.recall == (1.0, 0.5, 0.0)
    assert result.validation_indices == (0, 3, 7, 9, 12, 15)
    assert result.confidently_wrong[0] == tlcore.WrongPrediction(12, "triangle", "circle", 0.4121)
    assert [row.index for row in result.confidently_wrong] == [12, 7, 15]
    assert result.stopped and result.feature_cache and result.recalibrated_batchnorm == 0
    assert result.precision_check == tlcore.PrecisionCheck(6, 1.0, 0.0031, 0.99998, 0.99999)
    assert tlcore.precision_for_run(result.precision_check) == "auto"
    assert result.to_json() == WRITTEN_BEFORE  # the same file layout, key for key
    assert list(result.per_class()["class"]) == ["circle", "square", "triangle"]


def test_keys_an_earlier_release_did_not_write_get_their_defaults():
    result = tlcore.RunResult.from_json(FIRST_RELEASE)
    assert result.confidently_wrong == () and result.recalibrated_batchnorm == 0
    assert result.precision_check is None and tlcore.precision_for_run(result.precision_check) == "float32"
    assert (result.accuracy, result.seconds, result.stopped) == (1.0, 3.5, False)
    bare = tlcore.RunResult.from_json({"class_names": ["a", "b"]})
    assert math.isnan(bare.accuracy) and math.isnan(bare.loss) and bare.seconds is None
    assert bare.confusion == () and bare.validation_indices == ()


def test_a_failed_precision_check_predicts_in_float32():
    failing = {**WRITTEN_BEFORE["precision_check"], "top1_agreement": 0.9}
    result = tlcore.RunResult.from_json({**WRITTEN_BEFORE, "precision_check": failing})
    assert tlcore.precision_for_run(result.precision_check) == "float32"
    too_far = dataclasses.replace(result.precision_check, top1_agreement=1.0, max_abs_error=0.2)
    assert tlcore.precision_for_run(too_far) == "float32"


def test_the_store_reads_an_old_result_file_into_a_run_result(tmp_path):
    store = tlcore.RunStore(tmp_path)
    spec = tlcore.TransferSpec(backbone="VGG16", input_shape=(32, 32, 3), weights=None, num_classes=3)
    run_id = store.create(spec, tlcore.TrainConfig(), {"name": "shapes", "classes": ["circle", "square", "triangle"]})
    assert store.get(run_id).result is None  # not finished
    (tmp_path / run_id / "result.json").write_text(json.dumps(WRITTEN_BEFORE, indent=2))
    record = store.get(run_id)
    assert record.result == tlcore.RunResult.from_json(WRITTEN_BEFORE)
    assert record.result.confidently_wrong[1].predicted == "circle"


def test_a_result_is_read_by_attributes_only_and_round_trips_its_json():
    result = tlcore.RunResult.from_json(WRITTEN_BEFORE)
    assert result.accuracy == 0.5 and [list(row) for row in result.confusion] == WRITTEN_BEFORE["confusion"]
    assert result.validation_indices == (0, 3, 7, 9, 12, 15)
    assert tlcore.RunResult.from_json(result.to_json()) == result
    with pytest.raises(TypeError):
        result["accuracy"]  # no dict access: a typo is an AttributeError, not a silent None
