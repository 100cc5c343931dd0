"""Every artefact Transfer Lab writes for people to run or read, written with hostile names.

A class, file, folder, run or dataset name may hold line separators that Python does not end a
line on but editors and ``str.splitlines`` do (U+2028, U+2029, U+0085, \\x0b, \\x0c, \\x1c-\\x1e),
newlines, quotes, ``\"\"\"``, backslashes, ``#``, Markdown and format braces. Each name below that
could start a line carries a payload, ``open('PWNED', 'w')``: the programs (.py), their notebooks
(.ipynb, run cell by cell in one namespace as a person stepping through them would) and an export's
``predict.py`` run in ONE fresh process without tlcore, each in its own folder, and the payload's
file must not appear while the artefact still does its work. ``labels.txt`` must give the names back
one a line (escaped: ``access.printable``), and ``MODEL_CARD.md`` must keep every name on its line.
"""

import ast
import json
import os
import subprocess
import sys
import textwrap

import nbformat
import numpy as np
import pytest
from PIL import Image

import tlcore
from tlcore.core.access import markdown_text, printable
from tlcore.deploy import card
from tlcore.deploy.formats import save_without_optimizer
from tlcore.explain import code

MARKER = "PWNED"
PAYLOAD = f"open('{MARKER}', 'w').close()"
SEPARATORS = ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\n", "\r"]
NAMES = [  # each is a class name, a file name (with an ending) and a folder name: no "/" and no NUL
    *[f"cat{i}{sep}# 9. step{sep}{PAYLOAD}{sep}#" for i, sep in enumerate(SEPARATORS)],
    'say "hi" and """ and \\ back\\',
    "# 9. hash",
    "[link](x.html) **bold** {braces} {0} `tick`",
    "\u202eevil\u200b",
    "caf\u00e9 \u732b \U0001f600",
    "tab\tend ",
]
RUN_ID = f'20260101-120000-abcdef"""\n{PAYLOAD}\n"""'
RUN_NAME = f"run\u2028# 9. x\u2028{PAYLOAD}\n# [link](http://x)"
DATASET = "data\x85set\n# {0} [x](y)"
SIZE = 32  # the saved classifier's input

RUNNER = textwrap.dedent('''
    """Run each artefact in this fresh process, in its own folder, and report what happened."""
    import contextlib, importlib.util, io, json, os, runpy, sys, time, traceback
    assert importlib.util.find_spec("tlcore") is None, "the artefacts must run without tlcore"
    import keras
    import nbformat

    def run(source, name, namespace):
        exec(compile(source, name, "exec"), namespace)

    cases, results, report = json.load(open(sys.argv[1])), {}, sys.argv[2]
    for case in cases:
        os.chdir(case["folder"])
        started = time.perf_counter()
        keras.backend.clear_session()
        printed, namespace, errors = io.StringIO(), {"__name__": "__main__"}, []
        with contextlib.redirect_stdout(printed):
            if case["kind"] == "notebook":  # cell by cell, going on after an error, as a person would
                notebook = nbformat.read(case["path"], as_version=4)
                cells = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
                for index, source in enumerate(cells):
                    try:
                        run(source, f"cell {index + 1}", namespace)
                    except BaseException:
                        errors.append(f"cell {index + 1}:\\n" + traceback.format_exc(limit=3))
            else:
                sys.argv = [case["path"], *case.get("argv", [])]
                try:
                    namespace = runpy.run_path(case["path"], run_name="__main__")
                except BaseException:
                    errors.append(traceback.format_exc(limit=3))
        results[case["name"]] = {"errors": errors, "printed": printed.getvalue()[-6000:],
                                 "marker": os.path.exists("PWNED"),
                                 "labels": list(namespace.get("LABELS", [])),
                                 "seconds": round(time.perf_counter() - started, 1)}
    json.dump(results, open(report, "w"))
''')


def _image(path, size, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, "PNG")


def _info(class_names, *, run_id=RUN_ID, name=RUN_NAME, dataset=DATASET):
    counts = {n: 2 for n in class_names}
    return card.ExportInfo(
        run_id, name, "MobileNetV2", tuple(class_names), (SIZE, SIZE), "crop", "2026-01-01 12:00",
        {"name": dataset, "counts": counts, "images": 2 * len(class_names)},
        {"weights": None, "pooling": "avg", "hidden_units": 0, "dropout": 0.2, "trainable_from": None},
        {"epochs": 1, "batch_size": 8, "optimizer": "adam", "learning_rate": 0.001, "validation_fraction": 0.2,
         "seed": 0, "augment": False},
        tlcore.RunResult.from_json({"accuracy": 0.5, "loss": 1.0, "class_names": list(class_names),
                                    "precision": [0.5] * len(class_names), "recall": [0.5] * len(class_names),
                                    "validation_indices": [0, 1]}))


