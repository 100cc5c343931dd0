"""Run bundles: finished runs as one zip, to move them to another Transfer Lab server.

A bundle holds one run, a transfer/scratch pair or a develop-a-model demo's runs::

    bundle.json                 what this is: {"format", "version", "runs": [run ids]}
    <run id>/run.json           name, owner, group, role, status, created, seconds (the index row)
    <run id>/config.json        the TransferSpec and TrainConfig, as the run store keeps them
    <run id>/dataset.json       the dataset's name, classes, counts and content digest (no server paths)
    <run id>/history.csv        every epoch
    <run id>/result.json        the evaluation: metrics, confusion matrix, per-class precision and recall
    <run id>/model.keras        the model without optimizer state
    <run id>/MODEL_CARD.md      the model card (as in a Keras export)

A bundle may come from anyone, so ``import_run`` checks it as every upload is checked before
any member is read: its file size, the archive's member count, names (relative, no links,
no encryption), declared sizes, compression ratio and overlapping members
(``tlcore.data.intake.check_archive``), then only the members above, each within its budget,
each read no further than it declares. Each model goes through ``load_model_file``, the checks
of an uploaded ``.keras`` model (allow-list, budgets, safe mode). Everything is staged in a
hidden folder of the run store and moved in only when every run passed, and the index rows
are added in one transaction: a refused bundle leaves nothing behind.
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import hashlib
import json
import math
import mmap
import re
import shutil
import sqlite3
import time
import uuid
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from tlcore.core.atomic import atomic_save
from tlcore.core.errors import DatasetError, HistoryError, ModelFileError, TLError
from tlcore.core.settings import load_settings
from tlcore.core.storage import check_room
from tlcore.core.values import whole_number
from tlcore.data.intake import check_archive
from tlcore.deploy.card import CARD, ExportInfo, model_card
from tlcore.deploy.export import exports_folder, run_keras_file
from tlcore.models.build import check_transfer_spec
from tlcore.models.cost import MB
from tlcore.models.model_files import load_model_file, run_mismatch
from tlcore.models.spec import TransferSpec
from tlcore.models.zoo import BACKBONES
from tlcore.training.config import TrainConfig
from tlcore.training.history import MAX_HISTORY_ROWS, read_history_csv
from tlcore.training.results import RunResult
from tlcore.training.runs import MODEL_FILE, RunRecord, RunStore, kept_accuracy

FORMAT, VERSION = "transfer-lab-bundle", 1
MANIFEST = "bundle.json"
MODEL = MODEL_FILE
TEXT_MEMBERS = ("run.json", "config.json", "dataset.json", "history.csv", "result.json", CARD)
RUN_MEMBERS = (*TEXT_MEMBERS, MODEL)
MAX_BUNDLE_RUNS = 8
"""Runs in one bundle, at most (a pair is 2, a develop-a-model demo 3)."""
MAX_TEXT_MB = 16
"""Each member but the model may unpack to at most this many MB."""
MAX_TEXT_CHARS = 200
"""A run's name or owner, a dataset's or a class's name, at most."""
MAX_SKIPPED_CHARS = 1_000
"""One entry of a dataset's skipped files (its name and why), at most."""
EARLIEST_CREATED = 946_684_800.0
"""2000-01-01 (UTC): a bundled run created earlier is refused."""
CLOCK_SKEW_SECONDS = 600.0
"""How far ahead of this server's clock a bundle's server's may have been: a run created later than that is
refused (one "created" tomorrow stayed the newest run, the Runs page's and Predict's default, for a day)."""
MAX_RUN_SECONDS = 366 * 24 * 3600.0
"""A bundled run's training time, at most (a year)."""
RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")
"""The ids ``RunStore.create`` gives: nothing else names a folder of an imported run."""


class BundleError(TLError):
    """A run bundle that cannot be written or is refused on import."""


def _refused(rule: str, received: str) -> BundleError:
    return BundleError(f"{rule} Received: {received}")


def _run_json(store: RunStore, record: RunRecord) -> dict:
    row = store.list().set_index("id").loc[record.id]
    return {"id": record.id, "name": record.name, "owner": record.owner, "group": record.group,
            "role": record.role, "status": record.status, "created": row["created"].timestamp(),
            "seconds": float(row["seconds"] or 0.0)}


def _public_dataset(dataset: dict) -> dict:
    """The dataset summary without the server's paths and file names."""
    return {key: dataset[key] for key in ("name", "classes", "counts", "images", "skipped", "digest") if key in dataset}


