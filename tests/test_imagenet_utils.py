"""imagenet_utils.py: both layouts, one label order, real metadata, partial folders, errors, messy files,
--prepare (resume, kills, full disk), the checks on prepared folders, CLI.

The real ILSVRC2012 metadata and 12 real validation images are committed in tests/data/imagenet/;
the tests on all 100 real validation images take the real_data fixture (ALEXNET_TEST_DATA)."""
import copy
import csv
import errno
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import tensorflow as tf
from PIL import Image

import decoding
import imagenet_utils as iu
from conftest import REPO, TEST_DATA
from errors import DataError

REAL = TEST_DATA / 'imagenet'
COMMITTED_VAL = [1, 19, 23, 34, 39, 52, 55, 85, 87, 89, 93, 95]      # the numbers of tests/data/imagenet/val/*
# The first four leaves of the real meta.mat, in devkit (ILSVRC2012_ID) order.
LEAVES = [('n02119789', 'kit fox, Vulpes macrotis'), ('n02100735', 'English setter'),
          ('n02110185', 'Siberian husky'), ('n02096294', 'Australian terrier')]
SORTED = sorted(w for w, _ in LEAVES)                     # canonical order
VAL_IDS = [1, 2, 3, 4, 4, 3, 2, 1]                        # devkit ground truth of 8 val images
VAL_CANONICAL = [SORTED.index(LEAVES[i - 1][0]) for i in VAL_IDS]
HEIGHT = 32     # every generated image is 32 high with its own width: prepared records are traceable


def real(name):
    path = REAL / name
    assert path.exists(), f'committed test data missing: {path}'
    return path


@pytest.fixture(scope='session')
def solution_csv(tmp_path_factory):
    """The real LOC_val_solution.csv, gunzipped from the committed .csv.gz."""
    out = tmp_path_factory.mktemp('kaggle-labels') / 'LOC_val_solution.csv'
    with gzip.open(real('LOC_val_solution.csv.gz')) as src, open(out, 'wb') as dst:
        shutil.copyfileobj(src, dst)
    return out


def write_meta(path, leaves):
    """A small meta.mat with the devkit's struct fields: the leaves, then one parent synset."""
    fields = ['ILSVRC2012_ID', 'WNID', 'words', 'gloss', 'num_children', 'children',
              'wordnet_height', 'num_train_images']
    rows = [(i + 1, w, n, 'a gloss', 0, np.zeros((1, 0), np.uint8), 0, 3) for i, (w, n) in enumerate(leaves)]
    rows.append((len(leaves) + 1, 'n02075296', 'carnivore', 'a gloss', len(leaves),
                 np.arange(1, len(leaves) + 1), 1, 0))
    synsets = np.empty((len(rows), 1), dtype=[(f, 'O') for f in fields])
    for k, row in enumerate(rows):
        synsets[k, 0] = tuple(np.array(v) for v in row)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {'synsets': synsets})


class Images:
    """Tiny JPEGs, each with a width no other image has."""
    def __init__(self, width=33):
        self.width = width
        self.rng = np.random.default_rng(0)

    def pixels(self):
        self.width += 1
        return self.rng.integers(0, 256, (HEIGHT, self.width, 3), dtype=np.uint8)

    def jpeg(self, path, mode='RGB', fmt='JPEG'):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(self.pixels()).convert(mode).save(path, fmt)
        return path


def make_tree(root, layout, per_class=3):
    """A devkit or Kaggle tree of the same images (same names, same pixels)."""
    images = Images()
    if layout == 'devkit':
        top = root / 'ILSVRC2012'
        train, val = top / 'ILSVRC2012_img_train', top / 'ILSVRC2012_img_val'
        write_meta(top / 'data' / 'meta.mat', LEAVES)
        (top / 'data' / 'ILSVRC2012_validation_ground_truth.txt').write_text(''.join(f'{i}\n' for i in VAL_IDS))
    else:
        top = root / 'kaggle'
        train, val = top / 'ILSVRC' / 'Data' / 'CLS-LOC' / 'train', top / 'ILSVRC' / 'Data' / 'CLS-LOC' / 'val'
        top.mkdir(parents=True)
        (top / 'LOC_synset_mapping.txt').write_text(''.join(f'{w} {n}\n' for w, n in sorted(LEAVES)))
        rows = [(f'ILSVRC2012_val_{k + 1:08d}', f'{LEAVES[i - 1][0]} 1 2 30 31 {LEAVES[i - 1][0]} 3 4 20 21 ')
                for k, i in enumerate(VAL_IDS)]
        with open(top / 'LOC_val_solution.csv', 'w', newline='') as f:
            csv.writer(f).writerows([('ImageId', 'PredictionString')] + rows[::-1])
    for wnid, _ in LEAVES:
        for k in range(per_class):
            images.jpeg(train / wnid / f'{wnid}_{k + 1}.JPEG')
    for k in range(len(VAL_IDS)):
        images.jpeg(val / f'ILSVRC2012_val_{k + 1:08d}.JPEG')
    return top


