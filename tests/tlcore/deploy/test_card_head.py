"""The model card names the head as it was built: added convolutional blocks, pooling window, outputs."""

from __future__ import annotations

import dataclasses

import tlcore
from tlcore.deploy.card import ExportInfo, model_card


def _info(**spec_changes) -> ExportInfo:
    spec = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(96, 96, 3), weights=None, **spec_changes)
    return ExportInfo("20261204-211500-abcdef", "MobileNetV2 on cats.zip", "MobileNetV2", ("cat", "dog", "fox"),
                      (96, 96), "crop", "2026-12-04 21:15", {"name": "cats.zip", "counts": {"cat": 4, "dog": 4,
                                                                                              "fox": 4}},
                      dataclasses.asdict(spec), dataclasses.asdict(tlcore.TrainConfig(epochs=3)), None)


def _model_section(card: str) -> list[str]:
    section = card.split("## Model\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line]


def test_a_card_names_the_added_convolutional_blocks_and_the_outputs():
    card = model_card(_info(conv_blocks=2, conv_filters=64, conv_kernel=3, conv_pool=2, pool_size=2), "keras",
                      model_bytes=1234, exported="2026-12-04 22:00 UTC")
    lines = _model_section(card)
    assert ("- Added convolutional blocks in the head, after the base: 2, each a Conv2D of 64 3x3 filters "
            "(padding \"same\", ReLU) and a 2x2 max pooling.") in lines
    assert "- Average pooling window before the dense layers: 2." in lines
    assert "- Output: a softmax layer of 3 units, one for each class." in lines


def test_one_block_without_pooling_reads_in_the_singular():
    lines = _model_section(model_card(_info(conv_blocks=1, conv_filters=32, conv_kernel=5, conv_pool=1), "keras",
                                      model_bytes=1, exported="x"))
    assert ("- Added convolutional block in the head, after the base: 1, each a Conv2D of 32 5x5 filters "
            "(padding \"same\", ReLU).") in lines


def test_a_head_without_blocks_says_nothing_of_them():
    lines = _model_section(model_card(_info(), "tflite-float32", model_bytes=1, exported="x"))
    assert not any("convolutional" in line or "Average pooling" in line for line in lines)
    assert "- Output: a softmax layer of 3 units, one for each class." in lines