def _public_config(store: RunStore, record: RunRecord) -> str:
    """The run's config.json with the server's paths out: a weights file or trained base by its name
    (a base another run of the store trained as ``<run id>/model.keras``)."""
    saved = json.loads((record.folder / "config.json").read_text())
    root = store.root.resolve()
    for key in ("weights", "base_model"):
        value = saved["spec"].get(key)
        if isinstance(value, str) and value != "imagenet":  # a path, absolute or relative (TL_DATA_DIR=../data)
            path = Path(value).resolve()
            saved["spec"][key] = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
    return json.dumps(saved, indent=2)


def bundle_file_name(run_ids: Sequence[str]) -> str:
    """What a bundle of ``run_ids`` is called where people see it (a download, the command line's file)."""
    return f"transfer-lab-{run_ids[0]}{f'-and-{len(run_ids) - 1}' if len(run_ids) > 1 else ''}.zip"


def _kept_name(run_ids: Sequence[str]) -> str:
    """The kept bundle's name: ``bundle_file_name`` and a digest of every id (two bundles of as many runs
    with the same first run are two files)."""
    digest = hashlib.sha256("\n".join(run_ids).encode()).hexdigest()[:12]
    return f"{bundle_file_name(run_ids).removesuffix('.zip')}-{digest}.zip"


