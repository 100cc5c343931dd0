"""The first screens answer before anything heavy loads (issue 18): the sidebar every page draws first,
and Home, load neither TensorFlow (Keras) nor Ray. (The password page: tests/tlcore/core/test_access.py.)"""

import json
import os
import subprocess
import sys

import pytest
from support import APP, ROOT

pytestmark = pytest.mark.slow  # each check runs a fresh Python process

HEAVY = ("keras", "tensorflow", "ray")

SIDEBAR_ONLY = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
import streamlit as st
from ui import sidebar
sidebar.render("")
st.write("drawn")
"""

RUN_AND_REPORT = """
import json, sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=120)
at.run()
print(json.dumps({"exception": [str(e.value)[:300] for e in at.exception],
                  "titles": [t.value for t in at.title], "captions": [c.value for c in at.sidebar.caption],
                  "markdown": " ".join(m.value for m in at.markdown),
                  "loaded": sorted(m for m in HEAVY if m in sys.modules)}))
""".replace("HEAVY", repr(HEAVY))


def _run(script_path, tmp_path, **env) -> dict:
    environ = {**os.environ, "TL_DATA_DIR": str(tmp_path / "data"), "KERAS_HOME": str(tmp_path / "keras"), **env}
    environ.pop("TL_PASSWORD", None)
    done = subprocess.run([sys.executable, "-c", RUN_AND_REPORT, str(script_path)], capture_output=True, text=True,
                          env=environ, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_sidebar_loads_neither_tensorflow_nor_ray(tmp_path):
    script = tmp_path / "sidebar_only.py"
    script.write_text(SIDEBAR_ONLY)
    seen = _run(script, tmp_path, TL_DEFAULT_MODEL="random")  # no download check: this test needs no network
    assert seen["exception"] == [], seen["exception"]
    assert any(text.startswith("Inference precision: ") for text in seen["captions"]), seen["captions"]
    assert seen["loaded"] == []


def test_the_sidebar_still_says_what_a_measured_precision_is(tmp_path):
    """The verdicts are read without TensorFlow, under the same machine id as when they were measured."""
    from tlcore.inference import verdicts

    script = tmp_path / "sidebar_only.py"
    script.write_text(SIDEBAR_ONLY)
    data = tmp_path / "data"
    row = verdicts.Calibration("VGG16", (224, 224), 1, "arch", 100.0, 50.0, 0.9999, 1.0, 100.0, 50.0)
    path = data / "precision" / f"{verdicts.machine_id()}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"machine": verdicts.machine(), "calibrations": {row.key: row.__dict__}}))
    if verdicts.bfloat16_units() is False:
        pytest.skip("this CPU has no bfloat16 units: the sidebar says so without reading verdicts")
    seen = _run(script, tmp_path, TL_DEFAULT_MODEL="random", TL_PRECISION="auto")
    assert "Inference precision: bfloat16 (measured 2.0x faster here for one image)" in seen["captions"]
    assert seen["loaded"] == []


def test_the_machine_id_is_the_same_with_tensorflow_loaded(tmp_path):
    probe = ("import json, sys\nfrom tlcore.inference import verdicts\nbefore = verdicts.machine()\n"
             "import tensorflow as tf, keras\n"
             "print(json.dumps([before, tf.__version__, keras.__version__]))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    before, tf_version, keras_version = json.loads(done.stdout.strip().splitlines()[-1])
    assert (before["tensorflow"], before["keras"]) == (tf_version, keras_version)


def test_home_loads_neither_tensorflow_nor_ray(tmp_path):
    seen = _run(APP, tmp_path, TL_DEFAULT_MODEL="random")
    assert seen["exception"] == [] and seen["titles"] == [":material/science: Transfer Lab"]
    assert seen["loaded"] == []


def test_home_shows_the_latest_demo_without_tensorflow_or_ray(tmp_path, trained):
    """A server where the demo has run: Home draws its result (read from the run store, its pair compared)
    and still loads neither TensorFlow nor Ray; only training, or opening a model, does."""
    import tlcore

    dataset, result = trained
    store = tlcore.RunStore(tmp_path / "data" / "runs")
    for role in ("source", "transfer", "scratch"):
        run_id = store.create(result.spec, result.config, dataset.summary(), owner="ada", group="g1", role=role)
        store.finish(run_id, result)
    assert tlcore.latest_demo_group(store) == "g1"
    seen = _run(APP, tmp_path, TL_DEFAULT_MODEL="random")
    assert seen["exception"] == [] and seen["titles"] == [":material/science: Transfer Lab"]
    assert "The latest demo on this server" in seen["markdown"], seen["markdown"]
    assert "**Transfer against scratch**" in seen["markdown"], seen["markdown"]  # the pair, compared
    assert seen["loaded"] == []
