"""Issue 23, round 3: who may stop a demo, links shown literally, server paths by the connection,
read-only exports, Ray's token file, and a crafted ``class_name``."""

import json
import os
import stat
import subprocess
import sys
import zipfile

import pytest
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest
from support import APP, RANDOM, tiny_demo_recipe

import tlcore

TINY = tiny_demo_recipe()


def app(**params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["backbone"] = "VGG16"
    at.session_state["weights"] = RANDOM
    for key, value in params.items():
        at.query_params[key] = value
    return at


def signed_in(name: str, **params: str) -> AppTest:
    """The app with the shared password (TL_PASSWORD set by the test), entered under ``name``."""
    at = app(**params)
    at.run()
    at.text_input(key="access_name").set_value(name)
    at.text_input(key="access_password").set_value("correct horse")
    at.button[0].click().run()
    assert not at.exception and at.session_state["_access_visitor"] == name.strip()
    return at


def rendered(markdown: str) -> str:
    return MarkdownIt("commonmark").render(markdown)


# 12 (1): a ?demo= link shows a running demo; only its starter or an admin may stop it

@pytest.fixture
def running_demo(monkeypatch):
    """Ann's demo, waiting in a line where nothing starts (no worker, no Ray), held by the app's registry."""
    from ui import training
    from ui.demo import demo_registry

    monkeypatch.setenv("TL_PASSWORD", "correct horse")
    demo = demo_registry().start(tlcore.JobQueue(max_running=0), training.run_store(), owner="Ann", recipe=TINY)
    yield demo
    demo.stop()
    demo.wait(30)


def stop_buttons(at: AppTest) -> list:
    return [button for button in at.button if button.label == "Stop the demo"]


def test_a_demo_link_lets_others_watch_but_only_its_starter_or_an_admin_stop_it(running_demo, monkeypatch):
    monkeypatch.setenv("TL_ADMINS", "boss")
    other = signed_in("bob", demo=running_demo.group)
    assert "Step 1 of 2" in other.info[0].value  # the link shows the demo, live
    assert not stop_buttons(other)
    assert any("Only who started this demo (Ann) or an admin (TL_ADMINS) can stop it." in caption.value
               for caption in other.caption)
    assert stop_buttons(signed_in("Boss", demo=running_demo.group))  # an admin may
    starter = signed_in("ann ", demo=running_demo.group)  # its starter, after a reload (the name again)
    stop_buttons(starter)[0].click().run()
    assert running_demo.wait(30).stage == "failed"  # stopped: the source left the line untrained


# 12 (2): a link's value is shown as typed, never as Markdown

CRAFTED = ["[sign in again](http://evil)", "x` [sign in again](http://evil) `y", "``[a](http://evil)``",
           "ok\n# Heading\n[sign in](http://evil)", "<img src=x onerror=alert(1)>", ":material/lock: **bold**"]


@pytest.mark.parametrize("value", CRAFTED)
def test_code_shows_any_value_literally(value):
    from ui.state import code

    html = rendered(code(value))
    assert not any(tag in html for tag in ("<a ", "<img", "<h1", "<strong", "<em")), html
    assert html.count("<code>") == 1 and "\n" not in code(value)


def test_a_crafted_link_value_shows_as_text_not_a_link():
    at = app(demo="x` [sign in again](http://evil) `y")
    at.run()
    assert not at.exception
    notice = at.toast[0].value
    assert "in this link was not used" in notice and "`demo` must be the id of a develop-a-model demo" in notice
    html = rendered(notice)
    assert "<a " not in html and "[sign in again](http://evil)" in html  # the characters, as code
    assert "demo" not in at.query_params


# 12 (3): server paths follow the connection, not the URL the browser reports

def test_a_browser_that_claims_localhost_sees_no_server_path(keras_home, monkeypatch):
    import ui.access

    monkeypatch.setattr(ui.access, "_connection", lambda: ("203.0.113.9", [("host", "localhost:8501")]))
    at = app()
    at.session_state["backbone"], at.session_state["weights"] = "DenseNet121", "ImageNet"
    at.context = {"url": "http://localhost:8501/"}  # set by the client: it does not count
    at.run()
    status = " ".join(caption.value for caption in at.sidebar.caption)
    assert "ImageNet weights" in status and str(keras_home) not in status
    assert ".h5" not in status  # file names are the operator's too
    monkeypatch.setattr(ui.access, "_connection",  # a proxy on the server, passing someone else's request on
                        lambda: ("127.0.0.1", [("host", "lab.example.com"), ("x-forwarded-for", "203.0.113.9")]))
    at.run()
    assert str(keras_home) not in " ".join(caption.value for caption in at.sidebar.caption)


# 12 (4): a read-only demo builds no exports

def _run_downloads(folder: str) -> None:
    import types
    from pathlib import Path

    from ui.run_view import _download_model, _exports

    record = types.SimpleNamespace(id="run1", folder=Path(folder))
    _download_model(record)
    _exports(record)


def test_a_read_only_demo_offers_only_exports_already_built(tmp_path, monkeypatch):
    monkeypatch.setenv("TL_READ_ONLY", "1")
    built = tmp_path / "exports" / "tflite-float32.zip"
    built.parent.mkdir()
    built.write_bytes(b"PK\x05\x06" + bytes(18))
    at = AppTest.from_function(_run_downloads, kwargs={"folder": str(tmp_path)}, default_timeout=60).run()
    assert not at.exception
    assert [button.label for button in at.download_button] == ["TFLite float32 (22 bytes)"]
    refused = [button for button in at.button if button.disabled]
    assert {button.label for button in refused} == {"Download model (.keras)", "Keras (.keras, no optimizer state)",
                                                    "TFLite float16 (half-size weights)",
                                                    "TFLite int8 (dynamic-range quantized)", "SavedModel (TF Serving)"}
    assert all("read-only demo (TL_READ_ONLY)" in button.help for button in refused)
    assert any("only files already made here can be downloaded" in caption.value for caption in at.caption)
    assert sorted(p.name for p in built.parent.iterdir()) == ["tflite-float32.zip"]  # nothing built
    monkeypatch.setenv("TL_READ_ONLY", "0")
    at = AppTest.from_function(_run_downloads, kwargs={"folder": str(tmp_path)}, default_timeout=60).run()
    assert len(at.download_button) == 6 and not any(button.disabled for button in at.button)


# 12 (5): Ray's token file is readable by its owner only

def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def home(tmp_path, monkeypatch):
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_token_files_found_are_made_0600(home, monkeypatch):
    from tlcore.training import worker

    default = home / ".ray" / "auth_token"
    default.parent.mkdir()
    default.write_text("a" * 64)
    default.chmod(0o644)  # as Ray 2.60 writes it
    named = home / "cluster-token"
    named.write_text("b" * 64)
    named.chmod(0o644)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(named))
    assert worker.protect_token_files() == [named, default]
    assert (mode(default), mode(named)) == (0o600, 0o600) and default.read_text() == "a" * 64
    assert worker.protect_token_files() == []