def _steps(program):
    return sum(1 for line in program.split("\n") if line.startswith("# ") and line[2:3].isdigit())


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """Write every artefact with the hostile names, run them all in one fresh process, and its report."""
    root = tmp_path_factory.mktemp("artefacts")
    classifier = tlcore.build_transfer_model(tlcore.TransferSpec(
        backbone="MobileNetV2", input_shape=(SIZE, SIZE, 3), weights=None, hidden_units=0, conv_blocks=0,
        num_classes=len(NAMES)))
    programs = {
        "predict": code.prediction_program("MobileNetV2", weights=None, model_file=NAMES[0] + ".keras",
                                           class_names=NAMES, image=NAMES[1] + ".png", k=3),
        "features": code.feature_program("MobileNetV2", weights=None, images=[n + ".png" for n in NAMES]),
        "train": code.transfer_program(
            tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(SIZE, SIZE, 3), weights=None, hidden_units=0),
            tlcore.TrainConfig(epochs=1, batch_size=16, validation_fraction=0.0), weights=None, data_dir=NAMES[0]),
    }
    cases = []
    for what, program in programs.items():
        for kind in ("program", "notebook"):
            folder = root / f"{what}-{kind}"
            folder.mkdir()
            if what == "predict":
                classifier.save(folder / (NAMES[0] + ".keras"))
                _image(folder / (NAMES[1] + ".png"), (45, 30), 1)
            elif what == "features":
                for seed, name in enumerate(NAMES):
                    _image(folder / (name + ".png"), (40 + seed, 30), seed)
            else:
                for c, name in enumerate(NAMES):
                    (folder / NAMES[0] / name).mkdir(parents=True)
                    for i in range(2):
                        _image(folder / NAMES[0] / name / f"{i}.png", (36, 34), 10 * c + i)
            if kind == "program":
                path = folder / f"{what}.py"
                path.write_text(program, encoding="utf-8")
            else:
                path = folder / f"{what}.ipynb"
                path.write_bytes(code.as_notebook(program))
            cases.append(dict(name=f"{what}-{kind}", kind="notebook" if kind == "notebook" else "script",
                              path=str(path), folder=str(folder)))
    export = root / "export"
    export.mkdir()
    info = _info(NAMES)
    texts = {card.LABELS: card.labels_text(NAMES), card.CARD: card.model_card(info, "keras", model_bytes=1),
             card.EXAMPLE: card.example_script(info, "keras")}
    for name, text in texts.items():
        (export / name).write_text(text, encoding="utf-8")
    save_without_optimizer(classifier, export / "model.keras")
    _image(export / "photo.png", (45, 30), 7)
    cases.append(dict(name="predict.py", kind="script", path=str(export / card.EXAMPLE), folder=str(export),
                      argv=["photo.png"]))
    (root / "cases.json").write_text(json.dumps(cases))
    (root / "runner.py").write_text(RUNNER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "TL_"))}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-I", str(root / "runner.py"), str(root / "cases.json"),
                           str(root / "results.json")], cwd=root, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((root / "results.json").read_text())
    print("\n" + ", ".join(f"{name} {result['seconds']} s" for name, result in results.items()))
    return dict(results=results, programs=programs, texts=texts,
                info=info, root=root)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["predict-program", "predict-notebook", "features-program", "features-notebook",
                                  "train-program", "train-notebook", "predict.py"])
def test_no_name_runs_its_code_and_the_artefact_still_works(ran, case):
    result = ran["results"][case]
    assert not result["marker"], f"{case} ran the payload hidden in a name"
    assert not result["errors"], f"{case} failed:\n" + "\n".join(result["errors"])
    printed = result["printed"]
    if case.startswith("predict-"):
        assert printed.startswith("1. ") and any(f"{rank}. {name}: " in printed for rank in (1, 2, 3) for name in NAMES)
    elif case.startswith("features-"):
        assert f"({len(NAMES)}, 1280)" in printed and f"{NAMES[-1]}.png: (" in printed
    elif case.startswith("train-"):
        assert "accuracy" in printed
        folder = ran["root"] / case
        assert any(folder.glob("*.keras"))  # trained and saved
    else:
        assert result["labels"] == NAMES  # predict.py reads labels.txt back exactly
        assert printed.startswith("photo.png\n") and printed.count("%") == 5


