"""The DALI pipeline behind ``--loader dali``: read, decode, crop, flip and normalise one split.

With a ``device_id`` the images go to the GPU as early as possible (the "mixed" JPEG decoder, or
the arrays copied right after ``external_source``) and cropping, mirroring and normalising run as
GPU operators; with ``device_id=None`` every operator runs on the CPU. Random numbers (crop
offsets, mirror coins, the shuffling) all derive from ``seed``, so a seeded run repeats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fastlrwa.data.dali_sources import ArrayImages, DaliSource, ImageFiles

READER_NAME = "files"
IMAGES, LABELS, SHAPES = "images", "labels", "shapes"


@dataclass(frozen=True)
class PipelineOptions:
    """How batches are made.

    ``crop_padding``: random crop of an ``image_size`` window after zero padding by this much
    (None: no crop). ``flip``: mirror each image with probability 1/2. ``normalize``: float32
    ``(x / 255 - mean) / std`` per channel, else the uint8 pixels. ``with_shapes``: also output
    each decoded image's ``[H, W, C]`` before it is cut to ``image_size`` (to catch wrongly sized files).
    """

    batch_size: int
    seed: int
    shuffle: bool
    crop_padding: int | None
    flip: bool
    normalize: bool
    with_shapes: bool = False
    num_threads: int = 2


class _ArrayFeed:
    """``external_source`` batches: one pass over the arrays per epoch, in a fresh seeded order when shuffling.

    DALI calls ``iter`` at the start of every epoch and ends the epoch at ``StopIteration``; the
    last batch of an epoch is the remainder, as with the torch loader.
    """

    def __init__(self, source: ArrayImages, batch_size: int, shuffle: bool, seed: int) -> None:
        self._source = source
        self._batch_size = batch_size
        self._shuffle = shuffle
        self._rng = np.random.default_rng(seed)
        self._order = np.arange(len(source))
        self._next = 0

    def __iter__(self) -> _ArrayFeed:
        count = len(self._source)
        self._order = self._rng.permutation(count) if self._shuffle else np.arange(count)
        self._next = 0
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        if self._next >= len(self._order):
            raise StopIteration
        index = self._order[self._next : self._next + self._batch_size]
        self._next += self._batch_size
        return self._source.images[index], self._source.labels[index]


def build_pipeline(source: DaliSource, options: PipelineOptions, device_id: int | None) -> tuple[Any, list[str]]:
    """A built ``nvidia.dali.Pipeline`` and the names of its outputs, in order.

    Outputs: ``images`` (``[C, H, W]`` per sample), ``labels`` and, with ``options.with_shapes``,
    ``shapes``. Images and labels live on the GPU when ``device_id`` is set. Image files are read
    by a reader named ``READER_NAME``.
    """
    from nvidia.dali import fn, types
    from nvidia.dali.pipeline import Pipeline

    info = source.info
    size = info.image_size
    gpu = device_id is not None
    pipe = Pipeline(
        batch_size=options.batch_size, num_threads=options.num_threads, device_id=device_id, seed=options.seed
    )
    with pipe:
        if isinstance(source, ImageFiles):
            encoded, labels = fn.readers.file(
                files=list(source.paths),
                labels=source.labels.tolist(),
                shuffle_after_epoch=options.shuffle,
                pad_last_batch=True,
                name=READER_NAME,
            )
            images = fn.decoders.image(encoded, device="mixed" if gpu else "cpu", output_type=types.RGB)
        else:
            images, labels = fn.external_source(
                source=_ArrayFeed(source, options.batch_size, options.shuffle, options.seed),
                num_outputs=2,
                batch=True,
                cycle="raise",
                layout=["HWC", ""],
            )
            if gpu:
                images = images.gpu()
        outputs = {}
        if options.with_shapes:
            outputs[SHAPES] = images.shape()
        if options.crop_padding is not None:
            pad = options.crop_padding
            # One integer (top, left) per image in [-pad, pad]: the window's corner in the unpadded image,
            # so slicing with zero fill outside the image is a crop of the zero-padded image.
            corner = fn.random.uniform(values=list(range(-pad, pad + 1)), shape=[2], dtype=types.INT32)
            images = fn.slice(images, start=corner, shape=[size, size], axis_names="HW", out_of_bounds_policy="pad")
        mirror = fn.random.coin_flip(probability=0.5) if options.flip else 0
        if options.normalize:
            scaling = {
                "mean": [255.0 * m for m in info.mean],
                "std": [255.0 * s for s in info.std],
                "dtype": types.FLOAT,
            }
        else:
            scaling = {"dtype": types.UINT8}
        # The fixed crop makes every sample image_size x image_size even for a wrongly sized file, so
        # batches stay stackable and load_split_dali can name the file from the shapes output.
        outputs[IMAGES] = fn.crop_mirror_normalize(
            images,
            crop=(size, size),
            out_of_bounds_policy="pad",
            mirror=mirror,
            output_layout="CHW",
            **scaling,
        )
        outputs[LABELS] = labels.gpu() if gpu else labels
        pipe.set_outputs(*outputs.values())
    pipe.build()
    return pipe, list(outputs)
