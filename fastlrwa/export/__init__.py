"""Shipping a distilled student: ``torch.export`` + AOTInductor to ``model.pt2`` with a ``meta.json``.

``fold_batchnorm``, ``export_classifier``, ``write_package`` and ``export_metadata`` are the steps of
the ``fastlrwa export`` command (``fastlrwa.commands.export``). The package runs from Python with
``torch._inductor.aoti_load_package`` and from C++ with ``fastlrwa-infer`` (``CMakeLists.txt``).
"""

from fastlrwa.export.aot import export_classifier, runner_metadata, write_package
from fastlrwa.export.fold import ChannelAffine, fold_batchnorm
from fastlrwa.export.metadata import export_metadata, file_sha256

__all__ = [
    "ChannelAffine",
    "export_classifier",
    "export_metadata",
    "file_sha256",
    "fold_batchnorm",
    "runner_metadata",
    "write_package",
]