@pytest.mark.slow
@pytest.mark.parametrize("what", ["predict", "features", "train"])
def test_a_notebook_has_one_cell_per_step_whatever_the_names(ran, what):
    program = ran["programs"][what]
    notebook = nbformat.reads((ran["root"] / f"{what}-notebook" / f"{what}.ipynb").read_text(), as_version=4)
    assert len(notebook.cells) == 2 + _steps(program)  # the title, the imports, one cell per numbered step
    assert [cell.cell_type for cell in notebook.cells] == ["markdown"] + ["code"] * (1 + _steps(program))
    assert "\n\n".join(cell.source for cell in notebook.cells[1:]) == "\n".join(program.split("\n")[1:]).strip()


@pytest.mark.parametrize("what", ["predict", "features", "train"])
def test_a_program_holds_no_raw_line_separator(what):
    program = {
        "predict": lambda: code.prediction_program("MobileNetV2", weights=None, model_file=NAMES[0] + ".keras",
                                                   class_names=NAMES, image=NAMES[1] + ".png"),
        "features": lambda: code.feature_program("MobileNetV2", weights=None, images=[n + ".png" for n in NAMES]),
        "train": lambda: code.transfer_program(tlcore.TransferSpec(backbone="VGG16", input_shape=(32, 32, 3)),
                                               tlcore.TrainConfig(), data_dir=NAMES[0]),
    }[what]()
    lines = program.split("\n")
    assert all(line.isprintable() for line in lines), [line for line in lines if not line.isprintable()][:3]
    assert len(program.splitlines()) == len(lines) - 1
    strings = {node.value for node in ast.walk(ast.parse(program)) if isinstance(node, ast.Constant)}
    used = NAMES if what != "train" else NAMES[:1]
    assert all(any(name in s for s in strings if isinstance(s, str)) for name in used)


def test_labels_txt_gives_the_names_back_one_a_line():
    text = card.labels_text(NAMES)
    assert text.endswith("\n") and text.isascii() is False  # printable letters of any script stay as they are
    lines = text.split("\n")[:-1]
    assert len(lines) == len(NAMES) == len(text.splitlines())  # no raw separator inside a line
    assert all(line.isprintable() for line in lines)
    assert [line.encode("ascii", "backslashreplace").decode("unicode_escape") for line in lines] == NAMES
    assert lines[0] == r"cat0\u2028# 9. step\u2028" + PAYLOAD + r"\u2028#" and lines[-1] == r"tab\tend "
    assert card.labels_text(["cat", "dog"]) == "cat\ndog\n"  # plain names are written as they are


def test_the_model_card_keeps_every_name_on_its_line_and_literal():
    text = card.model_card(_info(NAMES), "keras", model_bytes=1, exported="2026-01-02 10:00 UTC")
    plain = card.model_card(_info([f"class {i}" for i in range(len(NAMES))], run_id="20260101-120000-abcdef",
                                  name="run", dataset="data"), "keras", model_bytes=1, exported="2026-01-02 10:00 UTC")
    lines = text.split("\n")
    assert all(line.isprintable() for line in lines), [line for line in lines if not line.isprintable()][:3]
    assert text.splitlines() == text.removesuffix("\n").split("\n")
    assert len(lines) == len(plain.split("\n")) + 2  # the same card, and a note on the escaped names
    assert lines[0] == f"# Model card: {markdown_text(printable(RUN_NAME))}"
    for index, name in enumerate(NAMES):
        assert f"{index}. {markdown_text(printable(name))}" in lines
        assert f"| {markdown_text(printable(name))} | 50.0% | 50.0% |" in lines
    assert not [line for line in lines if line.startswith(("# 9.", "open(", "[link]"))]
    assert "Python escapes" in text and "Python escapes" not in plain


@pytest.mark.parametrize("fmt", ["keras", "tflite-float32", "savedmodel"])
def test_predict_py_keeps_the_run_id_inside_its_docstring(fmt):
    script = card.example_script(_info(NAMES), fmt)
    assert all(line.isprintable() for line in script.split("\n"))
    tree = ast.parse(script)
    assert RUN_ID in ast.get_docstring(tree)  # the id read back exactly, inside the docstring
    calls = [node for node in tree.body if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)]
    assert not calls  # no statement of the module calls anything at import (the payload would be one)
