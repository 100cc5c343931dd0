"""tlcore: transfer learning with the pretrained ImageNet CNNs of keras.applications.

A plain Python library (no Streamlit): the Transfer Lab pages call it, and so
can a notebook. Importing it has no side effects beyond importing Keras.
"""

from tlcore.access import can_manage, check_password, markdown_text, redact_paths, wrong_try_delay
from tlcore.backbone import load_backbone
from tlcore.batch import BatchItem, BatchResult, batch_inputs, predict_batch
from tlcore.build import (
    ALL_LAYERS,
    CONV_BLOCKS,
    CONV_FILTERS,
    CONV_KERNELS,
    CONV_POOLS,
    POOLINGS,
    TransferPlan,
    TransferSpec,
    attach_head,
    base_and_head,
    build_transfer_model,
    check_transfer_spec,
    head_feature_map,
    plan_transfer_model,
    set_trainable_from,
    trainable_from_choices,
)
from tlcore.atomic import StorageError, atomic_save, atomic_write_bytes, atomic_write_text
from tlcore.datasets import ImageDataset, content_digest, load_dataset, sample_dataset, server_folder, upload_key
from tlcore.dataset_map import (
    DatasetMap,
    check_map_limit,
    dataset_map,
    map_subset,
    nearest_neighbour_accuracy,
    run_dataset,
    thumbnail_url,
)
from tlcore.budgets import (
    ModelCost,
    check_job_memory,
    check_spec_budget,
    estimate_job_memory,
    model_cost,
)
from tlcore.compare import ScratchComparison, scratch_comparison, scratch_config, scratch_spec
from tlcore.demo import (
    DEMO_RECIPE,
    DemoRecipe,
    DemoResult,
    DemoRun,
    DemoSnapshot,
    demo_target_dataset,
    start_demo,
    train_demo,
)
from tlcore.code import as_notebook, feature_program, layers_program, prediction_program, transfer_program
from tlcore.errors import (
    BudgetError,
    ConfigError,
    DatasetError,
    ImageError,
    ModelFileError,
    ShapeError,
    TLError,
    WeightsError,
)
from tlcore.graph import head_layers, last_kept_layer, network_graph, transfer_graph
from tlcore.export import EXPORT_FORMATS, ExportFormat, ExportInfo, export_run, run_keras_file, write_export
from tlcore.feature_maps import FeatureMaps, conv_layer_names, depth_note, feature_grid, feature_maps
from tlcore.features import extract_features, feature_extractor, project_2d
from tlcore.images import fit_image, load_image
from tlcore.grad_cam import cam_map_size, grad_cam, heat_overlay, last_conv_layer
from tlcore.inference import compiled_forward
from tlcore.jobs import JobQueue, JobSnapshot, TrainingJob, connect as connect_ray
from tlcore.precision import (
    PRECISIONS,
    Calibration,
    PrecisionCheck,
    PrecisionChoice,
    choose_precision,
    compare_precisions,
    force_precision,
    forced_precision,
    inference_forward,
    precision_for_run,
)
from tlcore.model_files import check_model_config, load_model_file
from tlcore.labels import imagenet_labels, imagenet_wordnet_ids
from tlcore.predict import model_input_size, predict_top_k
from tlcore.runs import RunRecord, RunStore
from tlcore.settings import Settings, load_settings
from tlcore.shapes import ShapeCheck, check_input_shape, feature_map_shape, smallest_input
from tlcore.storage import DataUsage, check_room, data_usage, delete_dataset, format_size, list_datasets
from tlcore.summary import ParameterCounts, compare_layers, layer_table, parameter_counts
from tlcore.train import OPTIMIZERS, BatchProgress, Evaluation, TrainConfig, TrainResult, evaluate, frozen_split, train
from tlcore.weights import WeightsStatus, download_weights, keras_cache_dir, weights_status
from tlcore.zoo import BACKBONES, BackboneSpec, WeightsFile, get_backbone

