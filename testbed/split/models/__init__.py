"""Splittable torchvision models: registry, weights loading and head/tail splitting.

Importing the package registers the model zoo (:mod:`testbed.split.models.zoo`); adding a model is
one decomposition function plus a :func:`register_model` call there. Architectures torchvision does not
have bring their own builder (:mod:`testbed.split.models.efficientnet_lite`).
"""

# Registration order is the listing order: torchvision's models first, then those with their own builder.
# isort: off
from testbed.split.models import zoo  # noqa: F401  (registers the torchvision models)
from testbed.split.models import efficientnet_lite  # noqa: F401  (EfficientNet-Lite, packaged weights)
# isort: on
from testbed.split.models.heads import HEADS, head_method, load_head, register_head
from testbed.split.models.registry import INPUT, MODELS, NONE, ModelSpec, get_spec, model_names, register_model
from testbed.split.models.split import FeatureInfo, feature_table, model_stages, split_loaded, split_model
from testbed.split.models.weights import WeightsError, load_model

__all__ = [
    "HEADS",
    "INPUT",
    "MODELS",
    "NONE",
    "FeatureInfo",
    "ModelSpec",
    "WeightsError",
    "feature_table",
    "get_spec",
    "head_method",
    "load_head",
    "load_model",
    "model_names",
    "model_stages",
    "register_head",
    "register_model",
    "split_loaded",
    "split_model",
]
