"""Reading the backbone registry, the ImageNet files' status and the precision setting loads no Keras,
TensorFlow or Ray (issue 18: the sidebar and Home ask these on every visit); building still gets Keras's own."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

ASK = """
import json, sys
import tlcore
rows = {name: (spec.default_size, spec.application, spec.module) for name, spec in tlcore.BACKBONES.items()}
status = tlcore.weights_status("MobileNetV2", include_top=False, input_shape=(128, 128, 3))
tlcore.force_precision("float32")
said = tlcore.describe_backbone("VGG16")
light = sorted(m for m in ("keras", "tensorflow", "ray") if m in sys.modules)
import keras
built_by = tlcore.get_backbone("VGG16").constructor is keras.applications.VGG16
preprocess = tlcore.get_backbone("MobileNetV2").preprocess is keras.applications.mobilenet_v2.preprocess_input
print(json.dumps({"rows": rows, "file": status.file.file_name, "cached": status.cached, "said": said,
                  "light": light, "built_by": built_by, "preprocess": preprocess}))
"""


@pytest.mark.slow
def test_the_registry_and_the_sidebar_questions_load_no_keras(tmp_path):
    env = {**os.environ, "KERAS_HOME": str(tmp_path / "keras"), "TL_DATA_DIR": str(tmp_path / "data"),
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", ASK], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["light"] == []
    assert seen["rows"]["VGG16"] == [224, "VGG16", "vgg16"] and seen["rows"]["InceptionV3"][0] == 299
    assert len(seen["rows"]) == 8
    assert seen["file"] == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_128_no_top.h5"
    assert seen["cached"] is False and seen["said"] == "float32 (forced for this session)"
    assert seen["built_by"] and seen["preprocess"]  # the rows still name Keras's own functions
