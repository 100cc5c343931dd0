"""Access for a team and what visitors see: the password gate, sign-in, read-only, run owners and
admins; no server paths, no raw exception text, user-supplied names as plain text."""

import json
import os
import sqlite3
import subprocess
import sys

import pytest
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest
from support import APP, RANDOM, image_bytes

import tlcore
from tlcore.core.access import markdown_text, message_text, redact_paths

TRICKY = "**bold** [link](http://x)"
"""A class name that Markdown would turn into bold text and a link."""


def app(**state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["backbone"] = "MobileNetV2"
    at.session_state["weights"] = RANDOM
    for key, value in state.items():
        at.session_state[key] = value
    return at


def text_of(at: AppTest) -> str:
    kinds = ("markdown", "caption", "error", "warning", "info", "success", "title", "subheader")
    return "\n".join(str(e.value) for kind in kinds for e in at.get(kind))


class Clock:
    """The time password tries are counted at, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(tmp_path, monkeypatch) -> Clock:
    """A data folder of its own (no one else's wrong tries) and a clock the test moves."""
    from tlcore.core import tries

    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "data"))
    fake = Clock()
    monkeypatch.setattr(tries, "clock", fake)
    return fake


# The password gate

def enter(at: AppTest, password: str, name: str = "Ann") -> AppTest:
    at.text_input(key="access_name").set_value(name)
    at.text_input(key="access_password").set_value(password)
    return at.button[0].click().run()


@pytest.mark.slow
def test_without_a_password_every_page_opens_at_once():
    at = app()
    at.run()
    assert [box.key for box in at.text_input] == ["visitor_name"]  # no password: only the optional name
    assert at.sidebar.selectbox[0].label == "Backbone"


@pytest.mark.slow
def test_with_tl_password_every_page_asks_first_and_wrong_tries_are_slowed(monkeypatch, clock):
    monkeypatch.setenv("TL_PASSWORD", "correct horse")
    at = app()
    at.query_params["backbone"] = "VGG16"
    at.run()
    assert at.text_input(key="access_password").label == "Password" and not at.sidebar.selectbox  # no page yet
    enter(at, "wrong")
    assert "not the password" in at.error[0].value and "(1 s now)" in at.error[0].value
    waits = [tlcore.try_verdict(None).wait]
    enter(at, "correct horse")  # at once: not even checked
    assert "try again in 1 s" in at.error[0].value and not at.sidebar.selectbox
    for typed in ("correct hors", "Correct horse"):
        clock.advance(waits[-1])
        enter(at, typed)
        assert "not the password" in at.error[0].value
        waits.append(tlcore.try_verdict(None).wait)
    assert waits == [1.0, 2.0, 4.0]  # each wrong try in a row doubles the wait
    assert not at.sidebar.selectbox
    again = app()  # a new session per guess does not start afresh
    again.run()
    enter(again, "correct horse")
    assert "try again in 4 s" in again.error[0].value and not again.sidebar.selectbox
    clock.advance(4)
    enter(at, "correct horse")
    assert not at.exception and not [box for box in at.text_input if box.key == "access_password"]
    assert at.sidebar.selectbox[0].label == "Backbone" and tlcore.try_verdict(None).allowed  # cleared
    at.switch_page("../pages/layers.py").run()  # once per session: other pages open directly
    assert at.title[0].value == "Layers" and not at.exception


@pytest.mark.slow
def test_a_password_in_the_secrets_works_too(clock):
    at = app()
    at.secrets["password"] = "from secrets"
    at.run()
    assert at.text_input(key="access_password")
    enter(at, "from secrets")
    assert at.sidebar.selectbox[0].label == "Backbone" and tlcore.try_verdict(None).allowed


def test_password_checks_are_constant_time_and_delays_are_bounded():
    assert tlcore.check_password("s3cret", "s3cret") and not tlcore.check_password("s3cre", "s3cret")
    assert not tlcore.check_password("", "")  # no password set never lets anyone in by matching
    assert tlcore.check_password("pässwörd", "pässwörd")
    assert [tlcore.wrong_try_delay(n) for n in range(8)] == [0, 1, 2, 4, 8, 16, 16, 16]


