"""tlcore: transfer learning with the pretrained ImageNet CNNs of keras.applications.

A plain Python library (no Streamlit): the Transfer Lab pages call it, and so can a
notebook. It is built in wings whose imports run one way (README, "Layout")::

    core < models, data < inference < training < explain, deploy < tlcore

This facade names what pages, notebooks and README use, grouped by wing. Each name is
imported on first use (PEP 562), so ``import tlcore`` loads neither Keras nor Ray and
changes no environment variable; ``tlcore.load_backbone`` imports what it needs.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str | tuple[str, str]] = {
    # core: settings, errors, crash-safe writes, the data folder's quota, access (no Keras)
    "admin_names": "core.access",
    "atomic_save": "core.atomic",
    "atomic_write_bytes": "core.atomic",
    "atomic_write_text": "core.atomic",
    "BudgetError": "core.errors",
    "can_manage": "core.access",
    "check_password": "core.access",
    "check_room": "core.storage",
    "ConfigError": "core.errors",
    "data_usage": "core.storage",
    "DatasetError": "core.errors",
    "DataUsage": "core.storage",
    "delete_dataset": "core.storage",
    "format_size": "core.storage",
    "ImageError": "core.errors",
    "is_local_url": "core.access",
    "keras_cache_dir": "core.settings",
    "KERAS_CACHE_WORDS": "core.access",
    "list_datasets": "core.storage",
    "load_settings": "core.settings",
    "markdown_text": "core.access",
    "message_text": "core.access",
    "ModelFileError": "core.errors",
    "record_try": "core.tries",
    "redact_paths": "core.access",
    "Settings": "core.settings",
    "ShapeError": "core.errors",
    "StorageError": "core.atomic",
    "TLError": "core.errors",
    "try_verdict": "core.tries",
    "TryVerdict": "core.tries",
    "WeightsError": "core.errors",
    "wrong_try_delay": "core.access",
    # models: the registry, shapes, weights, backbones, model files and uploads, transfer specs and their cost
    "ALL_LAYERS": "models.spec",
    "attach_head": "models.build",
    "BACKBONES": "models.zoo",
    "BackboneSpec": "models.zoo",
    "base_and_head": "models.build",
    "build_transfer_model": "models.build",
    "check_input_shape": "models.shapes",
    "check_model_config": "models.model_files",
    "check_spec_budget": "models.build",
    "check_transfer_spec": "models.build",
    "compare_layers": "models.summary",
    "CONV_BLOCKS": "models.spec",
    "CONV_FILTERS": "models.spec",
    "CONV_KERNELS": "models.spec",
    "CONV_POOLS": "models.spec",
    "default_feature_layer": "models.choices",
    "default_trainable_from": "models.choices",
    "delete_upload": "models.uploads",
    "download_weights": "models.weights",
    "feature_map_shape": "models.shapes",
    "get_backbone": "models.zoo",
    "head_feature_map": "models.spec",
    "imagenet_labels": "models.labels",
    "imagenet_wordnet_ids": "models.labels",
    "layer_names": "models.backbone",
    "layer_table": "models.summary",
    "list_uploads": "models.uploads",
    "load_backbone": "models.backbone",
    "load_model_file": "models.model_files",
    "model_cost": "models.build",
    "ModelCost": "models.cost",
    "NoTopWeightsError": "models.weights",
    "parameter_counts": "models.summary",
    "ParameterCounts": "models.summary",
    "plan_transfer_model": "models.build",
    "POOLINGS": "models.spec",
    "reads_imagenet_weights": "models.choices",
    "set_trainable_from": "models.build",
    "ShapeCheck": "models.shapes",
    "smallest_input": "models.shapes",
    "spec_summary": "models.choices",
    "store_model_upload": "models.uploads",
    "trainable_from_choices": "models.build",
    "training_words": "models.choices",
    "TransferPlan": "models.build",
    "TransferSpec": "models.spec",
    "upload_kind": "models.uploads",
    "weights_file_kind": "models.weights",
    "weights_status": "models.weights",
    "weights_words": "models.choices",
    "WeightsFile": "models.zoo",
    "WeightsStatus": "models.weights",
    # data: images, intake of archives and folders, the dataset store, drawn samples, streaming
    "content_digest": "data.datasets",
    "fit_image": "data.images",
    "ImageDataset": "data.datasets",
    "load_dataset": "data.datasets",
    "load_image": "data.images",
    "sample_dataset": "data.samples",
    "server_folder": "data.intake",
    "upload_key": "data.datasets",
    # inference: compiled passes, precision, top-k, features, batches
    "batch_inputs": "inference.batch",
    "BatchItem": "inference.batch",
    "BatchResult": "inference.batch",
    "Calibration": "inference.calibration",
    "choose_precision": "inference.precision",
    "compare_precisions": "inference.calibration",
    "compiled_forward": "inference.forward",
    "describe_backbone": "inference.precision",
    "extract_features": "inference.features",
    "feature_extractor": "inference.features",
    "force_precision": "inference.precision",
    "forced_precision": "inference.precision",
    "inference_forward": "inference.precision",
    "model_input_size": "inference.predict",
    "precision_for_run": "inference.precision",
    "PrecisionCheck": "inference.calibration",
    "PrecisionChoice": "inference.precision",
    "PRECISIONS": "inference.precision",
    "predict_batch": "inference.batch",
    "predict_top_k": "inference.predict",
    "project_2d": "inference.features",
    # training: configs, the loop, feature caches, the run store, comparisons, jobs in Ray, the demo
    "BatchProgress": "training.config",
    "check_job_memory": "training.memory",
    "connect_ray": ("training.worker", "connect"),
    "default_comparison": "training.compare",
    "DEMO_RECIPE": "training.demo",
    "demo_target_dataset": "training.demo",
    "DemoRecipe": "training.demo",
    "DemoRegistry": "training.demo",
    "DemoResult": "training.demo",
    "DemoRun": "training.demo",
    "DemoSnapshot": "training.demo",
    "disconnect_ray": ("training.worker", "disconnect"),
    "estimate_job_memory": "training.memory",
    "evaluate": "training.train",
    "Evaluation": "training.config",
    "frozen_split": "training.train",
    "INTERRUPTED": "training.runs",
    "JobQueue": "training.jobs",
    "JobSnapshot": "training.jobs",
    "OPTIMIZERS": "training.config",
    "RunRecord": "training.runs",
    "RunResult": "training.results",
    "RunStore": "training.runs",
    "scratch_comparison": "training.compare",
    "scratch_config": "training.compare",
    "scratch_spec": "training.compare",
    "ScratchComparison": "training.compare",
    "start_demo": "training.demo",
    "train": "training.train",
    "train_demo": "training.demo",
    "TrainConfig": "training.config",
    "TrainingJob": "training.jobs",
    "TrainResult": "training.config",
    "wrong_predictions": "training.runs",
    "WrongImage": "training.runs",
    "WrongPrediction": "training.results",
    # explain: Grad-CAM, feature maps, dataset maps, network diagrams, the Keras code behind a page
    "as_notebook": "explain.code",
    "cam_map_size": "explain.grad_cam",
    "check_map_limit": "explain.dataset_map",
    "conv_layer_names": "explain.feature_maps",
    "dataset_map": "explain.dataset_map",
    "DatasetMap": "explain.dataset_map",
    "depth_note": "explain.feature_maps",
    "feature_grid": "explain.feature_maps",
    "feature_maps": "explain.feature_maps",
    "feature_program": "explain.code",
    "FeatureMaps": "explain.feature_maps",
    "grad_cam": "explain.grad_cam",
    "head_layers": "explain.graph",
    "heat_overlay": "explain.grad_cam",
    "last_conv_layer": "explain.grad_cam",
    "last_kept_layer": "explain.graph",
    "layers_program": "explain.code",
    "map_subset": "explain.dataset_map",
    "nearest_neighbour_accuracy": "explain.dataset_map",
    "network_graph": "explain.graph",
    "prediction_program": "explain.code",
    "run_dataset": "explain.dataset_map",
    "thumbnail_url": "explain.dataset_map",
    "transfer_graph": "explain.graph",
    "transfer_program": "explain.code",
    # deploy: exports in .keras, TFLite and SavedModel with their model cards
    "EXPORT_FORMATS": "deploy.formats",
    "export_path": "deploy.export",
    "export_run": "deploy.export",
    "ExportFormat": "deploy.formats",
    "ExportInfo": "deploy.card",
    "exports_folder": "deploy.export",
    "run_keras_file": "deploy.export",
    "write_export": "deploy.export",
}
"""Public name -> the wing module that defines it (or (module, name there) when renamed here)."""

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a public name from its wing on first use, and keep it here."""
    try:
        where = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'tlcore' has no attribute {name!r}") from None
    module, attribute = (where, name) if isinstance(where, str) else where
    value = getattr(importlib.import_module(f"tlcore.{module}"), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
