"""One description of a dataset, whatever it came from, and the class-folder and demo loaders.

A `Dataset` is what train.py, test.py and classify.py see: class names, the
training mean, and up to three splits (data.py picks the loader for --dataset). Each `Split` holds its images in one of
three forms: a list of encoded image files (JPEG, PNG, ...), a uint8 array in
memory (CIFAR-10), or TFRecord shards written by `imagenet_utils --prepare`.
"""
import errno
import os
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from errors import DataError


@dataclass
class Split:
    """One split of a dataset: labels plus images in exactly one form."""
    labels: np.ndarray                 # int64 [N], canonical class index
    files: list = None                 # N paths of encoded images, or
    images: np.ndarray = None          # uint8 [N, H, W, 3], or
    records: list = None               # TFRecord shard paths (labels inside)
    skipped: list = field(default_factory=list)  # files found unreadable
    stalled: list = None               # set when the training stream stopped: images in a row unreadable

    def __len__(self):
        return int(len(self.labels))

    def subset(self, n, seed=0):
        """n of its images, drawn at random once by seed and kept in their order (--val-subset): the same
        images every time. The whole split when n is 0 or not smaller."""
        if not n or n >= len(self):
            return self
        if self.records is not None:
            raise DataError('--val-subset needs the validation images as files or arrays; TFRecord shards are '
                            'read whole: leave --val-subset out')
        keep = np.sort(np.random.default_rng(seed).choice(len(self), n, replace=False))
        return Split(self.labels[keep], files=None if self.files is None else [self.files[i] for i in keep],
                     images=None if self.images is None else self.images[keep])


@dataclass
class Dataset:
    name: str                          # 'imagenet', 'cifar10', 'folder', 'demo', 'synthetic'
    class_names: list                  # human-readable, in canonical order
    train: Split = None
    val: Split = None                  # used for decisions (lr plateau, best checkpoint)
    test: Split = None                 # never used for decisions
    mean: tuple = (0.0, 0.0, 0.0)      # per-channel RGB mean subtracted from inputs (None: not measured yet)
    class_ids: list = None             # e.g. ImageNet WNIDs, same order as class_names

    @property
    def num_classes(self):
        return len(self.class_names)


# ---------------------------------------------------------------- class folders and the demo

class UnreadableImageWarning(UserWarning):
    """An image that cannot be decoded; it is skipped and listed in Split.skipped."""


IMAGE_EXTENSIONS = ('.bmp', '.gif', '.jpeg', '.jpg', '.png')   # compared lower-case
DEMO_DIR = Path(__file__).resolve().parent / 'demo'
NOT_READ = {'loop': 'a symbolic link that loops: not read',       # image_paths' reasons
            'dangling': 'a symbolic link to a missing file: not read',
            'special': 'not a regular file (a pipe, device or socket): not read'}