def test_wrong_tries_are_limited_per_address_and_in_all_across_sessions(clock, monkeypatch):
    """Issue 23, finding 5: a new session per guess gave 300,000 guesses a day."""
    monkeypatch.setenv("TL_PASSWORD_TRIES_PER_ADDRESS", "5")
    monkeypatch.setenv("TL_PASSWORD_TRIES_PER_HOUR", "12")
    for _ in range(5):
        assert tlcore.try_verdict("10.0.0.1").allowed
        tlcore.record_try("10.0.0.1", right=False)
        clock.advance(20)  # past every doubling wait (16 s at most)
    refused = tlcore.try_verdict("10.0.0.1")
    assert not refused.allowed and round(refused.wait) == 3_600 - 100
    assert "TL_PASSWORD_TRIES_PER_ADDRESS" in refused.reason and "Received: 5 from yours" in refused.reason
    assert tlcore.try_verdict("10.0.0.2").allowed  # another address is not held back by this one
    for n in range(7):
        tlcore.record_try(f"10.0.1.{n}", right=False)
    everyone = tlcore.try_verdict("10.0.0.3")  # 12 wrong tries in the hour, from 8 addresses
    assert not everyone.allowed and "TL_PASSWORD_TRIES_PER_HOUR" in everyone.reason
    clock.advance(3_600 - 100 + 1)  # the oldest try ages out
    assert tlcore.try_verdict("10.0.0.3").allowed and tlcore.try_verdict("10.0.0.1").allowed
    tlcore.record_try("10.0.1.0", right=True)  # a right password clears that address
    assert tlcore.try_verdict("10.0.1.0").allowed


def test_the_password_never_reaches_a_repr_or_a_worker(monkeypatch):
    monkeypatch.setenv("TL_PASSWORD", "hunter2")
    assert tlcore.load_settings().password == "hunter2" and "hunter2" not in repr(tlcore.load_settings())
    from tlcore.training.worker import worker_environment

    assert "TL_PASSWORD" not in worker_environment()


# Sign-in with Streamlit's OIDC login

AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x", "client_id": "x",
        "client_secret": "x", "server_metadata_url": "https://accounts.example.com/.well-known/openid-configuration"}


def test_with_oidc_configured_people_sign_in_instead(monkeypatch):
    monkeypatch.setenv("TL_PASSWORD", "not asked")
    at = app()
    at.secrets["auth"] = AUTH
    at.user = {"is_logged_in": False}
    at.run()
    assert [b.label for b in at.button] == ["Sign in"] and not at.text_input and not at.sidebar.selectbox
    at = app()
    at.secrets["auth"] = AUTH
    at.user = {"is_logged_in": True, "email": "ann@example.com", "name": "Ann"}
    at.run()
    assert at.sidebar.selectbox[0].label == "Backbone"
    assert "Signed in as ann@example" in " ".join(c.value for c in at.sidebar.caption)
    assert any(b.label == "Sign out" for b in at.sidebar.button)


def test_named_providers_get_a_button_each():
    at = app()
    at.secrets["auth"] = {"redirect_uri": AUTH["redirect_uri"], "cookie_secret": "x",
                          "google": {"client_id": "g"}, "microsoft": {"client_id": "m"}}
    at.user = {"is_logged_in": False}
    at.run()
    assert [b.label for b in at.button] == ["Sign in with Google", "Sign in with Microsoft"]


# Read-only: a public demo

@pytest.mark.slow
def test_read_only_predicts_and_explores_but_trains_uploads_and_deletes_nothing(monkeypatch, finished_run):
    monkeypatch.setenv("TL_READ_ONLY", "1")
    at = app()
    at.run()
    assert at.sidebar.radio(key="weights").options == ["ImageNet", "Random (untrained)"]  # no weights upload
    at.switch_page("../pages/predict.py").run()
    assert "uploaded" not in at.selectbox(key="predict_model").options  # no model upload
    at.file_uploader[0].set_value(("photo.png", image_bytes(seed=3), "image/png")).run()
    assert len(at.table[0].value) == 5  # predicting is what the demo is for
    at.switch_page("../pages/train.py").run()
    assert "Training is off" in at.info[0].value
    assert not at.file_uploader and not any(b.label == "Train" for b in at.button) and not at.main.radio
    at.switch_page("../pages/runs.py").run()
    assert not at.exception
    assert not any(e.label.startswith("Delete") for e in at.expander)
    assert not any("Delete" in b.label for b in at.button)
    assert "read-only demo" in text_of(at)


