"""tlcore.explain.code: every program is run, in a fresh process without tlcore, and its model compared with tlcore's.

One subprocess runs the whole grid (the programs as a person would copy them, with
``weights=None``, a tiny generated image folder and images), while this process
works out what tlcore builds for the same choices. Compared per layer: name, type,
output shape, parameters and whether it trains; and the model's parameter and
trainable counts. Predictions and feature vectors are compared as numbers, with the
program's own (random) weights loaded into tlcore's network.
"""

import ast
import dataclasses
import json
import os
import re
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

import tlcore
from tlcore.data.images import to_batch
from tlcore.explain import code
from tlcore.models.scopes import shapes_only
from tlcore.models.zoo import build_architecture

ROOT = Path(__file__).resolve().parents[3]
CLASS_INDEX = ROOT / "tlcore" / "models" / "imagenet_class_index.json"


def spec(backbone, size, **changes):
    values = dict(backbone=backbone, input_shape=(size, size, 3), weights="imagenet", hidden_units=32)
    return tlcore.TransferSpec(**{**values, **changes})


EARLIER = "earlier_run.keras"  # a saved transfer model: develop-a-model's base, and a classifier to predict with
EARLIER_SPEC = spec("MobileNetV2", 32, weights=None, conv_blocks=1, conv_filters=8, conv_pool=1, hidden_units=0,
                    num_classes=2)

# Build page: the model only. Backbones, sizes, poolings, frozen layers, heads, pretrained or not.
BUILDS = {
    "vgg16_224_default": spec("VGG16", 224, hidden_units=256),
    "vgg16_48_flatten_from_block5": spec("VGG16", 48, pooling="flatten", trainable_from="block5_conv1", hidden_units=0),
    "vgg16_128_two_conv_blocks": spec("VGG16", 128, conv_blocks=2, conv_filters=32, num_classes=4),
    "vgg19_300_max_window3_all": spec("VGG19", 300, pooling="max", pool_size=3, trainable_from="all"),
    "resnet50_64_from_conv5": spec("ResNet50", 64, trainable_from="conv5_block1_1_conv", dropout=0.5),
    "mobilenetv2_96_1x1_conv_no_pool_all": spec("MobileNetV2", 96, pooling="max", conv_blocks=1, conv_filters=16,
                                                conv_kernel=1, conv_pool=1, trainable_from="all"),
    "mobilenetv2_32_untrained_from_middle": spec("MobileNetV2", 32, weights=None, trainable_from="block_13_expand"),
    "efficientnetb0_64_untrained_conv_flatten": spec("EfficientNetB0", 64, weights=None, pooling="flatten", conv_blocks=1,
                                                     conv_kernel=5, trainable_from="block6a_expand_conv", num_classes=5),
    "inceptionv3_75_from_keras_named_layer": spec("InceptionV3", 75, trainable_from="conv2d_85"),
    "xception_71_untrained_keras_named": spec("Xception", 71, weights=None, pooling="max", trainable_from="conv2d_3"),
    "densenet121_64_window2_flatten": spec("DenseNet121", 64, pooling="flatten", pool_size=2,
                                           trainable_from="conv5_block16_1_conv"),
    "mobilenetv2_32_develop_a_model": spec("MobileNetV2", 32, base_model="set in the fixture",
                                           trainable_from="block_16_project", conv_blocks=1, conv_pool=1),
}
# Train page: data, compile, fit, fine-tune, save (one epoch each, on 4 images per class).
TRAINS = {
    "train_vgg16_32_sgd_augment_fine_tune_all": (
        spec("VGG16", 32, trainable_from="block5_conv1", hidden_units=8, num_classes=3),
        tlcore.TrainConfig(epochs=1, batch_size=4, optimizer="sgd", augment=True, early_stopping=1,
                           fine_tune_from="all", fine_tune_epochs=1, resize_mode="squash")),
    "train_mobilenetv2_32_rmsprop_batchnorm_conv_no_validation": (
        spec("MobileNetV2", 32, trainable_from="block_16_project", hidden_units=0, conv_blocks=1, conv_filters=8,
             conv_pool=1),
        tlcore.TrainConfig(epochs=1, batch_size=8, optimizer="rmsprop", validation_fraction=0.0)),
}
PHOTO = "photo.png"  # 121x80, with transparent parts: its centre-crop box starts on a half pixel
SAMPLES = ROOT / "samples"  # cat.jpg 451x300, rocket.jpg 640x427: sides that differ by an odd number
PREDICTS = {
    "predict_mobilenetv2_crop": dict(backbone="MobileNetV2", mode="crop", image="cat.jpg"),
    "predict_saved_model_crop": dict(backbone="MobileNetV2", mode="crop", model_file=EARLIER,
                                     class_names=["cat", "dog"], image=PHOTO),
    "predict_saved_model_squash": dict(backbone="MobileNetV2", mode="squash", model_file=EARLIER,
                                       class_names=["cat", "dog"], image=PHOTO),
}
FEATURES = {
    "features_mobilenetv2_default_layer_map": dict(backbone="MobileNetV2", layer=None, mode="crop",
                                                   images=[PHOTO, "a.png", "rocket.jpg", "b.png"]),
}
LAYERS = {
    "layers_xception_cut_100_max": dict(backbone="Xception", include_top=False, input_size=100, pooling="max"),
    "layers_mobilenetv2_full": dict(backbone="MobileNetV2", include_top=True, input_size=96, pooling=None),
}
CASES = [*BUILDS, *TRAINS, *PREDICTS, *FEATURES, *LAYERS]

