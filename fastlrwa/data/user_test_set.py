"""A labelled test set of the user's own (``--test-data``): an ImageFolder tree or an ``.npz`` of arrays ``x`` and
``y``, read as uint8 pixels at the dataset's input shape into an ``ArraySplit``.

The images are raw pixels, before any normalisation: the run normalises them as it does the dataset's own test
set, and a teacher from outside fastlrwa maps that into the normalisation it was trained with
(``fastlrwa.models.foreign_teacher``), so the teacher sees them as ``--teacher-mean`` / ``--teacher-std`` say.

- DIR, torchvision's ImageFolder layout: one folder of images per class. Folders named after the classes (their
  indices ``0``..``C-1`` or the dataset's class names) are those classes, and classes without a folder are
  allowed; any other names are the classes in sorted order (ImageFolder's ``class_to_idx``), one folder per
  class. Images become grey or RGB as the dataset's channels are, resized (bilinear) to its image size.
- FILE.npz (``numpy.savez``; read with ``allow_pickle=False``): ``x`` uint8 pixels, or floats in [0, 1], of
  shape ``[N, H, W]`` (one channel), ``[N, C, H, W]`` or ``[N, H, W, C]``, resized to the image size where it
  differs; ``y`` integer labels ``[N]``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from fastlrwa.data.catalog import DatasetInfo
from fastlrwa.data.resize import resize_to_uint8
from fastlrwa.data.split import ArraySplit, CorruptDataError, checked_split
from fastlrwa.errors import DataNotFoundError

# torchvision's ImageFolder extensions; other files in a class folder (notes, thumbnails) are skipped as it does.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def load_test_data(path: str | Path, info: DatasetInfo) -> ArraySplit:
    """The images and labels at ``path`` (a folder or an ``.npz`` file) as ``info``'s uint8 input."""
    path = Path(path).expanduser()
    if path.is_dir():
        return _read_image_folder(path, info)
    if path.is_file():
        return _read_npz(path, info)
    raise DataNotFoundError(
        f"--test-data {path}: no such file or folder; pass an ImageFolder tree (one folder of images per class) "
        "or an .npz file with arrays x and y"
    )


def _class_indices(folders: list[str], info: DatasetInfo, root: Path) -> dict[str, int]:
    named = {str(index): index for index in range(info.num_classes)}
    named.update({name: index for index, name in enumerate(info.class_names)})
    if all(folder in named for folder in folders):
        return {folder: named[folder] for folder in folders}
    if len(folders) != info.num_classes:
        raise CorruptDataError(
            f"--test-data {root}: {len(folders)} class folders ({', '.join(folders[:5])}"
            f"{', ...' if len(folders) > 5 else ''}) for {info.num_classes} {info.name} classes; name the folders "
            f"0..{info.num_classes - 1}, or give one folder per class (their sorted order is the class order)"
        )
    return {folder: index for index, folder in enumerate(folders)}


def _read_image_folder(root: Path, info: DatasetInfo) -> ArraySplit:
    # Imported here: only this reader needs PIL.
    from PIL import Image, UnidentifiedImageError

    folders = sorted(entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if not folders:
        raise CorruptDataError(
            f"--test-data {root}: holds no class folders; put the images of each class in a folder of its own "
            "(ImageFolder layout: DIR/0/a.png, DIR/1/b.png, ...)"
        )
    indices = _class_indices(folders, info, root)
    mode, size = ("L" if info.channels == 1 else "RGB"), info.image_size
    images: list[np.ndarray] = []
    labels: list[int] = []
    for folder in folders:
        for file in sorted((root / folder).rglob("*")):
            if not file.is_file() or file.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            try:
                with Image.open(file) as image:
                    pixels = np.asarray(image.convert(mode).resize((size, size), Image.BILINEAR), dtype=np.uint8)
            except (UnidentifiedImageError, OSError) as error:
                raise CorruptDataError(
                    f"--test-data {file}: not a readable image ({type(error).__name__}); remove or replace it"
                ) from None
            images.append(pixels.reshape(size, size, info.channels))
            labels.append(indices[folder])
    if not images:
        raise CorruptDataError(
            f"--test-data {root}: no images ({', '.join(IMAGE_EXTENSIONS)}) in its class folders; "
            "put the test images in DIR/CLASS/"
        )
    array = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    return checked_split(array.contiguous(), torch.tensor(labels), info, f"--test-data {root}")


def _read_npz(path: Path, info: DatasetInfo) -> ArraySplit:
    if not zipfile.is_zipfile(path):
        raise CorruptDataError(
            f"--test-data {path}: not an .npz archive; save the images and labels with numpy.savez(FILE, x=..., y=...)"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [name for name in ("x", "y") if name not in archive.files]
            if missing:
                raise CorruptDataError(
                    f"--test-data {path}: holds {', '.join(archive.files) or 'no arrays'}, not "
                    f"{' and '.join(missing)}; save it with numpy.savez(FILE, x=images, y=labels)"
                )
            x, y = archive["x"], archive["y"]
    except (ValueError, OSError, zipfile.BadZipFile) as error:  # object arrays need pickle; damaged members
        raise CorruptDataError(
            f"--test-data {path}: unreadable without pickle ({type(error).__name__}); save plain numeric arrays "
            "with numpy.savez(FILE, x=images, y=labels)"
        ) from None
    source = f"--test-data {path}"
    if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
        raise CorruptDataError(f"{source}: y is {y.dtype} of shape {list(y.shape)}; save integer class labels [N]")
    return checked_split(_pixels(x, info, source), torch.from_numpy(y.astype(np.int64)), info, source)


def _pixels(x: np.ndarray, info: DatasetInfo, source: str) -> torch.Tensor:
    """``x`` as uint8 ``[N, C, size, size]``, its channel axis found where it has the dataset's channel count."""
    channels = info.channels
    if x.ndim == 3 and channels == 1:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] != channels and x.shape[3] == channels:
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] != channels:
        raise CorruptDataError(
            f"{source}: x has shape {list(x.shape)}; {info.name} images have {channels} channel(s): save x as "
            f"[N, {channels}, H, W] or [N, H, W, {channels}]" + (" or [N, H, W]" if channels == 1 else "")
        )
    if x.dtype == np.uint8:
        pixels = torch.from_numpy(np.ascontiguousarray(x))
    elif np.issubdtype(x.dtype, np.floating):
        low, high = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        if not (0.0 <= low and high <= 1.0):  # NaN fails both
            raise CorruptDataError(
                f"{source}: float pixels span {low:.3g}..{high:.3g}; save raw pixels, uint8 0..255 or floats in "
                "[0, 1], before any normalisation (the run applies the teacher's)"
            )
        pixels = torch.from_numpy((x.astype(np.float64) * 255.0).round()).to(torch.uint8)
    else:
        raise CorruptDataError(f"{source}: x is {x.dtype}; save uint8 pixels 0..255 or floats in [0, 1]")
    if pixels.shape[2:] != (info.image_size, info.image_size):
        pixels = resize_to_uint8(pixels, info.image_size)
    return pixels.contiguous()
