"""The ``transfer-lab`` command: predict, extract features, train and move runs, without the browser.

Each subcommand calls the ``tlcore`` functions the pages call, so a refusal reads the same
words as on the pages. Exit codes: 0 done, 2 bad input (the message says which rule and what
was received), 1 anything else that failed (a one-line reason, no traceback).

    transfer-lab predict cat.jpg --backbone VGG16 --weights random --top 3
    transfer-lab features a.jpg b.jpg --backbone VGG16 --layer fc2 --out features.npy
    transfer-lab train flowers.zip --spec spec.json [--scratch]
    transfer-lab curve flowers.zip --backbone VGG16 --size 128 [--weights random] [--csv]
    transfer-lab runs list | show ID | export ID... [--group] [--out FILE] | import FILE

It imports only ``tlcore`` (its facade), as the pages do.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import io
import json
import logging
import os
import shutil
import signal
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import tlcore

OK, FAILED, BAD_INPUT = 0, 1, 2
SPEC_FILE_BYTES = 1 << 20
"""A --spec file may be at most this large (it is read whole)."""
BAR = 30


class InputError(Exception):
    """A command-line value refused before any work (exit code 2)."""


_BAR_OPEN = threading.Event()
"""Set while the progress bar's line is unfinished: the next message starts on a line of its own."""


def _say(text: str) -> None:
    if _BAR_OPEN.is_set() and text:
        sys.stderr.write("\n")
    _BAR_OPEN.clear()
    print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _stop_on_ctrl_c() -> Iterator[threading.Event]:
    """The first Ctrl-C asks training to stop at its next batch, keeping what it learned (as the dashboard's
    Stop does); a second one quits at once."""
    stop = threading.Event()

    def asked(*_) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _say("Stopping at the next batch; what was learned is kept (Ctrl-C again quits now).")

    previous = signal.signal(signal.SIGINT, asked)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _store() -> tlcore.RunStore:
    return tlcore.RunStore(tlcore.load_settings().data_dir / "runs")


def _weights(value: str) -> str | None:
    """``--weights``: "imagenet", "random" (None: no file is read) or a weights file's path."""
    if value == "random":
        return None
    if value == "imagenet":
        return value
    path = Path(value)
    if not path.is_file():
        raise InputError(f"--weights must be imagenet, random or a weights file. Received: {value!r}, no such file")
    return str(path)


def _image_paths(values: Sequence[str]) -> list[Path]:
    """The image arguments, checked for count and total size (the budgets of an upload) before any is read."""
    settings = tlcore.load_settings()
    if len(values) > settings.max_dataset_images:
        raise InputError(f"At most {settings.max_dataset_images:,} images may be given at once "
                         f"(TL_MAX_DATASET_IMAGES). Received: {len(values):,}")
    paths, total = [], 0
    for value in values:
        path = Path(value)
        if not path.is_file():
            raise InputError(f"Each image must be a file. Received: {value!r}, which is not one")
        total += path.stat().st_size
        if total > settings.max_archive_bytes:
            raise InputError(f"The images may hold at most {settings.max_archive_bytes:,} bytes in all "
                             f"(TL_MAX_ARCHIVE_BYTES). Received: more than that, at {value!r}")
        paths.append(path)
    return paths


def _backbone(name: str) -> str:
    if name not in tlcore.BACKBONES:
        raise InputError(f"--backbone must be one of {sorted(tlcore.BACKBONES)}. Received: {name!r}")
    return name


def predict(args: argparse.Namespace) -> int:
    paths = _image_paths(args.images)
    if args.run:
        record = _store().get(args.run)
        model, backbone, labels = _store().load_model(args.run), record.spec.backbone, record.class_names
        precision = tlcore.precision_for_run(record.result.precision_check if record.result else None)
        mode = record.config.resize_mode  # as the run was trained
    else:
        backbone, labels, precision, mode = _backbone(args.backbone), None, None, "crop"
        model = tlcore.load_backbone(backbone, weights=_weights(args.weights))
    rows = []
    for path in paths:
        table = tlcore.predict_top_k(model, path, backbone=backbone, k=args.top, labels=labels, precision=precision,
                                     mode=mode)
        rows.extend({"image": str(path), **row} for row in table.to_dict("records"))
    if args.csv:
        writer = csv.DictWriter(sys.stdout, ["image", "rank", "label", "class_id", "probability"])
        writer.writeheader()
        writer.writerows(rows)
    else:
        for row in rows:
            print(f"{row['image']}\t{row['rank']}\t{row['probability']:.4f}\t{row['label']}")
    return OK