def test_a_local_token_is_written_0600_before_ray_would_write_it(home, monkeypatch):
    from tlcore.training import worker

    worker._ensure_local_token()
    token = home / ".ray" / "auth_token"
    assert mode(token) == 0o600 and len(token.read_text()) == 64 and int(token.read_text(), 16) >= 0
    written = token.read_text()
    worker._ensure_local_token()
    assert token.read_text() == written  # never replaced
    token.unlink()
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    worker._ensure_local_token()
    assert not token.exists()  # no token auth asked: none written


START_RAY = """
import os, stat
import tlcore
from tlcore.training.worker import connect, ray_module
connect()
path = os.path.expanduser("~/.ray/auth_token")
print(oct(stat.S_IMODE(os.stat(path).st_mode)), ray_module().is_initialized())
ray_module().shutdown()
"""


@pytest.mark.slow
def test_a_local_ray_started_by_the_app_leaves_its_token_0600(tmp_path):
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("RAY_AUTH", "RAY_ADDRESS", "TL_RAY_ADDRESS"))}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(tlcore.__path__[0].rsplit("/", 1)[0]))
    done = subprocess.run([sys.executable, "-c", START_RAY], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-2:] == ["0o600", "True"], done.stdout


# 12 (7): a crafted class_name is refused in words

@pytest.mark.parametrize("node, received", [
    ({"class_name": ["Dense"], "config": {}}, "class_name of type list"),
    ({"class_name": {"x": 1}, "module": "keras.layers"}, "class_name of type dict"),
    ({"class_name": "Dense", "module": ["keras.layers"]}, "module of type list"),
    ({"class_name": "Dense", "module": "keras.layers", "registered_name": 3}, "registered_name of type int"),
])
def test_a_config_naming_an_object_with_other_than_text_is_refused(node, received):
    with pytest.raises(tlcore.ModelFileError, match=rf"must name each object with text.*Received: {received}"):
        tlcore.check_model_config({"class_name": "Functional", "module": "keras", "config": {"layers": [node]}})


def test_a_keras_file_whose_class_name_is_a_list_is_refused_as_a_model_file_error(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    path = tmp_path / "good.keras"
    model.save(path)
    crafted = tmp_path / "crafted.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(crafted, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "config.json":
                config = json.loads(data)
                config["config"]["layers"][-1]["class_name"] = ["Dense"]
                data = json.dumps(config).encode()
            target.writestr(info.filename, data)
    with pytest.raises(tlcore.ModelFileError, match="Received: class_name of type list"):
        tlcore.load_model_file(crafted)
