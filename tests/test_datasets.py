"""datasets.py: class-folder datasets, their errors, the committed demo."""
import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import datasets
import preprocessing
from conftest import REPO
from errors import DataError
from datasets import Split
from helpers import FOLDER_CLASSES as CLASSES, FOLDER_COLOURS as COLOURS, make_folder

def test_load_folder_with_val_and_test_folders(tmp_path):
    for split, n in (('train', 6), ('val', 2), ('test', 3)):
        make_folder(tmp_path, split, n)
    ds = datasets.load_folder(tmp_path)
    assert ds.name == 'folder' and ds.class_names == CLASSES and ds.num_classes == 3
    assert (len(ds.train), len(ds.val), len(ds.test)) == (18, 6, 9)
    for split in (ds.train, ds.val, ds.test):
        assert all(Path(f).suffix.lower() in datasets.IMAGE_EXTENSIONS for f in split.files)
        assert [Path(f).parent.name for f in split.files] == [CLASSES[k] for k in split.labels]
        assert split.labels.dtype == np.int64
    np.testing.assert_allclose(preprocessing.image_mean(ds.train.files), np.mean(list(COLOURS.values()), 0),
                               atol=1.0)   # flat colours


def test_load_folder_without_val_splits_train_stratified_and_seeded(tmp_path):
    make_folder(tmp_path, 'train', 20)
    ds = datasets.load_folder(tmp_path, val_fraction=0.1, seed=3)
    assert (len(ds.train), len(ds.val), ds.test) == (54, 6, None)
    assert np.bincount(ds.val.labels).tolist() == [2, 2, 2]
    assert not set(ds.train.files) & set(ds.val.files)
    assert len(set(ds.train.files) | set(ds.val.files)) == 60
    again = datasets.load_folder(tmp_path, val_fraction=0.1, seed=3)
    other = datasets.load_folder(tmp_path, val_fraction=0.1, seed=4)
    assert again.val.files == ds.val.files and other.val.files != ds.val.files


@pytest.mark.parametrize('case, needle', [
    ('missing', 'nowhere'), ('no train', 'train'), ('no classes', 'no class folders'),
    ('empty class', 'dog'), ('val mismatch', 'val'), ('test mismatch', 'test')])
def test_load_folder_errors_name_the_path(tmp_path, case, needle):
    root = tmp_path / 'data'
    if case == 'missing':
        root = tmp_path / 'nowhere'
    elif case == 'no train':
        root.mkdir()
    elif case == 'no classes':
        (root / 'train').mkdir(parents=True)
    elif case == 'empty class':
        make_folder(root, 'train', 2)
        for f in (root / 'train' / 'dog').iterdir():
            f.unlink()
    else:
        make_folder(root, 'train', 2)
        make_folder(root, case.split()[0], 1, classes=['cat', 'dog', 'horse'])
    with pytest.raises(DataError) as e:
        datasets.load_folder(root)
    message = str(e.value)
    assert needle in message and str(tmp_path) in message and '\n' not in message


def test_demo_is_committed_small_and_split_as_documented():
    ds = datasets.load_demo()
    assert ds.name == 'demo' and ds.num_classes == 10
    assert ds.class_names == ['airplane', 'automobile', 'bird', 'cat', 'deer',
                              'dog', 'frog', 'horse', 'ship', 'truck']
    assert (len(ds.train), len(ds.val), len(ds.test)) == (900, 100, 200)
    assert np.bincount(ds.val.labels).tolist() == [10] * 10
    assert np.bincount(ds.test.labels).tolist() == [20] * 10
    assert all(Path(f).is_file() for s in (ds.train, ds.val, ds.test) for f in s.files)
    assert all(Path(f).parts[-3] == 'test' for f in ds.test.files)       # decisions never see test/
    assert all(Path(f).parts[-3] == 'train' for f in ds.train.files + ds.val.files)
    size = sum(f.stat().st_size for f in (REPO / 'demo').rglob('*') if f.is_file())
    assert size <= 2 * 1024 * 1024
    assert all(0 < m < 255 for m in preprocessing.image_mean(ds.train.files))
    with Image.open(ds.train.files[0]) as image:
        assert image.size == (32, 32) and image.format == 'JPEG'