def export_bundle(store: RunStore, run_ids: Sequence[str]) -> Path:
    """A bundle of the finished runs ``run_ids`` (one run, a pair, a demo's group), built once and kept.

    It is kept in the first run's folder (``exports/``) and rebuilt only if missing.

    Raises:
        BundleError: no runs, too many, or one that has not finished (it has no model).
        KeyError: an id that names no stored run.
        StorageError: no room in the data folder for it.
    """
    run_ids = list(dict.fromkeys(run_ids))
    if not 1 <= len(run_ids) <= MAX_BUNDLE_RUNS:
        raise _refused(f"A bundle holds 1 to {MAX_BUNDLE_RUNS} runs.", f"{len(run_ids)}")
    records = [store.get(run_id) for run_id in run_ids]
    for record in records:
        if record.result is None or not record.model_path.is_file():
            raise _refused("A run must have finished to be bundled (a bundle carries its model).",
                           f"run {record.id!r} is {record.status}")
    target = exports_folder(records[0]) / _kept_name(run_ids)
    if target.is_file():
        return target
    models = [run_keras_file(record) for record in records]
    check_room(sum(path.stat().st_size for path in models) + 1_000_000, what="a run bundle")
    texts = {MANIFEST: json.dumps({"format": FORMAT, "version": VERSION, "runs": run_ids,
                                   "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2)}
    for record, model in zip(records, models):
        folder = record.folder
        texts[f"{record.id}/run.json"] = json.dumps(_run_json(store, record), indent=2)
        texts[f"{record.id}/config.json"] = _public_config(store, record)
        texts[f"{record.id}/dataset.json"] = json.dumps(_public_dataset(record.dataset), indent=2)
        texts[f"{record.id}/history.csv"] = record.history.to_csv(index=False)
        texts[f"{record.id}/result.json"] = (folder / "result.json").read_text()
        texts[f"{record.id}/{CARD}"] = model_card(ExportInfo.of(record), "keras", model_bytes=model.stat().st_size)

    def write(path: Path) -> None:
        with zipfile.ZipFile(path, "w") as archive:
            for name, text in texts.items():
                archive.writestr(name, text, compress_type=zipfile.ZIP_DEFLATED)
            for record, model in zip(records, models):  # weights barely compress: stored as they are
                archive.write(model, f"{record.id}/{MODEL}", compress_type=zipfile.ZIP_STORED)

    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(target, write, suffix=".zip")
    return target


def max_bundle_bytes() -> int:
    """A bundle file's size limit: ``MAX_BUNDLE_RUNS`` models at ``TL_MAX_MODEL_FILE_MB`` and their texts."""
    return MAX_BUNDLE_RUNS * (load_settings().max_model_file_mb + len(TEXT_MEMBERS) * MAX_TEXT_MB) * MB


def _check_members(archive: zipfile.ZipFile, name: str) -> tuple[list[str], dict[str, zipfile.ZipInfo]]:
    """The run ids a bundle's manifest names, and its members by name, after every budget."""
    settings = load_settings()
    members = archive.infolist()
    most = 1 + MAX_BUNDLE_RUNS * len(RUN_MEMBERS)
    if len(members) > most:
        raise _refused(f"A run bundle may hold at most {most} archive members ({MAX_BUNDLE_RUNS} runs).",
                       f"{len(members):,} in {name!r}")
    by_name: dict[str, zipfile.ZipInfo] = {}
    for info in members:
        run, _, member = info.filename.partition("/")
        known = info.filename == MANIFEST or (RUN_ID.fullmatch(run) and member in RUN_MEMBERS)
        if not known or info.filename in by_name:
            raise _refused(
                f"A run bundle may hold only {MANIFEST} and, in a folder named by each run's id, "
                f"{', '.join(RUN_MEMBERS)}, each once.", f"{info.filename!r} in {name!r}")
        limit = settings.max_model_file_mb if member == MODEL else MAX_TEXT_MB
        if info.file_size > limit * MB:
            raise _refused(f"A bundle's {member or MANIFEST} may unpack to at most {limit:,} MB.",
                           f"{info.file_size / MB:,.1f} MB in {info.filename!r}")
        by_name[info.filename] = info
    if MANIFEST not in by_name:
        raise _refused(f"A run bundle must hold {MANIFEST} (made by Transfer Lab's Download bundle).",
                       f"{name!r} without it")
    manifest = _json(archive, by_name[MANIFEST])
    runs = manifest.get("runs") if isinstance(manifest, dict) else None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise _refused(f"A run bundle's {MANIFEST} must say format {FORMAT!r}, version {VERSION}.",
                       f"{str(manifest)[:120]!r}")
    if (not isinstance(runs, list) or not 1 <= len(runs) <= MAX_BUNDLE_RUNS
            or not all(isinstance(r, str) and RUN_ID.fullmatch(r) for r in runs) or len(set(runs)) != len(runs)):
        raise _refused(f"A run bundle's {MANIFEST} must list 1 to {MAX_BUNDLE_RUNS} distinct run ids.",
                       f"{str(runs)[:120]!r}")
    for run_id in runs:
        missing = [m for m in RUN_MEMBERS if f"{run_id}/{m}" not in by_name]
        if missing:
            raise _refused("Each run of a bundle must hold all of its members.", f"run {run_id!r} without {missing}")
    extra = {info.split("/")[0] for info in by_name if info != MANIFEST} - set(runs)
    if extra:
        raise _refused(f"A run bundle may hold only the runs its {MANIFEST} lists.", f"{sorted(extra)}")
    return runs, by_name


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    with archive.open(info) as member:
        data = member.read(info.file_size + 1)
    if len(data) > info.file_size:
        raise _refused("A bundle's members must be no larger than they declare.", f"{info.filename!r} is larger")
    return data


def _json(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> object:
    try:
        return json.loads(_read(archive, info).decode("utf-8"), parse_constant=lambda c: math.nan)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _refused("A bundle's .json members must be JSON text.", f"{info.filename!r}") from None


def _text(value: object, what: str, run_id: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS or not value.isprintable():
        raise _refused(f"A bundled run's {what} must be text of at most {MAX_TEXT_CHARS} printable characters.",
                       f"{str(value)[:60]!r} in run {run_id!r}")
    return value


def _printable(value: object, limit: int) -> str:
    """``value`` as one line of at most ``limit`` printable characters (others become "?"): for descriptions
    a page or a terminal shows, which nothing matches against."""
    text = "" if value is None else str(value)
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def _count(value: object, what: str, run_id: str) -> int:
    if not whole_number(value) or value < 0:
        raise _refused(f"A bundled run's {what} must be a count (a whole number, 0 or more).",
                       f"{str(value)[:60]!r} in run {run_id!r}")
    return value


def _checked_dataset(dataset: object, run_id: str) -> dict:
    """The public dataset summary of a bundled run, every value checked (they reach pages and terminals)."""
    if not isinstance(dataset, dict) or not isinstance(dataset.get("classes"), list):
        raise _refused("A bundled run's dataset.json must name its classes.", f"run {run_id!r}")
    public = _public_dataset(dataset)
    public["name"] = _printable(public.get("name"), MAX_TEXT_CHARS)
    public["classes"] = [_text(name, "class name", run_id) for name in public["classes"]]
    if not public["classes"] or len(set(public["classes"])) != len(public["classes"]):
        raise _refused("A bundled run's classes must be named once each.", f"{public['classes'][:5]} in run {run_id!r}")
    if "counts" in public:
        counts = public["counts"]
        if not isinstance(counts, dict) or set(counts) - set(public["classes"]):
            raise _refused("A bundled run's dataset counts must be per class.", f"{str(counts)[:60]} in run {run_id!r}")
        public["counts"] = {name: _count(n, "image count", run_id) for name, n in counts.items()}
    if "images" in public:
        public["images"] = _count(public["images"], "image count", run_id)
    if "skipped" in public:  # how many files the dataset left out (a list of them in earlier releases)
        skipped = public["skipped"]
        if isinstance(skipped, list) and len(skipped) <= MAX_HISTORY_ROWS:
            public["skipped"] = [_printable(entry, MAX_SKIPPED_CHARS) for entry in skipped]
        else:
            public["skipped"] = _count(skipped, "count of skipped files", run_id)
    if "digest" in public and not re.fullmatch(r"[0-9a-f]{1,64}", str(public["digest"])):
        raise _refused("A bundled run's dataset digest must be hexadecimal.", f"run {run_id!r}")
    return public


@dataclasses.dataclass(frozen=True)
class _Staged:
    """A run read from a bundle and checked, in its staging folder, with its index row."""

    run_id: str
    folder: Path
    row: tuple


def _checked_spec(spec: TransferSpec, classes: int, run_id: str) -> TransferSpec:
    """A bundled run's spec as this server's own checks accept it, with one output per class, and its
    weights and base named as an exported bundle names them (never a path outside the bundle's folders)."""
    for field in ("weights", "base_model"):
        value = getattr(spec, field)
        if value is None or (field == "weights" and value == "imagenet"):
            continue
        path = Path(value) if isinstance(value, str) else None
        if path is None or path.is_absolute() or ".." in path.parts or not value.strip():
            raise _refused(f"A bundled run's {field} must be None{', imagenet' if field == 'weights' else ''} or a "
                           "name relative to its server's data (as Download bundle writes it).",
                           f"{field}={value!r} in run {run_id!r}")
    spec = dataclasses.replace(spec, num_classes=classes)
    try:
        check_transfer_spec(spec)
    except (TLError, TypeError, ValueError) as exc:  # the checks' own words; a kind they do not expect, in Python's
        raise _refused(f"A bundled run's spec must be one this server accepts ({exc}).", f"run {run_id!r}") from None
    return spec


def _stage(archive: zipfile.ZipFile, by_name: dict[str, zipfile.ZipInfo], run_id: str, folder: Path) -> _Staged:
    """Check one bundled run's members and write them to ``folder``; returns it with its index row."""
    member = lambda m: by_name[f"{run_id}/{m}"]
    about, saved, dataset, results = (_json(archive, member(m)) for m in
                                      ("run.json", "config.json", "dataset.json", "result.json"))
    try:
        spec_values = dict(saved["spec"])
        spec_values["input_shape"] = tuple(spec_values["input_shape"])
        spec = TransferSpec(**spec_values)
        config = TrainConfig(**saved["config"])
        config.check()
        result = RunResult.from_json(results)
        history = read_history_csv(_read(archive, member("history.csv")), what=f"bundled run {run_id!r}")
        created, seconds = float(about.get("created", time.time())), float(about.get("seconds", 0.0))
    except HistoryError as exc:  # its words name the run
        raise BundleError(str(exc)) from None
    except TLError as exc:
        raise _refused(f"A bundled run's configuration must be one this server accepts ({exc}).",
                       f"run {run_id!r}") from None
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, pd.errors.ParserError, csv.Error,
            zlib.error):
        raise _refused("A bundled run's config.json, dataset.json, result.json and history.csv must be as "
                       "Transfer Lab writes them.", f"run {run_id!r}, whose files do not read back") from None
    if spec.backbone not in BACKBONES:
        raise _refused(f"A bundled run's backbone must be one of this server's registry {sorted(BACKBONES)}.",
                       f"{spec.backbone!r} in run {run_id!r}")
    if not (EARLIEST_CREATED <= created <= time.time() + CLOCK_SKEW_SECONDS and 0.0 <= seconds <= MAX_RUN_SECONDS):
        raise _refused("A bundled run must be created between 2000 and now (its server's clock may be 10 minutes "
                       "ahead), and train for at most a year.",
                       f"created {created!r}, seconds {seconds!r} in run {run_id!r}")
    public = _checked_dataset(dataset, run_id)
    classes = public["classes"]
    spec = _checked_spec(spec, len(classes), run_id)
    if list(result.class_names) != classes:
        raise _refused("A bundled run's result and dataset must name the same classes.",
                       f"{list(result.class_names)[:5]} and {classes[:5]} in run {run_id!r}")
    if (mismatch := result.mismatch()) is not None:
        raise _refused(f"A bundled run's result must fit its {len(classes)} classes.", f"{mismatch} in run {run_id!r}")
    name, owner = _text(about.get("name"), "name", run_id), _text(about.get("owner"), "owner", run_id)
    group, role = _text(about.get("group"), "group", run_id), _text(about.get("role"), "role", run_id)
    folder.mkdir()
    for m in (MODEL, CARD):
        (folder / m).write_bytes(_read(archive, member(m)))
    try:
        model = load_model_file(folder / MODEL)
    except ModelFileError as exc:
        raise _refused(f"A bundled run's model must pass the checks of an uploaded model ({exc}).",
                       f"run {run_id!r}") from None
    if (mismatch := run_mismatch(model, tuple(spec.input_shape), len(classes))) is not None:
        raise _refused("A bundled run's model must take the images its spec names and give one score per class.",
                       f"a model of {mismatch} for input {tuple(spec.input_shape)} and {len(classes)} classes in "
                       f"run {run_id!r}")
    (folder / "config.json").write_text(json.dumps(
        {"spec": dataclasses.asdict(spec), "config": dataclasses.asdict(config), "owner": owner,
         "group": group, "role": role}, indent=2))
    public["imported"] = True
    (folder / "dataset.json").write_text(json.dumps(public, indent=2))
    (folder / "history.csv").write_text(history.to_csv(index=False))
    (folder / "result.json").write_text(json.dumps(result.to_json(), indent=2))
    best = history["val_accuracy"].max() if len(history) else math.nan
    status = "stopped" if result.stopped else "done"
    row = (run_id, created, name or f"{spec.backbone} on {public['name'] or 'images'}", spec.backbone,
           spec.input_shape[0], spec.trainable_from or "frozen", public["name"], status,
           None if math.isnan(best) else float(best), len(history), seconds, owner, group, role,
           kept_accuracy(result, history))
    return _Staged(run_id, folder, row)


def import_run(path: str | Path, store: RunStore) -> list[str]:
    """Import a bundle's runs into ``store``, keeping their ids, names, owners, groups and histories.

    Returns:
        The imported run ids, in the bundle's order; each opens on Predict like a run trained here.

    Raises:
        BundleError: a bundle over a budget, not made by Transfer Lab, naming runs already here, or
            holding a model refused by the checks of an uploaded model; nothing is imported.
        StorageError: no room in the data folder.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > max_bundle_bytes():
        raise _refused(f"A run bundle may be at most {max_bundle_bytes() / MB:,.0f} MB "
                       f"({MAX_BUNDLE_RUNS} runs at TL_MAX_MODEL_FILE_MB).", f"{size / MB:,.0f} MB")
    check_room(size, what="an imported run bundle")
    staging = store.root / f".import-{uuid.uuid4().hex[:12]}"
    moved: list[Path] = []
    try:
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data, \
                zipfile.ZipFile(handle) as archive:
            try:
                check_archive(archive, load_settings(), data)
            except DatasetError as exc:
                raise _refused(f"A run bundle must pass the checks of every uploaded archive ({exc}).",
                               repr(path.name)) from None
            runs, by_name = _check_members(archive, path.name)
            check_room(sum(info.file_size for info in archive.infolist()), what="an imported run bundle, unpacked")
            here = [run_id for run_id in runs if store.has(run_id)]
            if here:
                raise _refused("A bundle's runs must not be in this server's run store already.",
                               f"{here} (imported before?)")
            staging.mkdir()
            staged = [_stage(archive, by_name, run_id, staging / run_id) for run_id in runs]
        for run in staged:
            target = store.root / run.run_id
            try:
                run.folder.rename(target)
            except OSError as exc:  # another session's import of the same run landed since the check above
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                raise _refused("A bundle's runs must not be in this server's run store already.",
                               f"[{run.run_id!r}] (imported at the same moment elsewhere?)") from None
            moved.append(target)
        store.add_rows([run.row for run in staged])
        return list(runs)
    except (zipfile.BadZipFile, ValueError, EOFError, NotImplementedError, RuntimeError, zlib.error,
            sqlite3.IntegrityError) as exc:
        for folder in moved:
            shutil.rmtree(folder, ignore_errors=True)
        raise _refused("A run bundle must be a zip archive made by Transfer Lab's Download bundle.",
                       f"{path.name!r} ({type(exc).__name__})") from None
    except BaseException:
        for folder in moved:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