__all__ = [
    "ALL_LAYERS",
    "BACKBONES",
    "OPTIMIZERS",
    "POOLINGS",
    "BackboneSpec",
    "BatchProgress",
    "BudgetError",
    "ConfigError",
    "DatasetError",
    "Evaluation",
    "ImageDataset",
    "ImageError",
    "JobQueue",
    "JobSnapshot",
    "ModelCost",
    "ModelFileError",
    "ParameterCounts",
    "RunRecord",
    "RunStore",
    "ScratchComparison",
    "Settings",
    "ShapeCheck",
    "ShapeError",
    "StorageError",
    "TLError",
    "TrainConfig",
    "TrainResult",
    "TrainingJob",
    "TransferPlan",
    "TransferSpec",
    "WeightsError",
    "WeightsFile",
    "WeightsStatus",
    "atomic_save",
    "atomic_write_bytes",
    "atomic_write_text",
    "attach_head",
    "base_and_head",
    "check_model_config",
    "load_model_file",
    "build_transfer_model",
    "check_input_shape",
    "check_job_memory",
    "check_spec_budget",
    "check_transfer_spec",
    "compare_layers",
    "compiled_forward",
    "connect_ray",
    "download_weights",
    "estimate_job_memory",
    "evaluate",
    "extract_features",
    "feature_extractor",
    "feature_map_shape",
    "fit_image",
    "frozen_split",
    "get_backbone",
    "imagenet_labels",
    "imagenet_wordnet_ids",
    "keras_cache_dir",
    "layer_table",
    "load_backbone",
    "load_dataset",
    "load_image",
    "load_settings",
    "model_cost",
    "model_input_size",
    "parameter_counts",
    "plan_transfer_model",
    "predict_top_k",
    "project_2d",
    "sample_dataset",
    "set_trainable_from",
    "smallest_input",
    "train",
    "trainable_from_choices",
    "weights_status",
    # datasets and the data folder's budget
    "DataUsage",
    "check_room",
    "content_digest",
    "data_usage",
    "delete_dataset",
    "format_size",
    "list_datasets",
    "server_folder",
    "upload_key",
    # a dataset as a map of its feature vectors
    "DatasetMap",
    "check_map_limit",
    "dataset_map",
    "map_subset",
    "nearest_neighbour_accuracy",
    "run_dataset",
    "thumbnail_url",
    # the Keras program behind each page, and heads with new convolutional blocks
    "CONV_BLOCKS",
    "CONV_FILTERS",
    "CONV_KERNELS",
    "CONV_POOLS",
    "as_notebook",
    "feature_program",
    "head_feature_map",
    "layers_program",
    "prediction_program",
    "transfer_program",
    # what the network sees: Grad-CAM
    "cam_map_size",
    "grad_cam",
    "heat_overlay",
    "last_conv_layer",
    # access for a team, batch prediction, deployable exports
    "BatchItem",
    "BatchResult",
    "EXPORT_FORMATS",
    "ExportFormat",
    "ExportInfo",
    "batch_inputs",
    "can_manage",
    "check_password",
    "export_run",
    "markdown_text",
    "predict_batch",
    "redact_paths",
    "run_keras_file",
    "write_export",
    "wrong_try_delay",
    # inference precision (float32, or bfloat16 where measured faster)
    "PRECISIONS",
    "Calibration",
    "PrecisionCheck",
    "PrecisionChoice",
    "choose_precision",
    "compare_precisions",
    "force_precision",
    "forced_precision",
    "inference_forward",
    "precision_for_run",
    # transfer against scratch
    "scratch_comparison",
    "scratch_config",
    "scratch_spec",
    # the develop-a-model demo, offline
    "DEMO_RECIPE",
    "DemoRecipe",
    "DemoResult",
    "DemoRun",
    "DemoSnapshot",
    "demo_target_dataset",
    "start_demo",
    "train_demo",
    # what a layer sees, and the network as a diagram
    "FeatureMaps",
    "conv_layer_names",
    "depth_note",
    "feature_grid",
    "feature_maps",
    "head_layers",
    "last_kept_layer",
    "network_graph",
    "transfer_graph",
]