def features(args: argparse.Namespace) -> int:
    paths = _image_paths(args.images)
    out = Path(args.out)
    if out.suffix != ".npy" or not out.parent.is_dir():
        raise InputError(f"--out must be a .npy file in an existing folder. Received: {args.out!r}")
    extractor = tlcore.feature_extractor(_backbone(args.backbone), weights=_weights(args.weights), layer=args.layer)
    vectors = tlcore.extract_features(extractor, paths, backbone=args.backbone,
                                      progress=lambda done, total: _bar(done / max(total, 1), f"{done} of {total} images"))
    _say("")
    buffer = io.BytesIO()
    import numpy as np  # numpy only: the vectors are saved as the .npy file np.load reads

    np.save(buffer, vectors)
    tlcore.atomic_write_bytes(out, buffer.getvalue())
    print(f"{out}\t{vectors.shape[0]} images x {vectors.shape[1]} values")
    return OK


def _bar(fraction: float, words: str) -> None:
    done = int(round(BAR * min(max(fraction, 0.0), 1.0)))
    sys.stderr.write(f"\r[{'#' * done}{'.' * (BAR - done)}] {100 * fraction:3.0f}%  {words}\033[K")
    sys.stderr.flush()
    _BAR_OPEN.set()


def _read_spec(value: str) -> tuple[tlcore.TransferSpec, tlcore.TrainConfig]:
    """``--spec``: a JSON object {"spec": TransferSpec fields, "config": TrainConfig fields} (or only the spec's),
    given as the JSON itself (starting with ``{``) or as a file holding it."""
    if value.lstrip().startswith("{"):
        if len(value.encode("utf-8")) > SPEC_FILE_BYTES:
            raise InputError(f"--spec may be at most {SPEC_FILE_BYTES:,} bytes. Received: {len(value.encode()):,}")
        text, given = value, "the JSON given"
    else:
        path = Path(value)
        if not path.is_file():
            raise InputError(f"--spec must be a JSON object or a file holding one. Received: {value!r}, no such file")
        if path.stat().st_size > SPEC_FILE_BYTES:
            raise InputError(f"--spec may be at most {SPEC_FILE_BYTES:,} bytes. Received: {path.stat().st_size:,}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InputError(f"--spec must be JSON text (UTF-8). Received: {value!r}, which is not") from None
        given = repr(value)
    try:
        values = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"--spec must be JSON. Received: {given}, which does not parse ({exc})") from None
    if not isinstance(values, dict):
        raise InputError(f"--spec must hold a JSON object. Received: {type(values).__name__}")
    spec_values, config_values = (values.get("spec", {}), values.get("config", {})) if "spec" in values \
        else (values, {})
    try:
        spec_values = dict(spec_values)
        if "input_shape" in spec_values:
            spec_values["input_shape"] = tuple(spec_values["input_shape"])
        spec, config = tlcore.TransferSpec(**spec_values), tlcore.TrainConfig(**dict(config_values))
    except (TypeError, ValueError) as exc:
        raise InputError(f"--spec must name only TransferSpec fields under \"spec\" and TrainConfig fields "
                         f"under \"config\". Received: {exc}") from None
    return spec, config


