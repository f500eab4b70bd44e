"""Which teacher a run distils: the file given, or the dataset's cached teacher, pretrained on first use.

``check_teacher_source`` is torch-free and runs before any work; ``resolve_teacher_path`` may train
the cached teacher (minutes) and so imports ``pretrain`` only when it does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from fastlrwa.config.normalisation import teacher_normalisation
from fastlrwa.config.presets import PRETRAIN_PRESETS, pretrain_config
from fastlrwa.config.schema import TeacherConfig
from fastlrwa.data.catalog import DatasetInfo
from fastlrwa.errors import CheckpointError, ConfigError
from fastlrwa.paths import CACHE_ENV, require_writable_dir, user_cache_dir

# Datasets whose teacher trains in minutes on a CPU; for the others a teacher file must be given.
AUTO_PRETRAIN_DATASETS = ("digits", "mnist", "fashion-mnist")


def cached_teacher_path(dataset: str, arch: str) -> Path:
    return user_cache_dir() / "teachers" / f"{dataset}-{arch}" / "model.pt"


def check_teacher_source(config: TeacherConfig, info: DatasetInfo) -> None:
    """Fail now, not after minutes of work: the teacher file is missing, or none is given where none can be
    trained, or the cache a first-use teacher would go to cannot be written; a factory without the weights it
    loads; a teacher normalisation of the wrong length."""
    teacher_normalisation(config, info)
    if config.factory is not None and config.path is None:
        raise ConfigError(
            f"--teacher-factory {config.factory} builds the model, and its weights come from --teacher FILE "
            "(a torch.save of its state_dict); pass --teacher"
        )
    if config.path is not None:
        path = Path(config.path).expanduser()
        if not path.is_file():
            raise CheckpointError(
                f"teacher file {path} does not exist; pass --teacher with a model.pt from "
                f"`fastlrwa pretrain --dataset {info.name} --out DIR`"
            )
        return
    if info.name not in AUTO_PRETRAIN_DATASETS:
        raise CheckpointError(
            f"no teacher given for {info.name}: pass --teacher FILE, or train one first with "
            f"`fastlrwa pretrain --dataset {info.name} --out teachers/{info.name}` (a GPU is recommended)"
        )
    path = _cached_path(config, info)
    if not path.is_file():
        require_writable_dir(
            path.parent, "teacher cache", fix=f"set {CACHE_ENV} to a folder you can write to, or pass --teacher FILE"
        )


def resolve_teacher_path(
    config: TeacherConfig,
    info: DatasetInfo,
    *,
    data_root: str | None,
    seed: int,
    progress: bool,
    log: Callable[[str], None],
) -> Path:
    """The teacher file to use; pretrains and caches the dataset's default teacher when none is given."""
    check_teacher_source(config, info)
    if config.path is not None:
        return Path(config.path).expanduser().resolve()
    path = _cached_path(config, info)
    if not path.is_file():
        from fastlrwa.commands.pretrain import run_pretrain  # torch: only when a teacher is trained here

        log(f"no cached {path.parent.name} teacher: training one now (once) into {path.parent}")
        run_pretrain(
            pretrain_config(
                info.name,
                {
                    "arch": _arch(config, info),
                    "out": str(path.parent),
                    "data_root": data_root,
                    "seed": seed,
                    "progress": progress,
                },
            )
        )
    return path


def cached_teacher_hint(config: TeacherConfig, path: Path) -> str | None:
    """What to do when the teacher at ``path`` cannot be loaded, if it is the cache's: delete it to retrain it."""
    if config.path is not None:
        return None
    return f"it is the cached teacher: delete {path.parent} and run again to train it afresh"


def _cached_path(config: TeacherConfig, info: DatasetInfo) -> Path:
    return cached_teacher_path(info.name, _arch(config, info))


def _arch(config: TeacherConfig, info: DatasetInfo) -> str:
    return config.arch or PRETRAIN_PRESETS[info.name]["arch"]