RUNNER = textwrap.dedent('''
    """Run each program of the grid in this fresh process and describe what it built."""
    import contextlib, importlib.util, io, json, os, sys, time, traceback
    assert importlib.util.find_spec("tlcore") is None, "the programs must run without tlcore"
    import numpy as np
    import keras

    def rows(model, parent=True):
        for layer in model.layers:
            trainable = bool(layer.trainable and parent)
            if isinstance(layer, keras.Model):
                yield from rows(layer, trainable)
                continue
            shape = str(tuple(layer.output.shape)).replace(",)", ")")
            yield [layer.name, type(layer).__name__, shape, int(layer.count_params()) if layer.built else 0, trainable]

    def count(weights):
        return int(sum(np.prod(w.shape) for w in weights))

    cases, results = json.load(open(sys.argv[1])), {}
    for case in cases:
        os.chdir(case["folder"])
        keras.backend.clear_session()
        started, printed, namespace = time.perf_counter(), io.StringIO(), {"__name__": "__main__"}
        try:
            with contextlib.redirect_stdout(printed):
                exec(compile(case["program"], case["name"] + ".py", "exec"), namespace)
            model = namespace[case["variable"]]
            result = {"layers": list(rows(model)), "total": count(model.weights),
                      "trainable": count(model.trainable_weights), "name": model.name}
            for variable, path in case.get("arrays", {}).items():
                np.save(path, np.asarray(namespace[variable]))
            for variable, path in case.get("weights", {}).items():
                namespace[variable].save_weights(path)
        except Exception:
            result = {"error": traceback.format_exc()}
        result["printed"] = printed.getvalue()[-4000:]
        result["seconds"] = round(time.perf_counter() - started, 2)
        results[case["name"]] = result
    json.dump(results, open(sys.argv[2], "w"))
''')


def _image(path, size, seed, channels=3):
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _image_folder(folder, classes, per_class=4):
    for c in range(classes):
        (folder / f"class_{c}").mkdir(parents=True)
        for i in range(per_class):
            _image(folder / f"class_{c}" / f"{i}.png", (40 + 8 * i, 40), seed=100 * c + i)


def _expected_transfer(transfer):
    plan = tlcore.plan_transfer_model(transfer)
    return {"layers": plan.layers.values.tolist(), "total": plan.counts.total, "trainable": plan.counts.trainable}