def train(args: argparse.Namespace) -> int:
    spec, config = _read_spec(args.spec)
    source = Path(args.dataset)
    if not source.exists():
        raise InputError(f"The dataset must be a folder of class folders or a .zip of them. Received: "
                         f"{args.dataset!r}, no such file or folder")
    dataset = tlcore.load_dataset(source)
    runs = [(spec, config, "transfer")]
    if args.scratch:
        runs.append((tlcore.scratch_spec(spec), tlcore.scratch_config(config), "scratch"))
    if config.workers != 1:
        raise InputError(f"transfer-lab train trains in one process: --spec's config must have workers 1 (a run "
                         f"across workers is tlcore.train_data_parallel, or the Train page). Received: "
                         f"workers={config.workers!r}")
    # every run checked (with one output per class) before any is recorded: bad input leaves no failed run
    runs = [(tlcore.check_run(run_spec, dataset, run_config), run_config, role) for run_spec, run_config, role in runs]
    store, group, owner = _store(), uuid.uuid4().hex[:12] if args.scratch else "", args.owner
    for run_spec, run_config, role in runs:
        run_id = store.create(run_spec, run_config, dataset.summary(), owner=owner, group=group,
                              role=role if args.scratch else "")
        _say(f"{run_id}: {run_spec.backbone} on {dataset.name} ({role}); TensorBoard logs in "
             f"{store.root / run_id / 'tensorboard'}")
        try:
            with _stop_on_ctrl_c() as stop:
                result = tlcore.train(run_spec, dataset, run_config, checked=True, stop=stop,
                                      on_batch=lambda p: _bar(p.fraction, p.describe()),
                                      on_epoch=lambda history, run_id=run_id: store.record_history(run_id, history),
                                      log_dir=store.root / run_id / "tensorboard")
        except tlcore.StoppedBeforeTraining:
            store.mark(run_id, "stopped")
            _say(f"{run_id}: stopped (Ctrl-C) before training began; nothing was trained")
            return FAILED
        except BaseException as exc:
            store.fail(run_id, str(exc) or ("stopped (Ctrl-C)" if isinstance(exc, KeyboardInterrupt)
                                            else type(exc).__name__))
            raise
        store.finish(run_id, result)
        _say("")
        measured = "val_accuracy" if run_config.validation_fraction > 0 else "train_accuracy"  # nothing held out
        print(f"{run_id}\t{role}\t{measured} {result.evaluation.accuracy:.4f}\t{result.seconds:.1f} s")
        if result.stopped:  # Ctrl-C: this run kept what it learned; the others are not started
            _say(f"{run_id}: stopped (Ctrl-C) after {len(result.history)} epoch(s); the model so far is kept")
            return FAILED
    return OK


def _dataset(value: str) -> tlcore.ImageDataset:
    source = Path(value)
    if not source.exists():
        raise InputError(f"The dataset must be a folder of class folders or a .zip of them. Received: "
                         f"{value!r}, no such file or folder")
    return tlcore.load_dataset(source)


def curve(args: argparse.Namespace) -> int:
    backbone, weights = _backbone(args.backbone), _weights(args.weights)
    if args.size is not None and args.size < 1:
        raise InputError(f"--size must be a positive number of pixels. Received: {args.size}")
    dataset = _dataset(args.dataset)

    def progress(stage: str, done: int, total: int) -> None:
        words = f"one pass over the images: {done} of {total}" if stage == "extracting" else \
            f"linear probes: {done} of {total}"
        _bar(done / max(total, 1), words)

    measured = tlcore.transfer_curve(backbone, dataset, weights=weights, input_size=args.size, on_progress=progress)
    _say("")
    table = measured.table()[["depth", "tap", "features", "accuracy", "train_accuracy"]]
    if args.csv:
        table.to_csv(sys.stdout, index=False)
        return OK
    for row in table.itertuples(index=False):
        print(f"{row.depth}\t{row.tap}\t{row.features} features\tvalidation {row.accuracy:.4f}\t"
              f"training {row.train_accuracy:.4f}")
    print(f"chance\t{measured.chance:.4f}\t(the largest class's share of the validation images)")
    words = measured.recommendation()
    print(words[0].upper() + words[1:] + ".")
    print(f"curve\t{measured.key}\t(opens on Build as ?curve={measured.key})")
    return OK