def by_name(split):
    return {Path(f).name: int(label) for f, label in zip(split.files, split.labels)}


def test_both_layouts_give_the_same_labels(tmp_path):
    dk = iu.load_imagenet(make_tree(tmp_path, 'devkit'))
    kg = iu.load_imagenet(make_tree(tmp_path, 'kaggle'))
    assert iu.detect_layout(tmp_path / 'ILSVRC2012') == 'devkit'
    assert iu.detect_layout(tmp_path / 'kaggle') == 'kaggle'
    for ds in (dk, kg):
        assert ds.name == 'imagenet' and ds.test is None
        assert ds.mean == iu.IMAGENET_MEAN_RGB == (123.68, 116.779, 103.939)
        assert ds.class_ids == SORTED
        assert ds.class_names == [dict(LEAVES)[w] for w in SORTED]
        assert len(ds.train) == 12 and len(ds.val) == 8
        assert ds.train.labels.dtype == np.int64
        assert [by_name(ds.train)[f'{w}_1.JPEG'] for w in SORTED] == [0, 1, 2, 3]
        assert [by_name(ds.val)[f'ILSVRC2012_val_{k + 1:08d}.JPEG'] for k in range(8)] == VAL_CANONICAL
    assert VAL_CANONICAL[0] == 3       # ID 1 (kit fox) is last in sorted order: the mapping matters
    assert by_name(dk.train) == by_name(kg.train) and by_name(dk.val) == by_name(kg.val)


def test_parent_folders_are_accepted(tmp_path):
    iu.load_imagenet(make_tree(tmp_path / 'a', 'devkit'))
    assert iu.detect_layout(tmp_path / 'a') == 'devkit'          # the parent of ILSVRC2012/
    assert len(iu.load_imagenet(tmp_path / 'a').val) == 8
    top = make_tree(tmp_path / 'b', 'kaggle')
    for name in ('LOC_synset_mapping.txt', 'LOC_val_solution.csv'):   # the two files one level up
        shutil.move(top / name, tmp_path / 'b' / name)
    assert by_name(iu.load_imagenet(top).val) == by_name(iu.load_imagenet(make_tree(tmp_path / 'c', 'kaggle')).val)


def test_real_metadata_agrees_on_all_50000_validation_labels(solution_csv):
    id_wnids, id_names = iu.read_devkit_meta(real('meta.mat'))
    assert len(id_wnids) == 1000 and id_wnids[0] == 'n02119789' and id_names[0] == 'kit fox, Vulpes macrotis'
    wnids, names = iu.read_kaggle_mapping(real('LOC_synset_mapping.txt'))
    assert wnids == sorted(id_wnids) and wnids[0] == 'n01440764' and names[0] == 'tench, Tinca tinca'
    assert names == [dict(zip(id_wnids, id_names))[w] for w in wnids]
    devkit = iu.read_devkit_val_labels(real('ILSVRC2012_validation_ground_truth.txt'), real('meta.mat'))
    kaggle = iu.read_kaggle_val_labels(solution_csv, wnids)
    assert devkit.shape == (50000,) and len(kaggle) == 50000
    assert (devkit == [kaggle[f'ILSVRC2012_val_{k + 1:08d}'] for k in range(50000)]).all()
    assert devkit[0] == 65 and wnids[65] == 'n01751748'        # image 1: sea snake (torchvision index 65)
    raw = np.loadtxt(real('ILSVRC2012_validation_ground_truth.txt'), dtype=np.int64) - 1
    assert (devkit != raw).mean() > 0.9                          # the two orders really differ


def test_all_100_real_validation_images_in_both_layouts(tmp_path, real_data, solution_csv):
    files = sorted((real_data / 'imagenet' / 'val').glob('*.JPEG'))
    assert len(files) == 100
    dk, kg = tmp_path / 'ILSVRC2012', tmp_path / 'kaggle'
    for folder in (dk / 'ILSVRC2012_img_val', kg / 'ILSVRC' / 'Data' / 'CLS-LOC' / 'val'):
        folder.mkdir(parents=True)
        for f in files:
            (folder / f.name).symlink_to(f)
    (dk / 'data').mkdir()
    (dk / 'data' / 'meta.mat').symlink_to(real('meta.mat'))
    gt = real('ILSVRC2012_validation_ground_truth.txt').read_text().split()[:100]
    (dk / 'data' / 'ILSVRC2012_validation_ground_truth.txt').write_text('\n'.join(gt) + '\n')
    (kg / 'LOC_synset_mapping.txt').symlink_to(real('LOC_synset_mapping.txt'))
    ids = {f.stem for f in files} | {'ImageId'}
    with open(solution_csv) as f:
        rows = [r for r in f if r.split(',')[0] in ids]
    (kg / 'LOC_val_solution.csv').write_text(''.join(rows))
    with pytest.warns(UserWarning, match='no training folder'):
        a, b = iu.load_imagenet(dk, verify=True), iu.load_imagenet(kg, verify=True)
    assert a.train is None and a.num_classes == b.num_classes == 1000
    assert len(a.val) == len(b.val) == 100 and a.val.skipped == b.val.skipped == []
    assert by_name(a.val) == by_name(b.val)
    assert (a.val.labels == iu.read_devkit_val_labels(real('ILSVRC2012_validation_ground_truth.txt'),
                                                      real('meta.mat'))[:100]).all()
    import decoding
    for f in files:
        image = decoding.decode_image(tf.io.read_file(str(f)))
        assert image.dtype == tf.uint8 and image.shape[-1] == 3 and image.shape[0] > 0


