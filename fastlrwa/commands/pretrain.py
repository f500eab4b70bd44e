"""``fastlrwa pretrain``: a teacher trained with the dataset's recipe (``fastlrwa.trainer.pretrain``)."""

from __future__ import annotations

from fastlrwa.config.schema import PretrainConfig
from fastlrwa.config.validate import validate_pretrain_config
from fastlrwa.data.dali import check_loader
from fastlrwa.distributed import DistributedContext
from fastlrwa.trainer.pretrain import pretrain_teacher


def run_pretrain(config: PretrainConfig, context: DistributedContext | None = None) -> dict | None:
    """Check the config, then train and write the teacher (see :func:`~fastlrwa.trainer.pretrain.pretrain_teacher`)."""
    validate_pretrain_config(config)
    check_loader(config.loader)
    return pretrain_teacher(config, context)