def lite_copy(args: argparse.Namespace) -> int:
    backbone, weights = _backbone(args.backbone), _weights(args.weights)
    if args.background:
        os.nice(19)  # a chore behind a server: the lowest priority, so its pages come first
    key = tlcore.lite_key(backbone, weights, seed=tlcore.UNTRAINED_SEED)
    if key is not None and key.path.is_file():
        print(f"{key.path}\talready written")
        return OK
    model = tlcore.load_backbone(backbone, weights=weights, seed=tlcore.UNTRAINED_SEED)  # ImageNet: downloaded once
    path = tlcore.write_lite_copy(model, tlcore.lite_key(backbone, weights, seed=tlcore.UNTRAINED_SEED))
    print(f"{path}\t{path.stat().st_size / 1e6:.1f} MB")
    return OK


def runs_list(args: argparse.Namespace) -> int:
    table = _store().list()[["id", "created", "name", "backbone", "status", "accuracy", "best_val_accuracy", "epochs",
                            "owner"]]
    if args.csv:
        table.to_csv(sys.stdout, index=False)
    else:
        print(table.to_string(index=False) if len(table) else "No runs yet.")
    return OK


def runs_show(args: argparse.Namespace) -> int:
    record = _store().get(args.run_id)
    about = {"id": record.id, "name": record.name, "owner": record.owner, "status": record.status,
             "group": record.group, "role": record.role, "spec": dataclasses.asdict(record.spec),
             "config": dataclasses.asdict(record.config),
             "dataset": {k: record.dataset.get(k) for k in ("name", "classes", "counts", "digest")},
             "accuracy": record.result.accuracy if record.result else None,
             "tensorboard": str(record.folder / "tensorboard")}
    print(json.dumps(about, indent=2, default=str))
    print(record.history.to_string(index=False))
    return OK


def runs_export(args: argparse.Namespace) -> int:
    store = _store()
    ids = list(args.run_ids)
    if args.group:
        ids = [r.id for run_id in args.run_ids for r in (store.group_runs(store.get(run_id).group) or [store.get(run_id)])]
    built = tlcore.export_bundle(store, ids)
    out = Path(args.out) if args.out else Path.cwd()
    if out.is_dir():  # a folder: the bundle goes in it, under its own name
        out = out / tlcore.bundle_file_name(list(dict.fromkeys(ids)))
    if not out.parent.is_dir():
        raise InputError(f"--out must be in an existing folder. Received: {args.out!r}")
    shutil.copyfile(built, out)
    print(f"{out}\t{len(dict.fromkeys(ids))} run(s)")
    return OK