def image_files(folder, recursive=False):
    """Sorted paths (str) of the image files in folder (and its sub-folders when recursive), by extension."""
    if recursive:
        return sorted(str(f) for f in Path(folder).rglob('*') if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
    return sorted(e.path for e in os.scandir(folder)           # scandir: no stat per file (ImageNet: 1.3M)
                  if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS)


def image_paths(paths, recursive=False):
    """The image files of a command line (classify.py, features.py): files as given, each folder's images
    sorted (and its sub-folders' with recursive; links to folders are not followed). What cannot be read
    comes as (path, why), in its place, for one error line among the others: a folder without images or
    that cannot be listed, and a name with an image extension that is not a file to read (a symbolic link
    loop, a link to nothing, a pipe: read, it would block). A name given that is not a folder is read
    whatever its extension, if it is a regular file; else it too comes as (path, why), never opened."""
    out = []
    for path in map(os.fspath, paths):
        if os.path.isdir(path):
            out += _listed(path, recursive) or \
                [(path, 'a folder without images' + ('' if recursive else ' (add -r for its sub-folders)'))]
        else:
            why = _not_a_given_file(path)
            out.append(path if why is None else (path, why))
    return out


def _listed(folder, recursive):
    """image_paths of one folder, sorted by path."""
    found, folders = [], [folder]
    while folders:
        current = folders.pop()
        try:
            with os.scandir(current) as entries:
                entries = list(entries)
        except OSError as e:
            found.append((current, f'cannot be listed: {e.strerror or e}'))
            continue
        for entry in entries:
            if recursive and entry.is_dir(follow_symlinks=False):
                folders.append(entry.path)
            elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                why = _not_a_file(entry)
                if why is None:
                    found.append(entry.path)
                elif why:
                    found.append((entry.path, why))
    return sorted(found, key=lambda f: f if isinstance(f, str) else f[0])


def _not_a_given_file(path):
    """None for a regular file (or a link to one), else why it is not read (a FIFO is never opened)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            return NOT_READ['loop']
        if e.errno == errno.ENOENT:
            return NOT_READ['dangling'] if os.path.islink(path) else 'no such file'
        return f'cannot be read: {e.strerror or e}'
    return None if stat.S_ISREG(mode) else NOT_READ['special']


def _not_a_file(entry):
    """None for a file (or a link to one), '' for a folder (named like an image: left out), else why it
    is not read."""
    try:
        if entry.is_file():
            return None
        if entry.is_dir():
            return ''
    except OSError as e:
        if e.errno == errno.ELOOP:
            return NOT_READ['loop']
        return f'cannot be read: {e.strerror or e}'
    return NOT_READ['dangling'] if entry.is_symlink() else NOT_READ['special']


def _images_by_class(folder, classes=None):
    """(class names, files, labels) of folder/<class>/*; classes, when given, must match."""
    if not folder.is_dir():
        raise DataError(f'{folder} is not a folder: a folder dataset holds train/<class>/ images '
                        '(and optionally val/<class>/, test/<class>/)')
    found = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith('.'))
    if not found:
        raise DataError(f'no class folders in {folder}: put each class\'s images in {folder}/<class name>/')
    if classes is not None and found != classes:
        extra, missing = sorted(set(found) - set(classes)), sorted(set(classes) - set(found))
        raise DataError(f'the class folders of {folder} do not match the training classes '
                        f'(extra: {extra or "none"}, missing: {missing or "none"}): give both the same folders')
    files, labels = [], []
    for label, name in enumerate(found):
        images = image_files(folder / name)
        if not images:
            raise DataError(f'class folder {folder / name} holds no images ({", ".join(IMAGE_EXTENSIONS)})')
        files += images
        labels += [label] * len(images)
    return found, files, np.array(labels, np.int64)


def stratified_split(labels, fraction, seed=0):
    """(keep, held_out) index arrays: a seeded fraction of each class held out (at least one image of
    each class with two or more)."""
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        k = min(len(members) - 1, max(1, round(len(members) * fraction))) if fraction > 0 else 0
        held.append(members[:k])
        keep.append(members[k:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def load_folder(data_dir, val_fraction=0.1, seed=0):
    """A Dataset from DIR/train/<class>/*, DIR/val/<class>/* (or, without val/, a seeded stratified
    val_fraction of train) and optional DIR/test/<class>/*. Classes are the sorted folder names; the
    mean is left to data.load_dataset (preprocessing.image_mean, with the decoder training uses)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f'{root} is not a folder: give --data-dir a folder holding train/<class>/ images')
    if not (root / 'train').is_dir():
        raise DataError(f'{root / "train"} not found: a folder dataset holds train/<class>/ images '
                        '(and optionally val/<class>/, test/<class>/)')
    classes, files, labels = _images_by_class(root / 'train')
    if (root / 'val').is_dir():
        train = Split(labels, files=files)
        _, vfiles, vlabels = _images_by_class(root / 'val', classes)
        val = Split(vlabels, files=vfiles)
    else:
        keep, held = stratified_split(labels, val_fraction, seed)
        train = Split(labels[keep], files=[files[i] for i in keep])
        val = Split(labels[held], files=[files[i] for i in held]) if len(held) else None
    test = None
    if (root / 'test').is_dir():
        _, tfiles, tlabels = _images_by_class(root / 'test', classes)
        test = Split(tlabels, files=tfiles)
    return Dataset('folder', classes, train=train, val=val, test=test,
                   mean=None, class_ids=list(classes))


def load_demo(seed=0):
    """The small CIFAR-10 subset committed in demo/ (see demo/README.md): 10 classes, 900 training and
    100 validation images (a seeded stratified 10% of demo/train), 200 test images. Works offline."""
    ds = load_folder(DEMO_DIR, val_fraction=0.1, seed=seed)
    ds.name = 'demo'
    return ds


def make_demo(cifar_train_tgz, cifar_test_tgz, out_dir=DEMO_DIR, per_class_train=100, per_class_test=20):
    """Rebuild demo/ from the CIFAR-10 JPEG archives: the first images of each class in name order,
    their bytes copied unchanged."""
    for archive, per_class in ((cifar_train_tgz, per_class_train), (cifar_test_tgz, per_class_test)):
        with tarfile.open(archive) as tar:
            members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.endswith('.jpg')),
                             key=lambda m: m.name)
            taken = {}
            for m in members:
                split, cls, name = PurePosixPath(m.name).parts[-3:]
                taken[cls] = taken.get(cls, 0) + 1
                if taken[cls] <= per_class:
                    out = Path(out_dir) / split / cls / name
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(tar.extractfile(m).read())
