"""datasets.py: class-folder datasets, their errors, the committed demo, and the dispatcher."""
import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import datasets
from datasets import DataError

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / 'shared' / 'data'
CLASSES = ['cat', 'dog', 'zebra']
COLOURS = {'cat': (200, 10, 10), 'dog': (10, 200, 10), 'zebra': (10, 10, 200)}


def real(name):
    path = SHARED_DATA / name
    assert path.exists(), f'real data missing: {path} (clone shared/ beside the repo)'
    return path


def make_folder(root, split, per_class, classes=CLASSES, exts=('.png', '.JPG', '.Bmp')):
    """root/split/<class>/ with per_class flat-colour images in mixed formats, and a non-image file."""
    for c in classes:
        d = root / split / c
        d.mkdir(parents=True)
        for i in range(per_class):
            ext = exts[i % len(exts)]
            fmt = {'.png': 'PNG', '.jpg': 'JPEG', '.bmp': 'BMP'}[ext.lower()]
            Image.new('RGB', (12, 10), COLOURS.get(c, (99, 99, 99))).save(d / f'{i:03d}{ext}', fmt, quality=100)
        (d / 'notes.txt').write_text('not an image')
    return root


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
    np.testing.assert_allclose(ds.mean, np.mean(list(COLOURS.values()), 0), atol=1.0)   # flat colours


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
    assert all(0 < m < 255 for m in ds.mean)
    with Image.open(ds.train.files[0]) as image:
        assert image.size == (32, 32) and image.format == 'JPEG'


def test_demo_test_images_are_the_real_cifar10_bytes():
    with tarfile.open(real('cifar10/cifar10-testA-jpeg.tar.gz')) as tar:
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


def test_load_dataset_dispatch_and_errors(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'mnist': choose one of auto, imagenet, cifar10, folder, demo"):
        datasets.load_dataset('mnist')
    with pytest.raises(DataError, match='--data-dir'):
        datasets.load_dataset('folder')
    make_folder(tmp_path, 'train', 10)
    assert datasets.load_dataset('folder', tmp_path).name == 'folder'
    assert datasets.load_dataset('demo').name == 'demo'
    assert set(datasets.DATASET_CHOICES) == {'auto', 'imagenet', 'cifar10', 'folder', 'demo'}


def devkit_folder(root):
    """A devkit-layout ImageNet holding the 100 real validation images (no training images)."""
    (root / 'data').mkdir(parents=True)
    os.symlink(real('imagenet/meta.mat'), root / 'data' / 'meta.mat')
    truth = real('imagenet/ILSVRC2012_validation_ground_truth.txt').read_text().split()[:100]
    (root / 'data' / 'ILSVRC2012_validation_ground_truth.txt').write_text('\n'.join(truth) + '\n')
    (root / 'ILSVRC2012_img_val').mkdir()
    for f in sorted(real('imagenet/val').glob('*.JPEG')):
        os.symlink(f, root / 'ILSVRC2012_img_val' / f.name)
    return root


def test_auto_picks_imagenet_when_a_devkit_folder_is_given(tmp_path, monkeypatch):
    import cifar10_utils
    monkeypatch.setattr(cifar10_utils, 'load_cifar10', lambda *a, **k: pytest.fail('CIFAR-10 was loaded'))
    with pytest.warns(UserWarning, match='training'):                   # no ILSVRC2012_img_train/ here
        ds = datasets.load_dataset('auto', devkit_folder(tmp_path / 'ILSVRC2012'))
    assert ds.name == 'imagenet' and ds.num_classes == 1000 and len(ds.val) == 100


def test_auto_falls_back_to_cifar10_and_passes_its_options(tmp_path, monkeypatch):
    import cifar10_utils
    calls = []
    monkeypatch.setattr(cifar10_utils, 'load_cifar10', lambda *a, **k: calls.append((a, k)) or 'cifar')
    monkeypatch.chdir(tmp_path)                                        # no ./ILSVRC2012 here
    assert datasets.load_dataset('auto', val_size=100, seed=7, md5='abc') == 'cifar'
    assert datasets.load_dataset('auto', tmp_path / 'cache') == 'cifar'
    assert datasets.load_dataset('cifar10', tmp_path / 'cache', 0) == 'cifar'
    got = [(a + tuple(k.values())) for a, k in calls]
    assert got == [(None, 100, 7, 'abc'), (tmp_path / 'cache', 5000, 0, None), (tmp_path / 'cache', 0, 0, None)]


def test_auto_reports_a_broken_imagenet_instead_of_falling_back(tmp_path, monkeypatch):
    import cifar10_utils
    monkeypatch.setattr(cifar10_utils, 'load_cifar10', lambda *a, **k: pytest.fail('CIFAR-10 was loaded'))
    root = tmp_path / 'ILSVRC2012'
    (root / 'data').mkdir(parents=True)
    (root / 'data' / 'meta.mat').write_text('not a mat file')
    with pytest.raises(DataError, match='meta.mat'):
        datasets.load_dataset('auto', root)
    monkeypatch.chdir(tmp_path)                                        # ./ILSVRC2012 is the default
    with pytest.raises(DataError, match='meta.mat'):
        datasets.load_dataset('imagenet')
