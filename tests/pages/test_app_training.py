"""AppTest: training from the page, stopping, and finding the run again."""

import time

import pytest
from streamlit.testing.v1 import AppTest
from support import APP, image_bytes, open_page

import tlcore

pytestmark = pytest.mark.slow  # trains in Ray workers

SMALL = tlcore.TransferSpec(backbone="VGG16", input_shape=(32, 32, 3), weights=None, hidden_units=16)


def open_train(spec=SMALL) -> AppTest:
    return open_page("../pages/train.py", transfer_spec=spec)


def wait_for_job(at: AppTest, timeout: float = 180) -> tlcore.JobSnapshot:
    from ui.training import job_queue

    job = job_queue().jobs[at.session_state["job_id"]]
    snapshot = job.wait(timeout)
    assert snapshot.finished
    at.run()
    assert not at.exception, at.exception
    return snapshot


def test_train_the_sample_dataset_and_see_curves_and_a_confusion_matrix():
    at = open_train()
    assert "256 images in 4 classes" in " ".join(c.value for c in at.caption)
    at.number_input(key="epochs").set_value(2).run()
    next(b for b in at.button if b.label == "Train").click().run()
    snapshot = wait_for_job(at)
    assert snapshot.state == "done" and len(snapshot.history) == 2
    markdown = " ".join(m.value for m in at.markdown)
    assert "Confusion matrix" in markdown and "Per class" in markdown
    assert len(at.get("vega_lite_chart")) >= 3  # class counts, curves, confusion matrix
    assert at.metric[0].label == "Validation accuracy"
    assert {b.label for b in at.get("download_button")} >= {"Download model (.keras)", "Download history (CSV)"}

    from ui.training import job_queue, run_store  # then someone deletes the run on Runs (another tab, an admin)

    job_queue().delete_run(snapshot.run_id, run_store())
    at.run()
    assert not at.exception and not at.error, (at.exception, at.error)
    assert any(i.value.startswith("This run was deleted on the Runs page") for i in at.info)
    assert "job_id" not in at.session_state


def test_stop_keeps_what_was_learned():
    at = open_train()
    at.number_input(key="epochs").set_value(200).run()
    at.selectbox(key="batch_size").set_value(8).run()
    next(b for b in at.button if b.label == "Train").click().run()
    from ui.training import job_queue

    job = job_queue().jobs[at.session_state["job_id"]]
    deadline = time.monotonic() + 120
    while len(job.snapshot().history) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    at.run()
    next(b for b in at.button if b.label == "Stop").click().run()
    snapshot = wait_for_job(at)
    assert snapshot.state == "stopped" and 1 <= len(snapshot.history) < 200
    assert any("Stopped early" in w.value for w in at.warning)
    assert tlcore.RunStore(tlcore.load_settings().data_dir / "runs").get(snapshot.run_id).model_path.is_file()


def test_a_bad_archive_is_explained():
    at = open_train()
    at.radio(key="dataset_source").set_value("Zip of class folders").run()
    at.file_uploader[0].set_value(("data.zip", b"not a zip at all", "application/zip")).run()
    assert not at.exception
    assert "must be a readable .zip file" in at.error[0].value


@pytest.fixture(scope="module")
def finished_run():
    store = tlcore.RunStore(tlcore.load_settings().data_dir / "runs")
    dataset = tlcore.sample_dataset(per_class=6, size=32, seed=4)
    result = tlcore.train(SMALL, dataset, tlcore.TrainConfig(epochs=1, batch_size=8))
    run_id = store.create(result.spec, result.config, dataset.summary(), name="shapes for the runs page")
    store.finish(run_id, result)
    return run_id


def test_runs_page_lists_reopens_and_links_a_run(finished_run):
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page("../pages/runs.py").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert "shapes for the runs page" in table["name"].tolist()
    at.selectbox(key="opened_run").set_value(finished_run).run()
    assert at.query_params["run"] == finished_run
    assert "Confusion matrix" in " ".join(m.value for m in at.markdown)


def test_predict_with_a_trained_run_uses_its_class_names(finished_run):
    at = open_page("../pages/predict.py", predict_model=finished_run)
    at.file_uploader[0].set_value(("shape.png", image_bytes((40, 40)), "image/png")).run()
    table = at.table[0].value
    assert set(table["label"]) <= {"circle", "square", "triangle", "stripes"} and len(table) == 4


def test_build_from_a_saved_run_is_develop_a_model(finished_run):
    at = open_page("../pages/build.py", base_run=finished_run)
    spec = at.session_state["transfer_spec"]
    assert spec.base_model and spec.base_model.endswith("model.keras") and spec.input_shape == (32, 32, 3)
    assert "32x32 leaves a **1x1x512**" in at.success[0].value
