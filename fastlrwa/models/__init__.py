"""Classifiers and the generator, built by name; model checkpoints saved atomically and loaded safely.

Every classifier follows ``Classifier``: ``forward(x, return_features=False)`` gives logits or
``(logits, features)``, the features being the last feature map (DAFL's ``features_T[-1]``) from the same pass.

All models work with ``torch.func.functional_call`` and nested ``torch.func.grad``. BatchNorm (and the
generator's spectral norm) update their buffers in place in train mode, so under a ``torch.func``
transform pass the buffers as an *argument* of the transformed function, not from a closure:
``grad(lambda p, b: loss(functional_call(model, (p, b), x)))(params, buffers)``.
"""

from fastlrwa.models.checkpoint import check_num_classes, load_checkpoint, load_checkpoint_with_meta, save_model_checkpoint
from fastlrwa.models.classifier import Classifier, layer_default_init
from fastlrwa.models.generator import Generator, build_generator
from fastlrwa.models.meta import ModelMeta
from fastlrwa.models.registry import CLASSIFIER_NAMES, build_model

__all__ = [
    "CLASSIFIER_NAMES",
    "Classifier",
    "Generator",
    "ModelMeta",
    "build_generator",
    "build_model",
    "check_num_classes",
    "layer_default_init",
    "load_checkpoint",
    "load_checkpoint_with_meta",
    "save_model_checkpoint",
]
