"""``fastlrwa pretrain``: a teacher trained with the dataset's recipe (``fastlrwa.trainer.pretrain``).

Everything a user can get wrong is checked before torch is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from fastlrwa.config.schema import PretrainConfig
from fastlrwa.config.validate import validate_pretrain_config
from fastlrwa.errors import ConfigError
from fastlrwa.paths import require_writable_dir

if TYPE_CHECKING:
    from fastlrwa.distributed import DistributedContext


def check_pretrain_output(
    config: PretrainConfig, *, force: bool = False, flags: Mapping[str, str] | None = None
) -> None:
    """Before any work: ``--out`` can be written and holds no teacher (``train`` never overwrites a run either)."""
    out_flag = (flags or {}).get("out", "out")
    require_writable_dir(config.out, out_flag)
    model = Path(config.out) / "model.pt"
    if model.exists() and not force:
        raise ConfigError(
            f"{config.out} already holds a teacher ({model}); pass --force to replace it, or choose another {out_flag}"
        )


def run_pretrain(
    config: PretrainConfig,
    context: DistributedContext | None = None,
    *,
    force: bool = False,
    flags: Mapping[str, str] | None = None,
) -> dict | None:
    """Check the config and the output, then train and write the teacher
    (:func:`~fastlrwa.trainer.pretrain.pretrain_teacher`; ``context``: see there).

    An ``OUT/model.pt`` is replaced only with ``force``; ``flags`` spells the config keys as the command's
    flags in messages.
    """
    validate_pretrain_config(config, flags)
    check_pretrain_output(config, force=force, flags=flags)
    from fastlrwa.data.dali import check_loader  # torch: only once the checks above passed
    from fastlrwa.trainer.pretrain import pretrain_teacher

    check_loader(config.loader)
    return pretrain_teacher(config, context)