def test_demo_test_images_are_the_real_cifar10_bytes(real_data):
    with tarfile.open(real_data / 'cifar10' / 'cifar10-testA-jpeg.tar.gz') as tar:
        for name in ('test/cat/0000.jpg', 'test/truck/0019.jpg', 'test/airplane/0007.jpg'):
            assert (REPO / 'demo' / name).read_bytes() == tar.extractfile(name).read()


def test_make_demo_takes_the_first_files_of_each_class_unchanged(tmp_path):
    archives = {}
    for split, count in (('train', 4), ('test', 3)):
        archives[split] = tmp_path / f'{split}.tar.gz'
        with tarfile.open(archives[split], 'w:gz') as tar:
            for c in ('b', 'a'):
                for i in reversed(range(count)):
                    data = f'{split} {c} {i}'.encode()
                    info = tarfile.TarInfo(f'{split}/{c}/{i:04d}.jpg')
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    out = tmp_path / 'demo'
    datasets.make_demo(archives['train'], archives['test'], out, per_class_train=2, per_class_test=1)
    found = sorted(str(p.relative_to(out)) for p in out.rglob('*.jpg'))
    assert found == ['test/a/0000.jpg', 'test/b/0000.jpg', 'train/a/0000.jpg', 'train/a/0001.jpg',
                     'train/b/0000.jpg', 'train/b/0001.jpg']
    assert (out / 'train/b/0001.jpg').read_bytes() == b'train b 1'


def test_a_validation_subset_is_the_same_images_every_time_and_drawn_from_all_of_them():
    labels = np.repeat(np.arange(4), 25)                  # sorted by class, as a class-folder val split is
    split = Split(labels, files=[f'{c}/{i}.png' for c, i in zip(labels, range(100))])
    first, again = split.subset(20, seed=3), split.subset(20, seed=3)
    assert first.files == again.files and len(first) == 20 and first.files == sorted(first.files, key=split.files.index)
    assert set(first.labels) == {0, 1, 2, 3}              # not the first 20 (one class)
    assert [split.labels[split.files.index(f)] for f in first.files] == list(first.labels)
    assert split.subset(20, seed=4).files != first.files
    assert split.subset(0) is split and split.subset(100) is split
    images = np.arange(100 * 2 * 2 * 3, dtype=np.uint8).reshape(100, 2, 2, 3)
    arrays = Split(labels, images=images).subset(20, seed=3)
    np.testing.assert_array_equal(arrays.images, images[[split.files.index(f) for f in first.files]])
    with pytest.raises(DataError, match='TFRecord shards are read whole'):
        Split(labels, records=['a.tfrecord']).subset(20)


def test_a_command_lines_images_name_what_cannot_be_read_and_follow_no_loop(tmp_path):
    folder = tmp_path / 'photos'
    (folder / 'sub' / 'deeper').mkdir(parents=True)
    for name in ('b.png', 'sub/c.JPG', 'notes.txt'):
        (folder / name).write_bytes(b'x')
    (folder / 'a.png').symlink_to('b.png')                 # a link to an image: an image
    (folder / 'loop.png').symlink_to('loop.png')
    (folder / 'gone.jpg').symlink_to('nowhere.jpg')
    os.mkfifo(folder / 'pipe.png')                         # listed as what it is, never opened
    (folder / 'sub' / 'deeper' / 'up').symlink_to('../..')   # a folder loop: links to folders are not followed
    (folder / 'folder.png').mkdir()
    f = str(folder)
    found = [f'{f}/a.png', f'{f}/b.png', (f'{f}/gone.jpg', 'a symbolic link to a missing file: not read'),
             (f'{f}/loop.png', 'a symbolic link that loops: not read'),
             (f'{f}/pipe.png', 'not a regular file (a pipe, device or socket): not read')]
    assert datasets.image_paths([folder]) == found
    assert datasets.image_paths([folder], recursive=True) == found + [f'{f}/sub/c.JPG']
    given = [folder / n for n in ('loop.png', 'sub/deeper', 'notes.txt', 'pipe.png', 'gone.jpg', 'missing.png')]
    assert datasets.image_paths(given) == [       # a name given: read if a regular file, whatever its extension
        (f'{f}/loop.png', 'a symbolic link that loops: not read'),
        (f'{f}/sub/deeper', 'a folder without images (add -r for its sub-folders)'), f'{f}/notes.txt',
        (f'{f}/pipe.png', 'not a regular file (a pipe, device or socket): not read'),
        (f'{f}/gone.jpg', 'a symbolic link to a missing file: not read'), (f'{f}/missing.png', 'no such file')]
