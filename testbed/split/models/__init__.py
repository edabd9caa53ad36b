"""Splittable torchvision models: registry, weights loading and head/tail splitting."""

from testbed.split.models.registry import INPUT, NONE, ModelSpec, get_spec, model_names, register_model
from testbed.split.models.split import FeatureInfo, feature_table, model_stages, split_loaded, split_model
from testbed.split.models.weights import WeightsError, load_model

__all__ = [
    "INPUT", "NONE", "ModelSpec", "get_spec", "model_names", "register_model",
    "FeatureInfo", "feature_table", "model_stages", "split_loaded", "split_model",
    "WeightsError", "load_model",
]
