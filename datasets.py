"""One description of a dataset, whatever it came from, and the dispatcher.

A `Dataset` is what train.py, test.py and classify.py see: class names, the
training mean, and up to three splits. Each `Split` holds its images in one of
three forms: a list of encoded image files (JPEG, PNG, ...), a uint8 array in
memory (CIFAR-10), or TFRecord shards written by `imagenet_utils --prepare`.
"""
from dataclasses import dataclass, field

import numpy as np


class DataError(Exception):
    """A problem with the user's data or flags: printed as one line, no traceback."""


@dataclass
class Split:
    """One split of a dataset: labels plus images in exactly one form."""
    labels: np.ndarray                 # int64 [N], canonical class index
    files: list = None                 # N paths of encoded images, or
    images: np.ndarray = None          # uint8 [N, H, W, 3], or
    records: list = None               # TFRecord shard paths (labels inside)
    skipped: list = field(default_factory=list)  # files found unreadable

    def __len__(self):
        return int(len(self.labels))


@dataclass
class Dataset:
    name: str                          # 'imagenet', 'cifar10', 'folder', 'demo', 'synthetic'
    class_names: list                  # human-readable, in canonical order
    train: Split = None
    val: Split = None                  # used for decisions (lr plateau, best checkpoint)
    test: Split = None                 # never used for decisions
    mean: tuple = (0.0, 0.0, 0.0)      # per-channel RGB mean subtracted from inputs
    resize_size: int = 256             # shorter side before cropping (paper: 256)
    class_ids: list = None             # e.g. ImageNet WNIDs, same order as class_names

    @property
    def num_classes(self):
        return len(self.class_names)