# ---------------------------------------------------------------- partial folders, real metadata

def independent_labels(solution_csv):
    """(devkit, kaggle): {validation image number: canonical label}, derived here without imagenet_utils:
    the ground truth's ILSVRC2012_IDs through meta.mat's WNIDs, and the csv's first WNID, each as an
    index among the sorted WNIDs of LOC_synset_mapping.txt."""
    wnids = sorted(line.split()[0] for line in real('LOC_synset_mapping.txt').read_text().splitlines() if line.strip())
    position = {w: i for i, w in enumerate(wnids)}
    synsets = scipy.io.loadmat(str(real('meta.mat')), squeeze_me=True)['synsets']
    wnid_of_id = {int(x['ILSVRC2012_ID']): str(x['WNID']) for x in synsets}
    ids = real('ILSVRC2012_validation_ground_truth.txt').read_text().split()
    devkit = {n: position[wnid_of_id[int(i)]] for n, i in enumerate(ids, start=1)}
    with open(solution_csv, newline='') as f:
        kaggle = {int(row['ImageId'].rsplit('_', 1)[1]): position[row['PredictionString'].split()[0]]
                  for row in csv.DictReader(f)}
    return devkit, kaggle


def real_trees(root, solution_csv):
    """A devkit and a Kaggle tree of the real metadata (links to the committed files), no images yet:
    {layout: (root, train folder, val folder)}."""
    dk, kg = root / 'ILSVRC2012', root / 'kaggle'
    (dk / 'data').mkdir(parents=True)
    for name in ('meta.mat', 'ILSVRC2012_validation_ground_truth.txt'):
        (dk / 'data' / name).symlink_to(real(name))
    kg.mkdir()
    (kg / 'LOC_synset_mapping.txt').symlink_to(real('LOC_synset_mapping.txt'))
    (kg / 'LOC_val_solution.csv').symlink_to(solution_csv)
    cls_loc = kg / 'ILSVRC' / 'Data' / 'CLS-LOC'
    trees = {'devkit': (dk, dk / 'ILSVRC2012_img_train', dk / 'ILSVRC2012_img_val'),
             'kaggle': (kg, cls_loc / 'train', cls_loc / 'val')}
    for _, _, val in trees.values():
        val.mkdir(parents=True)
    return trees


def val_name(n, ext='.JPEG'):
    return f'ILSVRC2012_val_{n:08d}{ext}'


PLACEHOLDERS = [2, 100, 301, 12345, 49999, 50000]     # empty files named for other validation images


@pytest.mark.slow
def test_partial_validation_folder_is_labelled_by_number_in_both_layouts(tmp_path, solution_csv):
    devkit_truth, kaggle_truth = independent_labels(solution_csv)
    assert devkit_truth == kaggle_truth and len(devkit_truth) == 50000
    assert devkit_truth[1] == 65        # image 1: n01751748, sea snake, whichever file says so
    loaded = {}
    for layout, (top, _, val) in real_trees(tmp_path, solution_csv).items():
        for n in COMMITTED_VAL:
            (val / val_name(n)).symlink_to(real('val') / val_name(n))
        for n in PLACEHOLDERS:
            (val / val_name(n)).write_bytes(b'')
        with pytest.warns(UserWarning) as record:
            ds = iu.load_imagenet(top)
        messages = [str(w.message) for w in record]
        assert f'{val}: 18 of the 50000 validation images are present; the validation split holds only those' \
            in messages and any('no training folder' in m for m in messages)
        numbers = sorted(COMMITTED_VAL + PLACEHOLDERS)
        assert [Path(f).name for f in ds.val.files] == [val_name(n) for n in numbers]
        assert ds.val.labels.tolist() == [devkit_truth[n] for n in numbers] == [kaggle_truth[n] for n in numbers]
        assert ds.train is None and ds.num_classes == 1000 and ds.class_ids[65] == 'n01751748'
        loaded[layout] = by_name(ds.val)
    assert loaded['devkit'] == loaded['kaggle']


def test_committed_validation_images_decode(tmp_path, solution_csv):
    top, _, val = real_trees(tmp_path, solution_csv)['devkit']
    for n in COMMITTED_VAL:
        (val / val_name(n)).symlink_to(real('val') / val_name(n))
    with pytest.warns(UserWarning) as record:
        ds = iu.load_imagenet(top, verify=True)
    assert f'{val}: 12 of the 50000 validation images are present; the validation split holds only those' \
        in [str(w.message) for w in record]
    assert len(ds.val) == 12 and ds.val.skipped == []
    import decoding
    for f in ds.val.files:
        image = decoding.decode_image(tf.io.read_file(f))
        assert image.dtype == tf.uint8 and image.shape[-1] == 3 and image.shape[0] > 0
    assert Image.open(real('val') / val_name(34)).mode == 'L'     # the grayscale one, decoded to RGB


