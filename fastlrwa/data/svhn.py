"""SVHN (cropped digits) from ``train_32x32.mat`` / ``test_32x32.mat``.

The files hold ``X`` as uint8 ``[32, 32, 3, N]`` (height, width, channel, sample) and ``y`` as
``[N, 1]`` with the digit 0 stored as label 10.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import torch

from fastlrwa.data.catalog import dataset_info
from fastlrwa.data.locate import FileSpec
from fastlrwa.data.source import DiskSource, Split
from fastlrwa.data.split import ArraySplit, CorruptDataError, checked_split

_SVHN = dataset_info("svhn")


def _read(files: tuple[Path, ...], split: Split) -> ArraySplit:
    (path,) = files
    try:
        mat = scipy.io.loadmat(path, variable_names=("X", "y"))
    except (OSError, ValueError, TypeError, EOFError, IndexError, scipy.io.matlab.MatReadError) as exc:
        raise CorruptDataError(f"{path}: not a readable .mat file ({exc}); re-download it") from None
    if "X" not in mat or "y" not in mat:
        raise CorruptDataError(f"{path}: has no 'X' and 'y' variables; the file is not SVHN")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"])
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or y.size != x.shape[3]:
        raise CorruptDataError(
            f"{path}: X is {x.dtype} {list(x.shape)} with {y.size} labels, expected uint8 "
            f"[32, 32, 3, N] and N labels; the file is not SVHN"
        )
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)))
    labels = torch.from_numpy(y.reshape(-1).astype(np.int64))
    if bool(((labels < 1) | (labels > 10)).any()):
        raise CorruptDataError(f"{path}: labels outside 1..10; the file is not SVHN")
    return checked_split(images, labels % 10, _SVHN, str(path))


def _download(root: Path, split: Split) -> None:
    # torchvision is only needed when downloading; given ROOT/svhn it writes ROOT/svhn/<split>_32x32.mat.
    from torchvision.datasets import SVHN

    SVHN(str(root / "svhn"), split=split, download=True)


SVHN_SOURCE = DiskSource(
    folders=lambda root: [root / "svhn", root],
    needed=lambda split: (FileSpec((f"{split}_32x32.mat",)),),
    read=_read,
    how_to_get="put train_32x32.mat and test_32x32.mat from ufldl.stanford.edu/housenumbers in {root}/svhn/",
    download=_download,
)