# Owners and admins

@pytest.fixture(scope="module")
def finished_run() -> tlcore.RunRecord:
    """A small run whose classes have names Markdown would format, started by someone else."""
    images = {name: [image_bytes((40, 40), seed=10 * k + i) for i in range(3)]
              for k, name in enumerate((TRICKY, "plain"))}
    dataset = tlcore.load_dataset(images)
    spec = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None, hidden_units=8)
    result = tlcore.train(spec, dataset, tlcore.TrainConfig(epochs=1, batch_size=4, validation_fraction=0.5))
    store = tlcore.RunStore(tlcore.load_settings().data_dir / "runs")
    run_id = store.create(result.spec, result.config, dataset.summary(), name=f"run of {TRICKY}",
                          owner="someone@example.com")
    store.finish(run_id, result)
    return store.get(run_id)


@pytest.mark.slow
def test_runs_record_who_started_them_and_older_runs_still_load(tmp_path, finished_run):
    assert finished_run.owner == "someone@example.com"
    store = tlcore.RunStore(tmp_path)
    run_id = store.create(finished_run.spec, finished_run.config, finished_run.dataset, owner="ann")
    assert store.get(run_id).owner == "ann" and store.list().loc[0, "owner"] == "ann"
    with sqlite3.connect(tmp_path / "index.sqlite") as db:  # an index from before runs had owners
        db.execute("ALTER TABLE runs DROP COLUMN owner")
    config = json.loads((tmp_path / run_id / "config.json").read_text())
    del config["owner"]
    (tmp_path / run_id / "config.json").write_text(json.dumps(config))
    older = tlcore.RunStore(tmp_path)
    assert older.get(run_id).owner == "" and older.list().loc[0, "owner"] == ""
    assert older.get(run_id).status == "running"


@pytest.mark.slow
def test_a_job_records_its_owner(tmp_path, finished_run):
    from tlcore.training.jobs import TrainingJob

    dataset = tlcore.sample_dataset(per_class=8, size=32)
    store = tlcore.RunStore(tmp_path)
    job = TrainingJob(tlcore.JobQueue(), finished_run.spec, dataset, tlcore.TrainConfig(), store, owner="bob")
    assert store.get(job.run_id).owner == "bob"  # recorded when the job is made, before any worker starts


@pytest.mark.slow
def test_can_manage_owners_and_admins(finished_run):
    assert tlcore.can_manage(finished_run, "someone@example.com", "")
    assert not tlcore.can_manage(finished_run, "ann@example.com", "")
    assert tlcore.can_manage(finished_run, "Ann@Example.com ", "bob@example.com, ann@example.com")
    assert not tlcore.can_manage("", "ann", "")  # runs from before owners: admins only
    assert tlcore.can_manage("", "ann", "ann") and not tlcore.can_manage("ann", "", "")


@pytest.mark.slow
def test_train_page_submits_the_job_as_the_person_here(monkeypatch):
    submitted = {}

    def submit(self, spec, dataset, config, store, **kwargs):
        submitted.update(kwargs)
        raise tlcore.ConfigError("Recorded. Received: a test")

    monkeypatch.setattr(tlcore.JobQueue, "submit", submit)
    spec = tlcore.TransferSpec(backbone="VGG16", input_shape=(32, 32, 3), weights=None, hidden_units=8)
    at = app(transfer_spec=spec)
    at.secrets["auth"] = AUTH
    at.user = {"is_logged_in": True, "email": "ann@example.com"}
    at.run()
    at.switch_page("../pages/train.py").run()
    next(b for b in at.button if b.label == "Train").click().run()
    assert submitted.pop("request")  # the click's id (a second click before the page changed is the same)
    assert submitted == {"owner": "ann@example.com"}