@pytest.mark.parametrize('layout', ['devkit', 'kaggle'])
@pytest.mark.parametrize('names, message', [
    (['notes.txt', 'IMG_0001.JPEG', 'n01440764/', val_name(3, '.JPEG.part')],
     '4 files are not validation images ILSVRC2012_val_NNNNNNNN.JPEG (ILSVRC2012_val_00000003.JPEG.part, '
     'IMG_0001.JPEG, n01440764/, notes.txt)'),
    ([val_name(1, '.jpeg'), val_name(7), val_name(7, '.png')],
     f'2 images are there twice ({val_name(1)} and {val_name(1, ".jpeg")}, {val_name(7)} and {val_name(7, ".png")})'),
    ([val_name(50001), val_name(0), val_name(99999999)],
     f'3 images have no label in SOURCE, which labels 50000 ({val_name(0)}, {val_name(50001)}, {val_name(99999999)})'),
], ids=['foreign', 'twice', 'unlabelled'])
def test_what_a_partial_validation_folder_cannot_hold(tmp_path, solution_csv, layout, names, message):
    top, _, val = real_trees(tmp_path, solution_csv)[layout]
    (val / val_name(1)).symlink_to(real('val') / val_name(1))
    for name in names:
        if name.endswith('/'):
            (val / name).mkdir()
        else:
            (val / name).write_bytes(b'')
    source = top / 'data' / 'ILSVRC2012_validation_ground_truth.txt' if layout == 'devkit' \
        else top / 'LOC_val_solution.csv'
    with pytest.raises(DataError) as e, warnings.catch_warnings():
        warnings.simplefilter('ignore')
        iu.load_imagenet(top)
    assert str(e.value) == f'{val}: {message.replace("SOURCE", str(source))}: ' + \
        ('keep one file of each' if 'twice' in message else 'move them out of the validation folder')


@pytest.mark.parametrize('layout', ['devkit', 'kaggle'])
def test_training_folder_with_some_classes_keeps_all_1000_labels(tmp_path, solution_csv, layout):
    wnids = iu.read_kaggle_mapping(real('LOC_synset_mapping.txt'))[0]
    top, train, val = real_trees(tmp_path, solution_csv)[layout]
    (val / val_name(1)).symlink_to(real('val') / val_name(1))
    images = Images()
    chosen = [wnids[999], wnids[0], wnids[65]]
    for wnid in chosen:
        for k in range(2):
            images.jpeg(train / wnid / f'{wnid}_{k}.JPEG')
    with pytest.warns(UserWarning) as record:
        ds = iu.load_imagenet(top)
    line = f'{train}: 3 of the 1000 classes have training images (missing: {", ".join(wnids[1:6])} and 992 more); ' \
        'labels stay those of all 1000 classes'
    assert line in [str(w.message) for w in record]
    assert ds.num_classes == 1000 and ds.class_ids == wnids
    assert by_name(ds.train) == {f'{w}_{k}.JPEG': wnids.index(w) for w in chosen for k in range(2)}
    assert sorted(set(ds.train.labels.tolist())) == [0, 65, 999]
    assert ds.val.labels.tolist() == [65] and ds.train.labels[ds.train.files.index(
        str(train / wnids[65] / f'{wnids[65]}_0.JPEG'))] == 65          # the same class from train and val
    for extra in ('n09999999', 'junk'):                  # a folder that is not a class stays an error
        (train / extra).mkdir()
        with pytest.raises(DataError) as e, warnings.catch_warnings():
            warnings.simplefilter('ignore')
            iu.load_imagenet(top)
        assert str(e.value).startswith(f'{train}: folders that are not among the 1000 classes') and \
            f'1 extra ({extra})' in str(e.value)
        (train / extra).rmdir()


def test_empty_folders_are_empty_splits(tmp_path, solution_csv):
    top, train, val = real_trees(tmp_path, solution_csv)['devkit']
    train.mkdir()
    with pytest.raises(DataError, match='holds neither training nor validation images'), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        iu.load_imagenet(top)
    with pytest.warns(UserWarning) as record, pytest.raises(DataError):
        iu.load_imagenet(top)
    assert [str(w.message) for w in record] == [
        f'no class folders in {train}: the training split is empty',
        f'no validation images in {val}: the validation split is empty']


def error_of(data_dir):
    with pytest.raises(DataError) as e:
        iu.load_imagenet(data_dir)
    return str(e.value)