def _described(model):
    table = tlcore.layer_table(model, expand_nested=True)
    counts = tlcore.parameter_counts(model)
    return {"layers": table.values.tolist(), "total": counts.total, "trainable": counts.trainable}


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """Write the grid's programs and files, run them all in one fresh process, and what tlcore builds meanwhile."""
    root = tmp_path_factory.mktemp("programs")
    keras_home = root / "keras_home"
    (keras_home / "models").mkdir(parents=True)
    (keras_home / "models" / CLASS_INDEX.name).write_bytes(CLASS_INDEX.read_bytes())  # decode_predictions, offline
    shared = root / "shared"
    shared.mkdir()
    for name, size, seed, channels in ((PHOTO, (121, 80), 1, 4), ("a.png", (64, 64), 2, 3), ("b.png", (50, 90), 3, 3)):
        _image(shared / name, size, seed, channels)
    for name in ("cat.jpg", "rocket.jpg"):
        (shared / name).write_bytes((SAMPLES / name).read_bytes())
    earlier = tlcore.build_transfer_model(EARLIER_SPEC)
    earlier.save(shared / EARLIER)
    cases, expected = [], {}
    for name, transfer in BUILDS.items():
        if transfer.base_model:
            transfer = dataclasses.replace(transfer, base_model=str(shared / EARLIER))
        program = code.transfer_program(transfer, weights=None, base_file=EARLIER)
        cases.append(dict(name=name, program=program, variable="model", folder=str(shared)))
        expected[name] = lambda transfer=transfer: _expected_transfer(transfer)
    for name, (transfer, config) in TRAINS.items():
        folder = root / name
        _image_folder(folder / "my_images", transfer.num_classes)
        program = code.transfer_program(transfer, config, weights=None)
        cases.append(dict(name=name, program=program, variable="model", folder=str(folder)))
        final = config.fine_tune_from if config.fine_tune_from and config.fine_tune_epochs else transfer.trainable_from
        expected[name] = lambda transfer=dataclasses.replace(transfer, trainable_from=final): _expected_transfer(transfer)
    for name, choice in PREDICTS.items():
        program = code.prediction_program(choice["backbone"], weights=None, mode=choice["mode"], image=choice["image"],
                                          model_file=choice.get("model_file"), class_names=choice.get("class_names"))
        cases.append(dict(name=name, program=program, variable="model", folder=str(shared),
                          arrays={"probabilities": str(root / f"{name}.npy"), "image": str(root / f"{name}.image.npy")},
                          weights={"model": str(root / f"{name}.weights.h5")}))
    for name, choice in FEATURES.items():
        program = code.feature_program(choice["backbone"], choice["layer"], weights=None, images=choice["images"],
                                       mode=choice["mode"])
        cases.append(dict(name=name, program=program, variable="extractor", folder=str(shared),
                          arrays={"features": str(root / f"{name}.npy"), "pixels": str(root / f"{name}.pixels.npy")},
                          weights={"network": str(root / f"{name}.weights.h5")}))
    for name, choice in LAYERS.items():
        program = code.layers_program(**choice)
        cases.append(dict(name=name, program=program, variable="full" if choice["include_top"] else "base",
                          folder=str(shared)))
    (root / "cases.json").write_text(json.dumps(cases))
    (root / "runner.py").write_text(RUNNER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(KERAS_HOME=str(keras_home), TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    started, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.Popen([sys.executable, str(root / "runner.py"), str(root / "cases.json"),
                                str(root / "results.json")], cwd=root, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wanted = {name: describe() for name, describe in expected.items()}  # while the programs run
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    results = json.loads((root / "results.json").read_text())
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"\n{len(cases)} programs ran in one process in {time.perf_counter() - started:.0f} s "
          f"({used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime:.0f} s of CPU): "
          + ", ".join(f"{name} {result['seconds']} s" for name, result in results.items()))
    return dict(root=root, shared=shared, cases={c["name"]: c for c in cases}, results=results, expected=wanted)


def _result(grid, name):
    result = grid["results"][name]
    assert "error" not in result, f"{name} failed:\n{result['error']}\n--- program ---\n{grid['cases'][name]['program']}"
    return result


def _same_model(result, expected):
    got = [tuple(row) for row in result["layers"]]
    want = [tuple(row) for row in expected["layers"]]
    differences = [(i, g, w) for i, (g, w) in enumerate(zip(got, want)) if g != w]
    assert len(got) == len(want) and not differences, (
        f"{len(got)} layers against {len(want)}; first differences (index, program, tlcore): {differences[:5]}")
    assert (result["total"], result["trainable"]) == (expected["total"], expected["trainable"])


@pytest.mark.slow  # the grid runs every program in one fresh process
@pytest.mark.parametrize("name", [*BUILDS, *TRAINS])
def test_a_transfer_program_builds_tlcores_model(grid, name):
    result = _result(grid, name)
    _same_model(result, grid["expected"][name])
    if name in TRAINS:
        assert (Path(grid["cases"][name]["folder"]) / f"{result['name']}.keras").is_file()  # saved
        assert "val_accuracy" in result["printed"] or TRAINS[name][1].validation_fraction == 0


@pytest.mark.slow
def test_programs_load_the_base_their_way_and_show_the_input_tensor_form_where_the_size_changed():
    default = code.transfer_program(BUILDS["vgg16_224_default"])
    assert 'base = VGG16(weights="imagenet", include_top=False, input_shape=(224, 224, 3))' in default
    assert "input_tensor" not in default and "clear_session" not in default
    changed = code.transfer_program(BUILDS["vgg16_48_flatten_from_block5"])
    assert '# base = VGG16(weights="imagenet", include_top=False, input_tensor=keras.Input((48, 48, 3)))' in changed
    assert 'layer.name == "block5_conv1"' in changed
    assert "BatchNormalization" not in changed  # VGG16 has none
    resnet = code.transfer_program(BUILDS["resnet50_64_from_conv5"])
    assert "and not isinstance(layer, keras.layers.BatchNormalization)" in resnet  # pretrained: BN stays frozen
    untrained = code.transfer_program(BUILDS["mobilenetv2_32_untrained_from_middle"])
    assert "BatchNormalization" not in untrained and "weights=None" in untrained
    assert "keras.backend.clear_session()" in code.transfer_program(BUILDS["inceptionv3_75_from_keras_named_layer"])


def test_train_program_says_every_setting():
    transfer, config = TRAINS["train_vgg16_32_sgd_augment_fine_tune_all"]
    program = code.transfer_program(transfer, config)
    for text in ("keras.optimizers.SGD(0.001, momentum=0.9)", "keras.optimizers.SGD(1e-05, momentum=0.9)",
                 "epochs=1", "batch_size=4", "validation_split=0.2", "RandomFlip", "patience=1",
                 "image_size=(32, 32)", "Dense(len(class_names)", 'model.save(f"{model.name}.keras")'):
        assert text in program
    assert "crop_to_aspect_ratio" not in program  # squash
    assert program.index("# 6. Fine-tune") < program.index("# 7. Save")
    crop = code.transfer_program(*TRAINS["train_mobilenetv2_32_rmsprop_batchnorm_conv_no_validation"])
    assert "crop_to_aspect_ratio=True" in crop and "keras.optimizers.RMSprop(0.001)" in crop
    assert "validation_split" not in crop and "val_ds = None" in crop
    assert "EarlyStopping" not in crop and "Fine-tune" not in crop
    named = code.transfer_program(spec("VGG16", 64), dataclasses.replace(TRAINS[
        "train_vgg16_32_sgd_augment_fine_tune_all"][1], fine_tune_from="block4_conv1"))
    assert named.count("training = training or layer.name == ") == 1  # phase 1 frozen; phase 2 from block4_conv1
    assert 'layer.name == "block4_conv1"' in named


def test_optimizer_code_builds_the_optimizers_training_uses():
    import keras

    assert set(code.OPTIMIZER_CODE) == set(tlcore.OPTIMIZERS)
    for name, text in code.OPTIMIZER_CODE.items():
        written = eval(text.format(rate="0.003"), {"keras": keras}).get_config()
        used = tlcore.OPTIMIZERS[name](0.003).get_config()
        assert {k: v for k, v in written.items() if k != "name"} == {k: v for k, v in used.items() if k != "name"}


@pytest.mark.slow  # the grid runs every program in one fresh process
@pytest.mark.parametrize("name", list(PREDICTS))
def test_a_prediction_program_gives_tlcores_prediction(grid, name):
    result = _result(grid, name)
    choice = PREDICTS[name]
    probabilities = np.load(grid["root"] / f"{name}.npy").reshape(-1)
    if "model_file" in choice:
        model = tlcore.load_model_file(grid["shared"] / EARLIER)
        labels = choice["class_names"]
    else:
        model = tlcore.load_backbone(choice["backbone"], weights=str(grid["root"] / f"{name}.weights.h5"))
        labels = None
    _same_model(result, _described(model))
    photo = grid["shared"] / choice["image"]
    seen = np.load(grid["root"] / f"{name}.image.npy")  # the program's input, before preprocessing
    page = np.asarray(tlcore.fit_image(tlcore.load_image(photo), tlcore.model_input_size(model), mode=choice["mode"]))
    assert seen.shape == page.shape and np.array_equal(seen, page), f"max difference {np.abs(seen - page.astype(int)).max()}"
    table = tlcore.predict_top_k(model, photo, backbone=choice["backbone"], k=5, labels=labels, mode=choice["mode"])
    np.testing.assert_allclose(np.sort(probabilities)[::-1][:len(table)], table["probability"], rtol=1e-4, atol=1e-6)
    assert np.argsort(-probabilities, kind="stable")[:len(table)].tolist() == table["class_id"].tolist()
    first = result["printed"].splitlines()[0]
    assert first.startswith("1. ") and first.endswith(f"{table['probability'][0]:.2%}")
    if labels:
        assert first == f"1. {table['label'][0]}: {table['probability'][0]:.2%}"


@pytest.mark.slow  # the grid runs every program in one fresh process
@pytest.mark.parametrize("name", list(FEATURES))
def test_a_feature_program_gives_tlcores_vectors(grid, name):
    result = _result(grid, name)
    choice = FEATURES[name]
    extractor = tlcore.feature_extractor(choice["backbone"], weights=str(grid["root"] / f"{name}.weights.h5"),
                                         layer=choice["layer"])
    _same_model(result, _described(extractor))
    assert result["name"] == extractor.name
    pixels = np.load(grid["root"] / f"{name}.pixels.npy")
    paths = [grid["shared"] / p for p in choice["images"]]
    page = to_batch([tlcore.load_image(p) for p in paths], tlcore.model_input_size(extractor), mode=choice["mode"])
    page = tlcore.get_backbone(choice["backbone"]).preprocess(page)  # the program's preprocess_input works in place
    assert np.array_equal(pixels, page), f"max difference {np.abs(pixels - page).max()}"
    features = np.load(grid["root"] / f"{name}.npy")
    expected = tlcore.extract_features(extractor, [grid["shared"] / p for p in choice["images"]],
                                       backbone=choice["backbone"], mode=choice["mode"])
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-5)
    if len(choice["images"]) >= 3:
        assert f"{choice['images'][0]}: (" in result["printed"]  # the 2-D map


@pytest.mark.slow  # the grid runs every program in one fresh process
@pytest.mark.parametrize("name", list(LAYERS))
def test_a_layers_program_shows_tlcores_table(grid, name):
    result = _result(grid, name)
    choice = LAYERS[name]
    size = choice["input_size"]
    with shapes_only():
        full = build_architecture(choice["backbone"], include_top=True)
        cut = build_architecture(choice["backbone"], include_top=False, input_shape=(size, size, 3),
                                 pooling=choice["pooling"])
        shown = full if choice["include_top"] else cut
        _same_model(result, _described(shown))
        removed = tlcore.compare_layers(full, cut).query("status == 'removed'")["name"].tolist()
    assert f"Removed: {removed}" in result["printed"]


def test_grid_covers_every_backbone():
    used = {t.backbone for t in BUILDS.values()} | {t.backbone for t, _ in TRAINS.values()}
    assert used == set(tlcore.BACKBONES)


def test_notebook_is_valid_and_runs_the_same_program():
    transfer, config = TRAINS["train_vgg16_32_sgd_augment_fine_tune_all"]
    program = code.transfer_program(transfer, config)
    notebook = nbformat.reads(code.as_notebook(program).decode(), as_version=4)
    nbformat.validate(notebook)
    assert notebook.cells[0].cell_type == "markdown" and "VGG16 at 32x32" in notebook.cells[0].source
    sources = [cell.source for cell in notebook.cells[1:]]
    assert all(cell.cell_type == "code" for cell in notebook.cells[1:])
    assert sources[0].startswith("import keras")
    assert [s.splitlines()[0] for s in sources[1:]] == [
        line for line in program.splitlines() if line.startswith("# ") and line[2].isdigit()]
    body = "\n".join(program.splitlines()[1:])
    assert "\n\n".join(sources) == body.strip()
    compile("\n".join(sources), "notebook", "exec")


@pytest.mark.slow
@pytest.mark.parametrize("program", [
    lambda: code.prediction_program("ResNet50", model_file="my model's file.keras", class_names=['say "hi"', "a\\b"],
                                    image="it's.jpg"),
    lambda: code.feature_program("Xception", "conv2d_2", weights="/data/weights/abc.h5", images=["x.jpg"] * 3),
    lambda: code.layers_program("DenseNet121", True, 64, "max"),
    lambda: code.transfer_program(spec("ResNet50", 32, pooling="max"), tlcore.TrainConfig(),
                                  data_dir='my "odd"\nfolder'),
])
def test_every_program_is_valid_python_whatever_the_names(program):
    text = program()
    compile(text, "program", "exec")
    assert max(len(line) for line in text.splitlines()) <= 110
    assert not _unused_imports(text)


def _unused_imports(text):
    tree = ast.parse(text)
    imported = {(alias.asname or alias.name).split(".")[0] for node in ast.walk(tree)
                if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    return imported - used


@pytest.mark.slow  # the grid runs every program in one fresh process
def test_no_program_of_the_grid_imports_what_it_does_not_use(grid):
    for name, case in grid["cases"].items():
        assert not _unused_imports(case["program"]), name


def test_feature_program_names_keras_named_layers_in_a_fresh_session():
    program = code.feature_program("Xception", "conv2d_2")
    assert "keras.backend.clear_session()" in program
    assert 'network.get_layer("conv2d_2")' in program
    assert code.WEIGHTS_FILE in code.feature_program("Xception", weights="/data/weights/abc.h5")


@pytest.mark.parametrize("call,error,match", [
    (lambda: code.transfer_program(spec("VGG16", 48, conv_blocks=2)), tlcore.ShapeError,
     r"at least 4x4 for 2 convolutional blocks .* The smallest input that works is 128x128"),
    (lambda: code.transfer_program(spec("VGG16", 32), tlcore.TrainConfig(epochs=0)), tlcore.ConfigError,
     r"Epochs must be at least 1"),
    (lambda: code.feature_program("VGG16", "fc9"), tlcore.ConfigError,
     r"Feature layer must be a layer of VGG16 \(e.g. 'fc2'\). Received: layer='fc9'"),
    (lambda: code.prediction_program("VGG16", mode="stretch"), tlcore.ConfigError,
     r"Resize mode must be one of \('crop', 'squash'\). Received: mode='stretch'"),
    (lambda: code.layers_program("VGG16", False, 16), tlcore.ShapeError, r"at least 32x32 for VGG16"),
])
def test_a_program_is_only_written_for_choices_that_work(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_a_develop_a_model_program_reads_the_run_as_the_runs_page_downloads_it():
    reused = spec("MobileNetV2", 32, weights=None, base_model="/data/runs/20260101-120000-abcdef/model.keras")
    program = code.transfer_program(reused)
    assert 'earlier = keras.saving.load_model("20260101-120000-abcdef.keras")' in program
    assert "MobileNetV2(" not in program  # the base comes from the earlier run, not from keras.applications
    assert '"mine.keras"' in code.transfer_program(dataclasses.replace(reused, base_model="/x/mine.keras"))


HOSTILE = ["cats\u2028# 9. x\u2028open('PWNED', 'w')\u2028#", "dogs\u2029# 9. y\u2029z", "fish\x85# 9. z",
           "vt\x0bff\x0cfs\x1cgs\x1drs\x1e", 'quote " and """ and \\ back', "line\nbreak", "tab\there",
           "# 9. hash", "[link](http://x) {braces} {0}", "\u202eevil", "caf\u00e9 \u732b"]


def _literals(program):
    return [node.value for node in ast.walk(ast.parse(program))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


@pytest.mark.parametrize("make,used", [
    (lambda names: code.prediction_program("MobileNetV2", weights=None, model_file=names[0] + ".keras",
                                          class_names=names, image=names[1] + ".png"), HOSTILE),
    (lambda names: code.feature_program("MobileNetV2", weights=None, images=[n + ".png" for n in names]), HOSTILE),
    pytest.param(lambda names: code.transfer_program(spec("MobileNetV2", 32, weights=None), tlcore.TrainConfig(),
                                                      data_dir=names[0]), HOSTILE[:1], marks=pytest.mark.slow),
    (lambda names: code.transfer_program(spec("MobileNetV2", 32, base_model="/runs/x/model.keras"),
                                         base_file=names[0] + ".keras"), HOSTILE[:1]),
], ids=["predict", "features", "train", "develop"])
def test_names_enter_a_program_as_printable_literals_and_notebook_cells_stay_whole(make, used):
    plain = make([f"name_{i}" for i in range(len(HOSTILE))])
    program = make(HOSTILE)
    assert all(line.isprintable() for line in program.split("\n"))  # no raw U+2028, U+0085, \x0b, ...
    assert program.splitlines() == program.split("\n")[:-1]
    literals = _literals(program)
    for name in used:
        assert any(name in literal for literal in literals), name  # read back exactly
    notebook = nbformat.reads(code.as_notebook(program).decode(), as_version=4)
    steps = [line for line in program.split("\n") if re.match(r"# \d+\. ", line)]
    assert len(notebook.cells) == len(nbformat.reads(code.as_notebook(plain).decode(), as_version=4).cells)
    assert len(notebook.cells) == 2 + len(steps)  # the title, the imports, one cell per step
    sources = [cell.source for cell in notebook.cells[1:]]
    assert "\n\n".join(sources) == "\n".join(program.split("\n")[1:]).strip()
    for source in sources:
        compile(source, "cell", "exec")  # every cell is whole Python on its own


def test_a_notebook_splits_on_newlines_only():
    program = '"""Title."""\n\nimport keras\n\n# 1. One.\nx = "a\u2028# 2. b\u2029c\x85d"\n\n# 2. Two.\ny = 1\n'
    notebook = nbformat.reads(code.as_notebook(program).decode(), as_version=4)
    assert [cell.source for cell in notebook.cells] == [
        "# Title.", "import keras", '# 1. One.\nx = "a\u2028# 2. b\u2029c\x85d"', "# 2. Two.\ny = 1"]


@pytest.mark.parametrize("name", ["cat.jpg", "rocket.jpg"])
def test_a_whole_pixel_crop_is_not_the_pages(name):
    """Why the programs crop with PIL's ImageOps.fit: Keras's keep_aspect_ratio crops on whole pixels."""
    import keras

    page = np.asarray(tlcore.fit_image(tlcore.load_image(SAMPLES / name), (224, 224)), dtype=np.float32)
    whole = keras.utils.img_to_array(keras.utils.load_img(SAMPLES / name, target_size=(224, 224),
                                                          interpolation="bilinear", keep_aspect_ratio=True))
    assert np.abs(whole - page).max() > 10
    program = code.prediction_program("MobileNetV2", weights=None, image=str(SAMPLES / name))
    assert "ImageOps.fit(" in program and "load_img" not in program