def open_run(run: tlcore.RunRecord, email: str, admins: str, monkeypatch) -> AppTest:
    monkeypatch.setenv("TL_ADMINS", admins)
    at = app()
    at.secrets["auth"] = AUTH
    at.user = {"is_logged_in": True, "email": email}
    at.query_params["run"] = run.id
    at.run()
    at.switch_page("../pages/runs.py").run()
    assert not at.exception
    return at


@pytest.mark.slow
def test_only_the_owner_or_an_admin_may_delete_a_run(monkeypatch, finished_run):
    at = open_run(finished_run, "ann@example.com", "", monkeypatch)
    assert not any(e.label == "Delete this run" for e in at.expander)
    assert "Only who started this run (someone@example\\.com) or an admin" in text_of(at)
    assert at.dataframe[0].value.set_index("name").loc[finished_run.name, "started by"] == "someone@example.com"
    at = open_run(finished_run, "someone@example.com", "", monkeypatch)
    assert any(e.label == "Delete this run" for e in at.expander)
    assert at.dataframe[0].value.set_index("name").loc[finished_run.name, "started by"] == "you"
    at = open_run(finished_run, "ann@example.com", "ann@example.com", monkeypatch)
    assert any(e.label == "Delete this run" for e in at.expander)
    assert "Only an admin" not in text_of(at)


# What visitors see

@pytest.mark.slow
def test_the_sidebar_names_the_keras_cache_not_its_path_unless_on_localhost(keras_home, monkeypatch):
    import ui.access

    at = app(backbone="DenseNet121", weights="ImageNet")
    at.context = {"url": "https://lab.example.com/"}
    at.run()
    status = " ".join(c.value for c in at.sidebar.caption)
    assert str(keras_home) not in status
    assert "densenet121_weights_tf_dim_ordering_tf_kernels.h5" not in status  # files too are the operator's
    monkeypatch.setattr(ui.access, "_connection", lambda: ("127.0.0.1", [("host", "localhost:8501")]))
    at = app(backbone="DenseNet121", weights="ImageNet")  # a browser on the server: its connection says so
    at.run()
    status = " ".join(c.value for c in at.sidebar.caption)
    assert str(keras_home) in status and "densenet121_weights_tf_dim_ordering_tf_kernels.h5" in status


@pytest.mark.slow
def test_errors_name_no_server_path(keras_home, monkeypatch):
    import urllib.error

    import tlcore.models.imagenet_files

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tlcore.models.imagenet_files.urllib.request, "urlopen", offline)
    at = app(backbone="DenseNet121", weights="ImageNet")
    at.context = {"url": "https://lab.example.com/predict"}
    at.run()
    at.switch_page("../pages/predict.py").run()
    assert not at.error  # offline ImageNet is said calmly, with no file or folder for a visitor
    assert "cannot download them now" in text_of(at) and str(keras_home) not in text_of(at)
    assert str(tlcore.load_settings().data_dir) not in text_of(at)


def test_redact_paths_keeps_urls_and_file_names():
    places = {"/srv/keras/models": "the server's Keras cache", "/srv/data": "the server's data folder"}
    text = ("Put x.h5 in /srv/keras/models (from https://example.com/a/x.h5). Saving needs room in "
            "/srv/data/runs/1. Received: '/etc/passwd' and /opt/lab/weights.h5, ratio 1/2.")
    assert redact_paths(text, places) == (
        "Put x.h5 in the server's Keras cache (from https://example.com/a/x.h5). Saving needs room in "
        "the server's data folder. Received: 'a folder on the server' and a folder on the server (weights.h5), "
        "ratio 1/2.")


@pytest.mark.slow
def test_a_failed_run_says_what_failed_in_words(finished_run, monkeypatch):
    store = tlcore.RunStore(tlcore.load_settings().data_dir / "runs")
    run_id = store.create(finished_run.spec, finished_run.config, finished_run.dataset)
    store.fail(run_id, "Training failed unexpectedly (KeyError); the details are in the server log.")
    at = app()
    at.query_params["run"] = run_id
    at.run()
    at.switch_page("../pages/runs.py").run()
    assert "This run failed" in at.error[0].value and "details are in the server log" in at.error[0].value


