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
    "checkpoint": ("check_num_classes", "load_checkpoint", "load_checkpoint_with_meta", "save_model_checkpoint"),
    "classifier": ("Classifier", "layer_default_init"),
    "generator": ("Generator", "build_generator"),
    "meta": ("ModelMeta",),
    "names": ("CLASSIFIER_NAMES",),
    "registry": ("build_model",),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