def test_errors_name_the_path(tmp_path):
    top = make_tree(tmp_path, 'devkit')
    train = top / 'ILSVRC2012_img_train'
    (train / 'n09999999').mkdir()
    assert str(train) in (m := error_of(top)) and '1 extra (n09999999)' in m and 'missing' not in m
    (train / 'n09999999').rmdir()
    shutil.move(train / SORTED[1], tmp_path / 'moved')            # a class missing: a warning, not an error
    with pytest.warns(UserWarning, match=f'3 of the 4 classes have training images \\(missing: {SORTED[1]}\\)'):
        assert sorted(set(iu.load_imagenet(top).train.labels.tolist())) == [0, 2, 3]
    (train / f'{SORTED[1]}.tar').write_bytes(b'')        # a class archive not yet extracted
    assert f'1 missing ({SORTED[1]}) and 1 archives there ({SORTED[1]}.tar): extract each nXXXXXXXX.tar' \
        in error_of(top)
    (train / f'{SORTED[1]}.tar').unlink()
    (train / SORTED[1]).mkdir()
    assert str(train) in (m := error_of(top)) and 'hold no images' in m and SORTED[1] in m
    shutil.rmtree(train / SORTED[1])
    shutil.move(tmp_path / 'moved', train / SORTED[1])
    (top / 'ILSVRC2012_img_val' / 'ILSVRC2012_val_00000008.JPEG').unlink()
    with pytest.warns(UserWarning, match=f'{top / "ILSVRC2012_img_val"}: 7 of the 8 validation images are present'):
        assert len(iu.load_imagenet(top).val) == 7
    (top / 'data' / 'meta.mat').unlink()
    assert str(top / 'data' / 'meta.mat') in error_of(top)
    kaggle = make_tree(tmp_path, 'kaggle')
    (kaggle / 'LOC_val_solution.csv').unlink()
    assert str(kaggle / 'LOC_val_solution.csv') in error_of(kaggle)
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'notes.txt').write_text('hello')
    assert str(tmp_path / 'empty') in (m := error_of(tmp_path / 'empty')) and 'looked for' in m
    assert 'meta.mat' in m and 'LOC_synset_mapping.txt' in m and 'index.json' in m
    assert 'not a folder' in error_of(tmp_path / 'nowhere')


def add_messy(top, images=None):
    """A grayscale JPEG, a CMYK JPEG, a PNG named .JPEG and a corrupt file, in one class folder."""
    folder, images = top / 'ILSVRC2012_img_train' / SORTED[2], images or Images(width=100)
    messy = [images.jpeg(folder / 'gray.JPEG', 'L'), images.jpeg(folder / 'cmyk.JPEG', 'CMYK'),
             images.jpeg(folder / 'png.JPEG', fmt='PNG')]
    assert Image.open(messy[1]).mode == 'CMYK' and Image.open(messy[2]).format == 'PNG'
    corrupt = folder / 'corrupt.JPEG'
    corrupt.write_bytes(b'\xff\xd8\xff\xe0 this is not a JPEG' * 20)
    return messy, corrupt


def test_verify_decodes_messy_files_and_skips_the_corrupt_one(tmp_path):
    top = make_tree(tmp_path, 'devkit')
    messy, corrupt = add_messy(top)
    assert len(iu.load_imagenet(top).train) == 16
    with pytest.warns(iu.UnreadableImageWarning, match=str(corrupt)) as record:
        ds = iu.load_imagenet(top, verify=True)
    assert len(record) == 1
    assert ds.train.skipped == [str(corrupt)] and len(ds.train) == 15 and len(ds.val) == 8
    assert set(map(str, messy)) <= set(ds.train.files) and str(corrupt) not in ds.train.files
    assert all(by_name(ds.train)[m.name] == 2 for m in messy)
    import decoding
    for m in messy:
        assert decoding.decode_image(tf.io.read_file(str(m))).shape == (HEIGHT, Image.open(m).width, 3)


def read_records(paths):
    spec = {'image/encoded': tf.io.FixedLenFeature([], tf.string),
            'image/class/label': tf.io.FixedLenFeature([], tf.int64)}
    out = []
    for raw in tf.data.TFRecordDataset(paths):
        ex = tf.io.parse_single_example(raw, spec)
        out.append((tf.io.decode_jpeg(ex['image/encoded']).shape, int(ex['image/class/label'])))
    return out


def test_prepare_writes_shards_that_parse_back(tmp_path):
    top = make_tree(tmp_path, 'devkit')
    messy, corrupt = add_messy(top)
    source = iu.load_imagenet(top)
    width_of = {f: Image.open(f).width for f in source.train.files + source.val.files if Path(f) != corrupt}
    with pytest.warns(iu.UnreadableImageWarning, match=str(corrupt)):
        ds = iu.prepare(top, tmp_path / 'out', shards_train=3, shards_val=2, progress=False)
    out = tmp_path / 'out'
    assert iu.detect_layout(out) == 'prepared' and ds.class_ids == SORTED and ds.class_names == source.class_names
    assert sorted(p.name for p in out.glob('*.tfrecord')) == [f'train-0000{k}-of-00003.tfrecord' for k in range(3)] \
        + ['val-00000-of-00002.tfrecord', 'val-00001-of-00002.tfrecord']
    assert not list(out.glob('*.tmp')) and ds.train.skipped == [str(corrupt)] and ds.val.skipped == []
    assert ds.train.files is None and len(ds.train.records) == 3
    for split, src in ((ds.train, source.train), (ds.val, source.val)):
        records = read_records(split.records)
        assert [label for _, label in records] == split.labels.tolist()
        assert all(shape[0] == 256 and shape[2] == 3 for shape, _ in records)     # shorter side 256, RGB
        # each record's width tells which file it came from: its label must be that file's
        expected = {round(width_of[f] * 256 / HEIGHT): int(label)
                    for f, label in zip(src.files, src.labels) if Path(f) != corrupt}
        assert sorted(shape[1] for shape, _ in records) == sorted(expected)
        assert all(expected[shape[1]] == label for shape, label in records)
    val_widths = [shape[1] for shape, _ in read_records(ds.val.records)]
    assert val_widths == [round(width_of[f] * 256 / HEIGHT) for f in source.val.files]    # file order kept
    index = json.loads((out / 'index.json').read_text())
    assert index['class_ids'] == SORTED and index['val']['labels'] == VAL_CANONICAL



