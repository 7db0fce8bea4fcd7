"""Which loader serves --dataset: the one place that knows every dataset module.

    imagenet  imagenet_utils.load_imagenet (devkit, Kaggle or --prepare layout)
    cifar10   cifar10_utils.load_cifar10 (archive, extracted batches, or a download)
    folder    datasets.load_folder (DIR/train/<class>/*)
    demo      datasets.load_demo (the CIFAR-10 subset committed in demo/)
    auto      ImageNet when --data-dir (or ./ILSVRC2012) holds one, a folder dataset when it holds
              train/<class>/ images, else CIFAR-10
"""
from pathlib import Path

import cifar10_utils
import datasets
import imagenet_utils
import preprocessing
from errors import DataError

DATASET_CHOICES = ('auto', 'imagenet', 'cifar10', 'folder', 'demo')


def load_dataset(name, data_dir=None, val_size=cifar10_utils.VAL_SIZE, seed=0, md5=None):
    """The Dataset called name (one of DATASET_CHOICES). 'auto': ImageNet when data_dir (or
    ./ILSVRC2012) holds an ImageNet layout, a folder dataset when data_dir holds train/<class>/
    images, otherwise CIFAR-10 from data_dir or the default cache (downloaded on first use)."""
    if name not in DATASET_CHOICES:
        raise DataError(f'unknown dataset {name!r}: choose one of {", ".join(DATASET_CHOICES)}')
    if name == 'demo':
        return _measured(datasets.load_demo(seed), seed)
    if name == 'folder':
        if data_dir is None:
            raise DataError('--dataset folder needs --data-dir DIR holding train/<class>/ images')
        return _measured(datasets.load_folder(data_dir, seed=seed), seed)
    if name in ('imagenet', 'auto'):
        where = data_dir or 'ILSVRC2012'
        if name == 'imagenet':
            return imagenet_utils.load_imagenet(where)
        try:
            imagenet_utils.detect_layout(where)
        except DataError:           # no ImageNet there: CIFAR-10
            pass
        else:                       # an ImageNet layout: its errors are the user's to see
            return imagenet_utils.load_imagenet(where)
        if name == 'auto' and data_dir is not None and _holds_class_folders(Path(data_dir) / 'train'):
            return _measured(datasets.load_folder(data_dir, seed=seed), seed)
        if name == 'auto' and data_dir is not None and _holds_class_folders(Path(data_dir)):
            raise DataError(f'{data_dir} holds class folders but no train/: a folder dataset keeps them in '
                            f'{Path(data_dir) / "train"}/<class>/ (and optionally val/, test/); move them '
                            f'there and pass --dataset folder')
    return cifar10_utils.load_cifar10(data_dir, val_size=val_size, seed=seed, md5=md5)


def _holds_class_folders(folder):
    """True when folder has sub-folders with image files in them (a CIFAR-10 folder has none)."""
    if not folder.is_dir():
        return False
    return any(d.is_dir() and not d.name.startswith('.') and datasets.image_files(d) for d in folder.iterdir())


def _measured(ds, seed):
    """A class-folder Dataset with its training mean, measured with the decoder training uses."""
    ds.mean = preprocessing.image_mean(ds.train.files, seed)
    return ds