@pytest.mark.slow
def test_a_page_that_breaks_shows_no_exception_text(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret detail /srv/private/thing")

    import ui.models

    monkeypatch.setattr(ui.models, "layer_views", broken)
    at = app()
    at.run()
    at.switch_page("../pages/layers.py").run()
    assert not at.exception
    assert "Something went wrong on this page" in text_of(at), text_of(at)
    assert "secret detail" not in text_of(at) and "RuntimeError" not in text_of(at)


def rendered(markdown: str) -> str:
    return MarkdownIt("commonmark").render(markdown)


def test_names_are_escaped_to_show_literally():
    for name in (TRICKY, "![x](http://x/t.png)", "<b>hi</b>", "$x^2$", ":smile:", "a_b_ www.x.com", "# title"):
        html = rendered(markdown_text(name))
        assert not any(tag in html for tag in ("<strong", "<em", "<a ", "<img", "<b>", "<h1")), (name, html)
        shown = html.removeprefix("<p>").removesuffix("</p>\n").replace("\u200b", "")
        assert shown == name.replace("<", "&lt;").replace(">", "&gt;"), (name, html)
    message = message_text(f"Received: {{'{TRICKY}': 1}} (TL_MAX_ARCHIVE_FILES), a .zip")
    assert "TL_MAX_ARCHIVE_FILES" in message and ".zip" in message and "<strong" not in rendered(message)


@pytest.mark.slow
def test_class_names_show_literally_on_predict_and_runs(finished_run):
    at = app(predict_model=finished_run.id)
    at.run()
    at.switch_page("../pages/predict.py").run()
    assert not at.exception
    labels = at.table[0].value["label"].tolist()
    assert markdown_text(TRICKY) in labels and TRICKY not in labels
    assert markdown_text(TRICKY) in text_of(at) and TRICKY not in text_of(at)  # the model's description
    at.query_params["run"] = finished_run.id
    at.switch_page("../pages/runs.py").run()
    assert not at.exception and TRICKY not in text_of(at)
    assert "**bold**" not in text_of(at) and "[link](" not in text_of(at)


@pytest.mark.slow
def test_class_names_show_literally_on_train():
    spec = tlcore.TransferSpec(backbone="VGG16", input_shape=(32, 32, 3), weights=None, hidden_units=8)
    at = app(transfer_spec=spec)
    at.run()
    at.switch_page("../pages/train.py").run()
    at.radio(key="dataset_source").set_value("Images per class").run()
    at.text_input[0].set_value(f"{TRICKY}, plain").run()
    labels = [u.label for u in at.file_uploader]
    assert labels == [f"Images of {markdown_text(TRICKY)}", "Images of plain"]


PASSWORD_PAGE_ONLY = """
import json, os, sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=60)
at.run()
print(json.dumps({"asked": [box.label for box in at.text_input], "exception": bool(at.exception),
                  "loaded": sorted(m for m in ("keras", "tensorflow", "ray") if m in sys.modules)}))
"""


@pytest.mark.slow
def test_the_password_page_loads_neither_tensorflow_nor_ray(tmp_path):
    """Nothing heavy runs before sign-in: the gate is plain Python (issue 17: the facade is lazy)."""
    env = {**os.environ, "TL_PASSWORD": "correct horse", "TL_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-c", PASSWORD_PAGE_ONLY, APP], capture_output=True, text=True,
                          env=env, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"asked": ["Your name", "Password"], "exception": False, "loaded": []}


# Names with the password, and admins among them (issue 23, finding 8)

def test_a_name_given_with_the_password_is_checked():
    assert tlcore.check_person_name("  Ann Lee ") == "Ann Lee"
    assert tlcore.check_person_name("x" * 40) == "x" * 40 and tlcore.check_person_name("Zoë-Ann (QA)") == "Zoë-Ann (QA)"
    for given, received in (("", "no name"), ("   ", "no name"), (None, "no name"), ("x" * 41, "41 characters"),
                            ("ann\nboss", r"a character that does not print \(U\+000A\)"),
                            ("ann\u200b", r"a character that does not print \(U\+200B\)"),
                            ("a\u202eb", r"a character that does not print \(U\+202E\)")):
        with pytest.raises(tlcore.ConfigError, match=rf"Your name must be 1 to 40 printable characters .*"
                                                     rf"Received: {received}"):
            tlcore.check_person_name(given)