@pytest.mark.slow
def test_prepare_decodes_as_training_does_and_says_why_it_skips(tmp_path, capsys):
    """--prepare and --verify read files with training's decoder: a 16-bit grey PNG (32896 of 65535) is 128 in
    the shard as in training (Pillow's convert('RGB') made it 255); a decompression bomb is skipped with the size
    its header claims."""
    top = make_tree(tmp_path, 'devkit')
    folder = top / 'ILSVRC2012_img_train' / SORTED[1]
    grey16 = folder / 'grey16.png'
    Image.fromarray(np.full((HEIGHT, 80), 32896, np.uint16)).save(grey16)
    bomb = folder / 'bomb.gif'
    bomb.write_bytes(b'GIF89a' + (20000).to_bytes(2, 'little') * 2 + bytes(30))      # a header only
    why = re.escape(f'{bomb}: unreadable image, skipped (its header claims 20000 x 20000 pixels, more than '
                    'the 100,000,000 allowed')
    with pytest.warns(iu.UnreadableImageWarning, match=why):
        iu.load_imagenet(top, verify=True)
    with pytest.warns(iu.UnreadableImageWarning, match=why):
        ds = iu.prepare(top, tmp_path / 'out', shards_train=1, shards_val=1, progress=False)
    assert ds.train.skipped == [str(bomb)]
    training = decoding.decode_image(tf.io.read_file(str(grey16))).numpy()
    assert np.all(np.abs(training.astype(int) - 128) <= 1)
    spec = {'image/encoded': tf.io.FixedLenFeature([], tf.string)}
    shard = [tf.io.decode_jpeg(tf.io.parse_single_example(raw, spec)['image/encoded']).numpy()
             for raw in tf.data.TFRecordDataset(ds.train.records)]
    [grey] = [image for image in shard if image.shape[1] == 80 * 256 // HEIGHT]
    assert np.abs(grey.astype(int) - int(training.mean())).max() <= 1
    assert iu.main(['--data-dir', str(top), '--verify', '--speed-seconds', '0']) == 0       # the summary's list
    assert f'  {bomb} (its header claims 20000 x 20000 pixels' in capsys.readouterr().out

def test_prepare_resumes_without_redoing_complete_shards(tmp_path, monkeypatch):
    top = make_tree(tmp_path, 'devkit', per_class=5)
    out = tmp_path / 'out'
    calls, real_resize = [], iu._resized_jpeg

    def dies_after_some(path, size):                  # a kill in the middle of the run
        calls.append(path)
        if len(calls) == 15:
            raise KeyboardInterrupt
        return real_resize(path, size)
    monkeypatch.setattr(iu, '_resized_jpeg', dies_after_some)
    monkeypatch.setattr(iu.os, 'cpu_count', lambda: 2)        # two writers, whatever the machine
    with pytest.raises(KeyboardInterrupt):
        iu.prepare(top, out, shards_train=7, shards_val=2, progress=False)
    monkeypatch.setattr(iu, '_resized_jpeg', real_resize)
    assert not (out / 'index.json').exists()
    done = {p.name: p.stat().st_mtime_ns for p in out.glob('*.tfrecord')}
    assert 0 < len(done) < 9 and not list(out.glob('*.tmp'))    # some shards complete; the interrupted one's
    assert len(list(out.glob('*.json'))) == len(done)             # temporary file removed, no marker
    (out / 'val-00001-of-00002.tfrecord.tmp').write_bytes(b'half a shard')    # as a kill leaves it
    written, real_write = [], iu._write_shard
    monkeypatch.setattr(iu, '_write_shard', lambda shard, *a: (written.append(shard.name), real_write(shard, *a)))
    ds = iu.prepare(top, out, shards_train=7, shards_val=2, progress=False)
    every = {p.name for p in out.glob('*.tfrecord')}
    assert len(every) == 9 and sorted(written) == sorted(every - set(done))
    assert all((out / name).stat().st_mtime_ns == t for name, t in done.items())
    assert not list(out.glob('*.tmp'))
    assert len(ds.train) == 20 and len(ds.val) == 8 and ds.val.labels.tolist() == VAL_CANONICAL
    assert [label for _, label in read_records(ds.train.records)] == ds.train.labels.tolist()
    written.clear()
    (out / 'train-00003-of-00007.tfrecord').unlink()                 # one shard lost: only it is redone
    iu.prepare(top, out, shards_train=7, shards_val=2, progress=False)
    assert written == ['train-00003-of-00007.tfrecord']


def check_records(prepared, source):
    """Each prepared split holds exactly the source's images (a record's width tells its file), each with
    its label, and its labels in index.json are those in the shards."""
    for split, src in ((prepared.train, source.train), (prepared.val, source.val)):
        records = read_records(split.records)
        assert [label for _, label in records] == split.labels.tolist()
        height = records[0][0][0]
        expected = {round(Image.open(f).width * height / HEIGHT): int(label) for f, label in zip(src.files, src.labels)}
        assert sorted(shape[1] for shape, _ in records) == sorted(expected)
        assert all(expected[shape[1]] == label for shape, label in records)


@pytest.mark.parametrize('kill_at', ['rename', 'marker'])
def test_prepare_killed_between_a_shard_and_its_marker_redoes_the_shard(tmp_path, monkeypatch, kill_at):
    top = make_tree(tmp_path, 'devkit', per_class=4)
    out = tmp_path / 'out'
    iu.prepare(top, out, shards_train=3, shards_val=1, progress=False)
    Images(width=300).jpeg(top / 'ILSVRC2012_img_train' / SORTED[0] / 'new.JPEG')   # every shard's content changes
    monkeypatch.setattr(iu.os, 'cpu_count', lambda: 1)
    real_replace, real_json = os.replace, iu.write_json_atomic

    def kill_at_rename(src, dst):
        if str(dst).endswith('.tfrecord'):
            raise KeyboardInterrupt
        return real_replace(src, dst)

    def kill_at_marker(path, obj, *args, **kwargs):
        if 'source' in obj:
            raise KeyboardInterrupt
        return real_json(path, obj, *args, **kwargs)
    if kill_at == 'rename':
        monkeypatch.setattr(iu.os, 'replace', kill_at_rename)
    else:
        monkeypatch.setattr(iu, 'write_json_atomic', kill_at_marker)
    with pytest.raises(KeyboardInterrupt):
        iu.prepare(top, out, shards_train=3, shards_val=1, progress=False)
    monkeypatch.setattr(iu.os, 'replace', real_replace)
    monkeypatch.setattr(iu, 'write_json_atomic', real_json)
    assert not (out / 'index.json').exists()             # it described the old shards
    ds = iu.prepare(top, out, shards_train=3, shards_val=1, progress=False)
    assert len(ds.train) == 17
    check_records(ds, iu.load_imagenet(top))


def test_prepare_with_another_resize_size_rewrites_the_shards(tmp_path):
    top = make_tree(tmp_path, 'devkit')
    out = tmp_path / 'out'
    first = iu.prepare(top, out, shards_train=2, shards_val=1, resize_size=64, progress=False)
    assert {shape[0] for shape, _ in read_records(first.train.records + first.val.records)} == {64}
    ds = iu.prepare(top, out, shards_train=2, shards_val=1, resize_size=48, progress=False)
    assert {shape[0] for shape, _ in read_records(ds.train.records + ds.val.records)} == {48}
    assert json.loads((out / 'index.json').read_text())['resize_size'] == 48
    check_records(ds, iu.load_imagenet(top))


def test_prepare_on_a_full_disk_stops_with_one_line(tmp_path, monkeypatch, capsys):
    top = make_tree(tmp_path, 'devkit', per_class=5)
    out = tmp_path / 'out'
    full = out / 'train-00002-of-00004.tfrecord'
    real_writer = tf.io.TFRecordWriter

    class FullDisk:                        # the writer of one shard finds the disk full
        def __init__(self, path):
            self.path, self.writer = path, real_writer(path)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.writer.close()

        def write(self, record):
            if self.path == f'{full}.tmp':
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.writer.write(record)
    monkeypatch.setattr(iu.tf.io, 'TFRecordWriter', FullDisk)
    monkeypatch.setattr(iu.os, 'cpu_count', lambda: 1)
    line = f'could not write {full}: No space left on device; free space and re-run --prepare: finished shards are kept'
    with pytest.raises(DataError) as e, warnings.catch_warnings():
        warnings.simplefilter('error', iu.UnreadableImageWarning)      # nothing passes for an unreadable image
        iu.prepare(top, out, shards_train=4, shards_val=1, progress=False)
    assert str(e.value) == line
    assert not list(out.glob('*.tmp')) and not (out / 'index.json').exists()
    finished = sorted(p.name for p in out.glob('*.tfrecord'))
    assert finished == ['train-00000-of-00004.tfrecord', 'train-00001-of-00004.tfrecord']
    assert iu.main(['--data-dir', str(top), '--prepare', str(out), '--shards-train', '4', '--shards-val', '1',
                    '--speed-seconds', '0']) == 2
    err = capsys.readouterr().err
    assert f'error: {line}\n' in err and 'Traceback' not in err
    monkeypatch.setattr(iu.tf.io, 'TFRecordWriter', real_writer)         # space again: the rest is written
    written, real_write = [], iu._write_shard
    monkeypatch.setattr(iu, '_write_shard', lambda shard, *a: (written.append(shard.name), real_write(shard, *a)))
    ds = iu.prepare(top, out, shards_train=4, shards_val=1, progress=False)
    assert sorted(written) == ['train-00002-of-00004.tfrecord', 'train-00003-of-00004.tfrecord',
                               'val-00000-of-00001.tfrecord']
    check_records(ds, iu.load_imagenet(top))


def test_prepared_folder_is_checked_not_trusted(tmp_path, monkeypatch):
    top = make_tree(tmp_path, 'devkit')
    out = tmp_path / 'out'
    iu.prepare(top, out, shards_train=2, shards_val=1, progress=False)
    path = out / 'index.json'
    good = json.loads(path.read_text())
    for shard in out.glob('*.tfrecord'):
        assert json.loads(shard.with_suffix('.json').read_text())['bytes'] == shard.stat().st_size
    assert good['train']['bytes'] == [(out / n).stat().st_size for n in good['train']['shards']]
    assert good['train']['counts'] == [6, 6]
    for split, k, label, shard in (('train', -1, 4, 'train-00001-of-00002'), ('train', 0, -1, 'train-00000-of-00002'),
                                   ('val', 3, 1000, 'val-00000-of-00001')):
        bad = copy.deepcopy(good)
        bad[split]['labels'][k] = label
        path.write_text(json.dumps(bad))
        assert error_of(out) == f'{out / shard}.tfrecord: label {label} in {path} is not one of the 4 classes ' \
            f'(0..3): re-run --prepare into {out} (it rewrites only what is missing or changed)'
    bad = copy.deepcopy(good)
    del bad['val']['bytes']
    path.write_text(json.dumps(bad))
    assert 'written by an older --prepare (no shard sizes)' in error_of(out)
    path.write_text(json.dumps(good))
    shard = out / 'train-00000-of-00002.tfrecord'
    whole = shard.read_bytes()
    shard.write_bytes(whole[:len(whole) // 2])                       # truncated (a copy cut short)
    assert error_of(out) == f'{shard} is {len(whole) // 2} bytes but --prepare wrote {len(whole)}: truncated or ' \
        f'changed: re-run --prepare into {out} (it rewrites only what is missing or changed)'
    written, real_write = [], iu._write_shard
    monkeypatch.setattr(iu, '_write_shard', lambda shard, *a: (written.append(shard.name), real_write(shard, *a)))
    ds = iu.prepare(top, out, shards_train=2, shards_val=1, progress=False)
    assert written == [shard.name] and shard.read_bytes() == whole
    check_records(ds, iu.load_imagenet(top))


def test_cli_summary_and_errors(tmp_path, capsys):
    top = make_tree(tmp_path, 'devkit')
    assert iu.main(['--data-dir', str(top), '--speed-seconds', '0']) == 0
    out = capsys.readouterr().out
    assert f'{top} (devkit layout)' in out and 'classes     4' in out and 'Australian terrier' in out
    assert 'train       12 images' in out and 'val         8 images' in out
    assert iu.main(['--data-dir', str(top), '--prepare', str(tmp_path / 'out'), '--shards-train', '2',
                    '--shards-val', '1', '--speed-seconds', '0']) == 0
    out = capsys.readouterr().out
    assert '(prepared layout)' in out and 'train       12 images in 2 shards' in out
    assert iu.main(['--data-dir', str(tmp_path / 'out' / 'nowhere')]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'nowhere' in err and 'Traceback' not in err
    (top / 'ILSVRC2012_img_val' / 'ILSVRC2012_val_00000008.JPEG').unlink()       # a partial validation folder
    assert iu.main(['--data-dir', str(top), '--speed-seconds', '0']) == 0
    captured = capsys.readouterr()
    assert captured.err == f'warning: {top / "ILSVRC2012_img_val"}: 7 of the 8 validation images are present; ' \
        'the validation split holds only those\n' and 'val         7 images' in captured.out


@pytest.mark.slow
def test_cli_verify_and_pipeline_speed_in_a_subprocess(tmp_path):
    top = make_tree(tmp_path, 'devkit')
    _, corrupt = add_messy(top)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    run = subprocess.run([sys.executable, 'imagenet_utils.py', '--data-dir', str(tmp_path), '--verify',
                          '--speed-seconds', '1'], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert 'unreadable  1 (skipped)' in run.stdout and str(corrupt) in run.stdout
    assert 'train       15 images' in run.stdout
    speed = [line.split()[1] for line in run.stdout.splitlines() if line.startswith('pipeline ')]
    assert len(speed) == 1 and float(speed[0]) > 0, run.stdout
    bad = subprocess.run([sys.executable, 'imagenet_utils.py', '--data-dir', str(tmp_path / 'ILSVRC2012' / 'data')],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and 'Traceback' not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith('error: no ImageNet found in ')     # TF logs before it
