"""Classifiers and the generator, built by name; model checkpoints saved atomically and loaded safely.

Every classifier follows ``Classifier``: ``forward(x, return_features=False)`` gives logits or
``(logits, features)``, the features being the last feature map (DAFL's ``features_T[-1]``) from the same pass.

All models work with ``torch.func.functional_call`` and nested ``torch.func.grad``. BatchNorm (and the
generator's spectral norm) update their buffers in place in train mode, so under a ``torch.func``
transform pass the buffers as an *argument* of the transformed function, not from a closure:
``grad(lambda p, b: loss(functional_call(model, (p, b), x)))(params, buffers)``.

The names below are imported on first use (``fastlrwa.lazy``): ``names`` and ``meta`` are torch-free.
"""

from fastlrwa.lazy import lazy_exports

_EXPORTS = {
    "check_num_classes": "fastlrwa.models.checkpoint",
    "load_checkpoint": "fastlrwa.models.checkpoint",
    "load_checkpoint_with_meta": "fastlrwa.models.checkpoint",
    "save_model_checkpoint": "fastlrwa.models.checkpoint",
    "Classifier": "fastlrwa.models.classifier",
    "layer_default_init": "fastlrwa.models.classifier",
    "Generator": "fastlrwa.models.generator",
    "build_generator": "fastlrwa.models.generator",
    "ModelMeta": "fastlrwa.models.meta",
    "CLASSIFIER_NAMES": "fastlrwa.models.names",
    "build_model": "fastlrwa.models.registry",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