def runs_import(args: argparse.Namespace) -> int:
    path = Path(args.bundle)
    if not path.is_file():
        raise InputError(f"A run bundle must be a .zip file. Received: {args.bundle!r}, no such file")
    for run_id in tlcore.import_run(path, _store()):
        print(run_id)
    return OK


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="transfer-lab", description="Transfer Lab without the browser: the same functions as its pages. "
        "Runs are stored in the data folder (TL_DATA_DIR, default ~/.transfer-lab).",
        epilog="Exit codes: 0 done, 2 bad input, 1 failed.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def model_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--backbone", default="VGG16", help="a registry network (default VGG16)")
        command.add_argument("--weights", default="imagenet",
                             help="imagenet (downloaded once into the Keras cache), random, or a weights file")

    p = commands.add_parser("predict", help="classify images", description="Classify images with an ImageNet "
                            "network or a trained run's model (the Predict page).")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    model_options(p)
    p.add_argument("--run", help="a run id: its trained model and classes (overrides --backbone/--weights)")
    p.add_argument("--top", type=int, default=5, help="classes shown per image (default 5)")
    p.add_argument("--csv", action="store_true", help="CSV rows: image, rank, label, class_id, probability")
    p.set_defaults(handler=predict)

    p = commands.add_parser("features", help="save feature vectors", description="Save the feature vectors of "
                            "images at a layer, as a .npy array (the Features page).")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    model_options(p)
    p.add_argument("--layer", default=None, help="the layer whose output is kept (default: the penultimate, "
                   "VGG16's fc2)")
    p.add_argument("--out", required=True, help="the .npy file to write")
    p.set_defaults(handler=features)

    p = commands.add_parser("train", help="train a run", description="Train a transfer model on a dataset and "
                            "store the run (the Train page), with TensorBoard logs in its folder.")
    p.add_argument("dataset", metavar="DATASET", help="a folder of class folders, or a .zip of them")
    p.add_argument("--spec", required=True, help='a JSON file, or the JSON itself: {"spec": {TransferSpec '
                   'fields}, "config": {TrainConfig fields}}, e.g. \'{"spec": {"backbone": "VGG16", "input_shape": '
                   '[64, 64, 3], "weights": null}, "config": {"epochs": 3}}\'')
    p.add_argument("--scratch", action="store_true", help="also train the same model from scratch, as a pair")
    p.add_argument("--owner", default="", help="who the run is recorded under (default: nobody)")
    p.set_defaults(handler=train)

    p = commands.add_parser("curve", help="where to cut: the transfer curve", description="Measure how well a "
                            "linear probe separates the dataset's classes at the end of every block of a base "
                            "(Build's \"Where to cut\"), and say where to start training.")
    p.add_argument("dataset", metavar="DATASET", help="a folder of class folders, or a .zip of them")
    model_options(p)
    p.add_argument("--size", type=int, default=None, help="the square input side in pixels (default: the "
                   "backbone's own)")
    p.add_argument("--csv", action="store_true", help="CSV rows: depth, tap, features, accuracy, train_accuracy")
    p.set_defaults(handler=curve)

    p = commands.add_parser("lite-copy", help="write a network's LiteRT copy for Predict's first answers",
                            description="Write the LiteRT copy of a registry network with its weights, which "
                            "Predict answers its top-5 with before TensorFlow is loaded (TL_LITE_ANSWERS). A server "
                            "writes it the first time it loads the network; this writes it ahead.")
    model_options(p)
    p.add_argument("--background", action="store_true", help="at a lower CPU priority (how a server runs it)")
    p.set_defaults(handler=lite_copy)

    runs = commands.add_parser("runs", help="list, show, export and import runs",
                               description="The run store (the Runs page).")
    actions = runs.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("list", help="every run, newest first")
    p.add_argument("--csv", action="store_true")
    p.set_defaults(handler=runs_list)
    p = actions.add_parser("show", help="one run's settings and history")
    p.add_argument("run_id", metavar="ID")
    p.set_defaults(handler=runs_show)
    p = actions.add_parser("export", help="write finished runs as one bundle (.zip)")
    p.add_argument("run_ids", nargs="+", metavar="ID")
    p.add_argument("--group", action="store_true", help="each run with the runs of its group (a pair, a demo)")
    p.add_argument("--out", help="the .zip to write (default: its name, in this folder)")
    p.set_defaults(handler=runs_export)
    p = actions.add_parser("import", help="import a bundle's runs into this data folder")
    p.add_argument("bundle", metavar="FILE")
    p.set_defaults(handler=runs_import)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns its exit code (0 done, 2 bad input, 1 failed)."""
    args = parser().parse_args(argv)
    if getattr(args, "top", 1) < 1:
        _say(f"--top must be at least 1. Received: {args.top}")
        return BAD_INPUT
    try:
        return args.handler(args)
    except (InputError, tlcore.TLError) as exc:  # an unknown run id or backbone is a TLError (UnknownNameError)
        _say(f"transfer-lab {args.command}: {exc}")
        return BAD_INPUT if not isinstance(exc, tlcore.StorageError) else FAILED
    except KeyboardInterrupt:
        _say(f"transfer-lab {args.command}: stopped")
        return FAILED
    except BrokenPipeError:  # the reader left (`... --csv | head -1`): nothing more to say, to no one
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own flush at exit stays quiet
        return FAILED
    except Exception as exc:  # a failure, said in one line: the command line never shows a traceback
        _say(f"transfer-lab {args.command} failed: {type(exc).__name__}: {str(exc)[:300]}")
        return FAILED


def entry_point() -> None:
    """``transfer-lab`` (pyproject [project.scripts])."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up notes are not the command's output
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # nor its advice on retracing (a probe per tap)
    sys.exit(main())
