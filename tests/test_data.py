"""data.py: which loader serves --dataset, and what 'auto' picks."""
import pytest

import cifar10_utils
import data
import imagenet_utils
from errors import DataError
from helpers import make_folder


def test_load_dataset_dispatch_and_errors(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'mnist': choose one of auto, imagenet, cifar10, folder, demo"):
        data.load_dataset('mnist')
    with pytest.raises(DataError, match='--data-dir'):
        data.load_dataset('folder')
    make_folder(tmp_path, 'train', 10)
    assert data.load_dataset('folder', tmp_path).name == 'folder'
    assert data.load_dataset('demo').name == 'demo'
    assert set(data.DATASET_CHOICES) == {'auto', 'imagenet', 'cifar10', 'folder', 'demo'}


def test_auto_picks_imagenet_when_a_devkit_folder_is_given(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar10_utils, 'load_cifar10', lambda *a, **k: pytest.fail('CIFAR-10 was loaded'))
    monkeypatch.setattr(imagenet_utils, 'load_imagenet', lambda where: ('imagenet', where))
    root = tmp_path / 'ILSVRC2012'
    (root / 'ILSVRC2012_img_val').mkdir(parents=True)
    assert data.load_dataset('auto', root) == ('imagenet', root)
    assert data.load_dataset('auto', tmp_path) == ('imagenet', tmp_path)      # the devkit one level down


def test_auto_falls_back_to_cifar10_and_passes_its_options(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(cifar10_utils, 'load_cifar10', lambda *a, **k: calls.append((a, k)) or 'cifar')
    monkeypatch.chdir(tmp_path)                                        # no ./ILSVRC2012 here
    assert data.load_dataset('auto', val_size=100, seed=7, md5='abc') == 'cifar'
    assert data.load_dataset('auto', tmp_path / 'cache') == 'cifar'
    assert data.load_dataset('cifar10', tmp_path / 'cache', 0) == 'cifar'
    got = [(a + tuple(k.values())) for a, k in calls]
    assert got == [(None, 100, 7, 'abc'), (tmp_path / 'cache', 5000, 0, None), (tmp_path / 'cache', 0, 0, None)]


def test_auto_reports_a_broken_imagenet_instead_of_falling_back(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar10_utils, 'load_cifar10', lambda *a, **k: pytest.fail('CIFAR-10 was loaded'))
    root = tmp_path / 'ILSVRC2012'
    (root / 'data').mkdir(parents=True)
    (root / 'data' / 'meta.mat').write_text('not a mat file')
    with pytest.raises(DataError, match='meta.mat'):
        data.load_dataset('auto', root)
    monkeypatch.chdir(tmp_path)                                        # ./ILSVRC2012 is the default
    with pytest.raises(DataError, match='meta.mat'):
        data.load_dataset('imagenet')


def test_auto_takes_a_folder_of_class_folders_and_never_downloads_into_it(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar10_utils, 'load_cifar10', lambda *a, **k: pytest.fail('CIFAR-10 was loaded'))
    make_folder(tmp_path / 'photos', 'train', 4)
    ds = data.load_dataset('auto', tmp_path / 'photos')
    assert ds.name == 'folder' and ds.class_names == ['cat', 'dog', 'zebra']
    make_folder(tmp_path / 'flat', '', 2)                              # flat/<class>/*, no train/
    with pytest.raises(DataError, match=r'holds class folders but no train/.*--dataset folder') as e:
        data.load_dataset('auto', tmp_path / 'flat')
    assert '\n' not in str(e.value)
    assert sorted(p.name for p in (tmp_path / 'flat').iterdir()) == ['cat', 'dog', 'zebra']   # nothing added