def test_names_are_compared_as_people_type_them():
    assert tlcore.can_manage("ann", " Ann ", "") and tlcore.can_manage("Ann", "ANN", "")
    assert not tlcore.can_manage("ann", "anne", "") and not tlcore.can_manage("ann", " ", "")
    assert tlcore.admin_names(" Boss , ann@Example.com,,") == {"boss", "ann@example.com"}
    assert tlcore.can_manage("someone", "BOSS", "boss")


def test_the_password_form_asks_a_name_first_and_a_bad_one_costs_no_try(monkeypatch, clock):
    monkeypatch.setenv("TL_PASSWORD", "correct horse")
    at = app()
    at.run()
    assert [box.label for box in at.text_input] == ["Your name", "Password"]
    enter(at, "correct horse", name="  ")
    assert "Your name must be 1 to 40 printable characters" in at.error[0].value
    assert not at.sidebar.selectbox and tlcore.try_verdict(None).wait == 0  # the password was not even tried
    enter(at, "correct horse", name=" Ann Lee ")
    assert at.sidebar.selectbox[0].label == "Backbone" and at.session_state["_access_visitor"] == "Ann Lee"
    assert "Here as Ann Lee, a name given with the shared password" in " ".join(c.value for c in at.sidebar.caption)


def open_run_with_password(run: tlcore.RunRecord, name: str, admins: str, monkeypatch) -> AppTest:
    monkeypatch.setenv("TL_PASSWORD", "correct horse")
    monkeypatch.setenv("TL_ADMINS", admins)
    at = app()
    at.query_params["run"] = run.id
    at.run()
    enter(at, "correct horse", name=name)
    at.switch_page("../pages/runs.py").run()
    assert not at.exception
    return at


def test_an_admin_name_typed_with_the_password_manages_everyones_runs(monkeypatch, finished_run):
    """Password sessions were named ``session <8 hex>``: no TL_ADMINS entry could match them."""
    at = open_run_with_password(finished_run, "Ann", "boss", monkeypatch)
    assert not any(e.label == "Delete this run" for e in at.expander)
    assert "Only who started this run (someone@example\\.com) or an admin" in text_of(at)
    at = open_run_with_password(finished_run, " Boss", "boss", monkeypatch)
    assert any(e.label == "Delete this run" for e in at.expander)
    assert "(admin)" in " ".join(c.value for c in at.sidebar.caption)
    at = open_run_with_password(finished_run, "Someone@Example.com", "", monkeypatch)  # its starter, again
    assert any(e.label == "Delete this run" for e in at.expander)
    assert at.dataframe[0].value.set_index("name").loc[finished_run.name, "started by"] == "you"


def test_is_local_client_goes_by_the_connection_never_by_what_the_browser_says(monkeypatch):
    assert tlcore.is_local_client("127.0.0.1", {"host": "lab.example.com"})  # the Host header does not count
    assert tlcore.is_local_client("::1") and tlcore.is_local_client("::ffff:127.0.0.1")
    assert not tlcore.is_local_client("203.0.113.9", {"Host": "localhost:8501", "Origin": "http://localhost:8501"})
    for header in ("X-Forwarded-For", "x-real-ip", "Forwarded", "X-Forwarded-Host"):  # a proxy on the server
        assert not tlcore.is_local_client("127.0.0.1", [("Host", "localhost"), (header, "203.0.113.9")]), header
    assert not tlcore.is_local_client(None) and not tlcore.is_local_client("localhost")  # unknown: not local
    assert not tlcore.is_local_client("127.0.0.1", show_paths=False)
    monkeypatch.setenv("TL_SHOW_SERVER_PATHS", "0")
    assert not tlcore.is_local_client("127.0.0.1")
