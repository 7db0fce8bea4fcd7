"""ImageNet (ILSVRC2012): find it, label it, check it, and prepare TFRecord shards.

Three layouts are read, whatever the user downloaded:
  devkit    ILSVRC2012/ILSVRC2012_img_train/nXXXXXXXX/*.JPEG, ILSVRC2012_img_val/*.JPEG,
            data/meta.mat, data/ILSVRC2012_validation_ground_truth.txt
  kaggle    ILSVRC/Data/CLS-LOC/train/nXXXXXXXX/*.JPEG, ILSVRC/Data/CLS-LOC/val/*.JPEG,
            LOC_synset_mapping.txt, LOC_val_solution.csv (beside ILSVRC/ or one level up)
  prepared  the shards and index.json written by --prepare
Whatever the layout, class i is the i-th WNID in sorted order (Kaggle, Keras and torchvision
order). The devkit numbers classes differently (ILSVRC2012_ID, meta.mat order), so its ground
truth goes through WNIDs; the same image gets the same label from either layout.

Part of a dataset is fine: a validation folder with some of the 50,000 images is labelled by the
number in each name (ILSVRC2012_val_NNNNNNNN), a training folder with some of the class folders
keeps the label space of all the classes (a checkpoint stays compatible); a warning says how much
is there. Only what cannot be right is refused: foreign names, an image twice, an image the
labels do not cover, a folder that is not a class.

--prepare decodes images with training's decoder (decoding.decode_image), so that the shards hold
the pixels training would read from the folder. It writes each shard under a temporary name, renames
it, then writes its JSON (labels, source fingerprint, size in bytes): the JSON is the completion
marker, so a kill anywhere leaves the shard to be redone, and a re-run with other settings
(--resize-size) rewrites the shards.
Loading a prepared folder checks every label against the classes and every shard's size.

    python imagenet_utils.py --data-dir ILSVRC2012 [--verify] [--speed-seconds 10]
    python imagenet_utils.py --data-dir ILSVRC2012 --prepare OUT [--shards-train 1024 --shards-val 128]
"""
import csv
import errno
import hashlib
import io
import json
import os
import re
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import quiet  # noqa: F401  (first: keeps TensorFlow's start-up lines out of the output)
import numpy as np
import scipy.io
import tensorflow as tf
from PIL import Image
from tqdm import tqdm

import alexnet
import cli
import datasets
import decoding
import preprocessing
from errors import DataError
from datasets import UnreadableImageWarning
from files import write_json_atomic

# Per-channel RGB mean of the ILSVRC2012 training images, as published with the VGG models
# (Simonyan & Zisserman 2014) and used since by Caffe, TF-slim and Keras. The paper subtracts
# the mean image instead (Section 2); a per-channel mean is the usual stand-in.
IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)
JPEG_QUALITY = 90        # re-encoding quality of the prepared shards
MIN_RESIZE_SIZE = alexnet.MIN_INPUT_SIZE          # --resize-size: the smallest crop must fit in the images
MAX_RESIZE_SIZE = alexnet.MAX_RESIZE_SIZE
MAX_SHARDS = 100_000     # ImageNet's 1.28 million training images: 13 a shard
MAX_SPEED_SECONDS = 3600.0   # --speed-seconds: an hour measures any pipeline; more is a typo
DEVKIT, KAGGLE, PREPARED = 'devkit', 'kaggle', 'prepared'
VAL_NAME = re.compile(r'ILSVRC2012_val_(\d{8})')     # the stem of every validation image


def _few(items, n=5):
    items = list(items)
    return ', '.join(map(str, items[:n])) + (f' and {len(items) - n} more' if len(items) > n else '')


def _need(path, what):
    if not path.is_file():
        raise DataError(f'missing {path} ({what})')
    return path


# ---------------------------------------------------------------- where is it, which layout

def _is_devkit(d):
    return any((d / p).exists() for p in ('ILSVRC2012_img_train', 'ILSVRC2012_img_val', 'data/meta.mat'))


def _locate(data_dir):
    """(layout, root folder) of the dataset in data_dir."""
    d = Path(data_dir)
    if not d.is_dir():
        raise DataError(f'{d} is not a folder: pass --data-dir the ImageNet folder')
    if (d / 'index.json').is_file():
        return PREPARED, d
    if _is_devkit(d):
        return DEVKIT, d
    if _is_devkit(d / 'ILSVRC2012'):
        return DEVKIT, d / 'ILSVRC2012'
    if (d / 'ILSVRC').is_dir() or (d / 'LOC_synset_mapping.txt').is_file():
        return KAGGLE, d
    raise DataError(f'no ImageNet found in {d}: looked for index.json (a --prepare folder), '
                    'ILSVRC2012_img_train/, ILSVRC2012_img_val/ or data/meta.mat (devkit layout, also '
                    'inside ILSVRC2012/), and ILSVRC/Data/CLS-LOC/ or LOC_synset_mapping.txt (Kaggle layout)')


def detect_layout(data_dir):
    """'devkit', 'kaggle' or 'prepared'; DataError naming what was looked for if none."""
    return _locate(data_dir)[0]


# ---------------------------------------------------------------- metadata and labels

def read_devkit_meta(path):
    """(WNIDs in ILSVRC2012_ID order, their names) of the leaf classes in a devkit meta.mat."""
    path = _need(Path(path), 'the devkit class list, data/meta.mat of ILSVRC2012_devkit_t12')
    try:
        synsets = np.atleast_1d(scipy.io.loadmat(str(path), squeeze_me=True)['synsets'])
        leaves = sorted((int(s['ILSVRC2012_ID']), str(s['WNID']), str(s['words']))
                        for s in synsets if int(s['num_children']) == 0)
    except Exception as e:     # not a .mat file, or not the devkit's struct
        raise DataError(f'{path} is not the devkit meta.mat (a struct array "synsets"): {e}') from None
    if [i for i, _, _ in leaves] != list(range(1, len(leaves) + 1)):
        raise DataError(f'{path}: the leaf synsets are not numbered 1..{len(leaves)}')
    return [w for _, w, _ in leaves], [n for _, _, n in leaves]


def read_devkit_val_labels(gt_path, meta_path):
    """Canonical labels of the validation images in file-name order, from the devkit ground truth."""
    id_wnids = read_devkit_meta(meta_path)[0]
    position = {w: i for i, w in enumerate(sorted(id_wnids))}
    canonical = np.array([position[w] for w in id_wnids])        # ILSVRC2012_ID - 1 -> canonical
    gt_path = _need(Path(gt_path), 'the devkit validation ground truth, one ILSVRC2012_ID per line')
    try:
        ids = np.array([int(line) for line in gt_path.read_text().split()])
    except ValueError as e:
        raise DataError(f'{gt_path}: expected one ILSVRC2012_ID per line ({e})') from None
    if ids.size and (ids.min() < 1 or ids.max() > len(id_wnids)):
        raise DataError(f'{gt_path}: IDs must be 1..{len(id_wnids)}, found {ids.min()}..{ids.max()}')
    return canonical[ids - 1].astype(np.int64)


def read_kaggle_mapping(path):
    """(WNIDs, names) from LOC_synset_mapping.txt, in sorted-WNID order (the file's own)."""
    path = _need(Path(path), 'the Kaggle class list, lines "nXXXXXXXX name, name"')
    pairs = [line.strip().split(' ', 1) for line in path.read_text().splitlines() if line.strip()]
    if not pairs or any(len(p) != 2 or not re.fullmatch(r'n\d{8}', p[0]) for p in pairs):
        raise DataError(f'{path}: expected lines "nXXXXXXXX name, name"')
    pairs.sort()
    return [w for w, _ in pairs], [n for _, n in pairs]


def read_kaggle_val_labels(csv_path, wnids):
    """{image id: canonical label} from LOC_val_solution.csv (the first box's WNID)."""
    csv_path = _need(Path(csv_path), 'the Kaggle validation labels, rows "ImageId,PredictionString"')
    index = {w: i for i, w in enumerate(wnids)}
    labels = {}
    with open(csv_path, newline='') as f:
        for row in csv.DictReader(f):
            try:
                labels[row['ImageId']] = index[row['PredictionString'].split()[0]]
            except (KeyError, IndexError, AttributeError):
                raise DataError(f'{csv_path}: bad row {row} (expected ImageId,PredictionString '
                                'starting with one of the mapping\'s WNIDs)') from None
    return labels



def _train_split(train_dir, wnids, meta):
    """Files and canonical labels of the class folders nXXXXXXXX/ in train_dir (None if absent or empty).

    Some of the classes are enough: labels stay the index among all of wnids, and a warning names
    the missing ones. A folder that is not one of the classes, an empty class folder, or class
    archives (.tar) left unextracted are refused.
    """
    if not train_dir.is_dir():
        warnings.warn(f'no training folder {train_dir}: the training split is empty')
        return None
    entries = [e for e in os.scandir(train_dir) if not e.name.startswith('.')]
    folders = {e.name for e in entries if e.is_dir()}
    extra = sorted(folders - set(wnids))
    if extra:
        raise DataError(f'{train_dir}: folders that are not among the {len(wnids)} classes of {meta}: '
                        f'{len(extra)} extra ({_few(extra)}): move them out of the training folder')
    missing = [w for w in wnids if w not in folders]
    tars = sorted(e.name for e in entries if e.name.endswith('.tar') and e.is_file())
    if missing and tars:
        raise DataError(f'{train_dir}: {len(missing)} missing ({_few(missing)}) and {len(tars)} archives '
                        f'there ({_few(tars)}): extract each nXXXXXXXX.tar into its folder nXXXXXXXX/')
    if not folders:
        warnings.warn(f'no class folders in {train_dir}: the training split is empty')
        return None
    if missing:
        warnings.warn(f'{train_dir}: {len(wnids) - len(missing)} of the {len(wnids)} classes have training images '
                      f'(missing: {_few(missing)}); labels stay those of all {len(wnids)} classes')
    files, labels, empty = [], [], []
    present = [(i, w) for i, w in enumerate(wnids) if w in folders]
    for i, wnid in tqdm(present, desc='listing classes', leave=False, disable=None):
        images = datasets.image_files(train_dir / wnid)
        empty += [] if images else [wnid]
        files += images
        labels += [i] * len(images)
    if empty:
        raise DataError(f'{train_dir}: {len(empty)} class folders hold no images ({_few(empty)}): '
                        'extract every class archive')
    return datasets.Split(np.array(labels, np.int64), files=files)


def _val_split(val_dir, label_of, count, source):
    """Files of val_dir in number order, labelled by label_of(n) for ILSVRC2012_val_NNNNNNNN (None when
    `source`, which labels `count` images, has no label for n). Some of the images are enough (a
    warning says how many are there); refused: names not of that form, an image twice (in two
    extensions), an image the labels do not cover."""
    if not val_dir.is_dir():
        warnings.warn(f'no validation folder {val_dir}: the validation split is empty')
        return None
    found, foreign = {}, []         # number -> file names
    for e in os.scandir(val_dir):
        if e.name.startswith('.'):
            continue
        stem, ext = os.path.splitext(e.name)
        m = VAL_NAME.fullmatch(stem)
        if m and ext.lower() in datasets.IMAGE_EXTENSIONS and e.is_file():
            found.setdefault(int(m.group(1)), []).append(e.name)
        else:
            foreign.append(e.name + ('/' if e.is_dir() else ''))
    if foreign:
        raise DataError(f'{val_dir}: {len(foreign)} files are not validation images ILSVRC2012_val_NNNNNNNN.JPEG '
                        f'({_few(sorted(foreign))}): move them out of the validation folder')
    twice = [' and '.join(sorted(names)) for n, names in sorted(found.items()) if len(names) > 1]
    if twice:
        raise DataError(f'{val_dir}: {len(twice)} images are there twice ({_few(twice, 3)}): keep one file of each')
    unlabelled = [found[n][0] for n in sorted(found) if label_of(n) is None]
    if unlabelled:
        raise DataError(f'{val_dir}: {len(unlabelled)} images have no label in {source}, which labels {count} '
                        f'({_few(unlabelled)}): move them out of the validation folder')
    if not found:
        warnings.warn(f'no validation images in {val_dir}: the validation split is empty')
        return None
    if len(found) < count:
        warnings.warn(f'{val_dir}: {len(found)} of the {count} validation images are present; '
                      f'the validation split holds only those')
    numbers = sorted(found)
    return datasets.Split(np.array([label_of(n) for n in numbers], np.int64),
                          files=[os.path.join(val_dir, found[n][0]) for n in numbers])


def _load_devkit(root):
    meta = root / 'data' / 'meta.mat'
    id_wnids, id_names = read_devkit_meta(meta)
    wnids = sorted(id_wnids)
    name_of = dict(zip(id_wnids, id_names))
    names = [name_of[w] for w in wnids]
    train = _train_split(root / 'ILSVRC2012_img_train', wnids, meta)
    val = None
    if (root / 'ILSVRC2012_img_val').is_dir():
        gt = root / 'data' / 'ILSVRC2012_validation_ground_truth.txt'
        truth = read_devkit_val_labels(gt, meta)

        def label_of(n):             # line n labels ILSVRC2012_val_0000000n
            return truth[n - 1] if 1 <= n <= len(truth) else None
        val = _val_split(root / 'ILSVRC2012_img_val', label_of, len(truth), gt)
    return wnids, names, train, val


def _load_kaggle(root):
    def beside(name):        # at the dataset root, or one level up
        up = root.parent / name
        return up if up.is_file() and not (root / name).is_file() else root / name
    mapping, solution = beside('LOC_synset_mapping.txt'), beside('LOC_val_solution.csv')
    wnids, names = read_kaggle_mapping(mapping)
    cls_loc = root / 'ILSVRC' / 'Data' / 'CLS-LOC'
    if not cls_loc.is_dir():
        raise DataError(f'missing {cls_loc} (the Kaggle images: train/nXXXXXXXX/*.JPEG and val/*.JPEG)')
    train = _train_split(cls_loc / 'train', wnids, mapping)
    val = None
    if (cls_loc / 'val').is_dir():
        truth = read_kaggle_val_labels(solution, wnids)
        val = _val_split(cls_loc / 'val', lambda n: truth.get(f'ILSVRC2012_val_{n:08d}'), len(truth), solution)
    return wnids, names, train, val


def _load_prepared(root):
    """What index.json lists, checked: every shard there with the size --prepare wrote, every label
    one of the classes."""
    path = root / 'index.json'
    rerun = f're-run --prepare into {root} (it rewrites only what is missing or changed)'
    try:
        index = json.loads(path.read_text())
        class_ids, class_names = list(index['class_ids']), list(index['class_names'])
        if len(class_ids) != len(class_names) or not class_ids:
            raise ValueError(f'{len(class_ids)} class ids but {len(class_names)} class names')
        splits = {}
        for name in ('train', 'val'):
            s = index.get(name)
            if not s:
                splits[name] = None
                continue
            shards = [root / f for f in s['shards']]
            if 'bytes' not in s or 'counts' not in s:
                raise DataError(f'{path} was written by an older --prepare (no shard sizes): {rerun}')
            missing = [str(f) for f in shards if not f.is_file()]
            if missing:
                raise DataError(f'{root}: shards listed in index.json are missing ({_few(missing)}): '
                                're-run --prepare into this folder to finish it')
            labels, counts, sizes = np.array(s['labels'], np.int64), list(s['counts']), list(s['bytes'])
            if not all(type(c) is int and c >= 0 for c in counts) or not all(type(b) is int for b in sizes):
                raise ValueError('record counts and sizes must be whole numbers')
            if not len(counts) == len(sizes) == len(shards) or sum(counts) != len(labels):
                raise DataError(f'{path}: the {name} split lists {len(shards)} shards, {len(counts)} record counts '
                                f'and {len(sizes)} sizes, and {len(labels)} labels for {sum(counts)} records: {rerun}')
            start = 0
            for shard, count, size in zip(shards, counts, sizes):
                part, start = labels[start:start + count], start + count
                bad = part[(part < 0) | (part >= len(class_ids))]
                if bad.size:
                    raise DataError(f'{shard}: label {bad[0]} in {path} is not one of the {len(class_ids)} classes '
                                    f'(0..{len(class_ids) - 1}): {rerun}')
                got = shard.stat().st_size
                if got != size:
                    raise DataError(f'{shard} is {got} bytes but --prepare wrote {size}: truncated or changed: {rerun}')
            splits[name] = datasets.Split(labels, records=[str(f) for f in shards], skipped=s['skipped'])
        return class_ids, class_names, splits['train'], splits['val']
    except (ValueError, KeyError, TypeError, OverflowError) as e:
        raise DataError(f'{path} is not an index written by --prepare ({e!r})') from None


# ---------------------------------------------------------------- checking images

def find_unreadable(files, progress=True):
    """[(path, error)] of the files that decoding.decode_image (what training uses) rejects."""
    if not files:
        return []

    def decode(i, path):    # the shape depends on the decoded pixels, so the decode is not pruned
        return i, tf.shape(decoding.decode_image(tf.io.read_file(path)))

    data = tf.data.Dataset.from_tensor_slices((np.arange(len(files)), list(files)))
    data = data.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    data = data.ignore_errors().batch(256).prefetch(2)
    ok = np.zeros(len(files), bool)
    with tqdm(total=len(files), desc='decoding', unit='img', disable=not progress) as bar:
        for i, _ in data:
            ok[i.numpy()] = True
            bar.update(len(i))
    # decode again, one by one, for the reason
    return [(files[i], decoding.why_unreadable(files[i]) or 'failed inside the input pipeline')
            for i in np.flatnonzero(~ok)]


def _drop_unreadable(split, progress):
    bad = find_unreadable(split.files, progress)
    for path, message in bad:
        warnings.warn(f'{path}: unreadable image, skipped ({message})', UnreadableImageWarning)
    bad_paths = {p for p, _ in bad}
    keep = np.array([f not in bad_paths for f in split.files], bool)
    return datasets.Split(split.labels[keep], files=[f for f, k in zip(split.files, keep) if k],
                          skipped=split.skipped + [p for p, _ in bad])


def load_imagenet(data_dir, verify=False):
    """The Dataset in data_dir (any layout); verify=True decodes every image and skips unreadable ones."""
    layout, root = _locate(data_dir)
    if layout == PREPARED:       # records were decoded and re-encoded when written
        wnids, names, train, val = _load_prepared(root)
    else:
        wnids, names, train, val = (_load_devkit if layout == DEVKIT else _load_kaggle)(root)
        if train is None and val is None:
            raise DataError(f'{root} ({layout} layout) holds neither training nor validation images')
        if verify:
            train, val = [s if s is None else _drop_unreadable(s, progress=True) for s in (train, val)]
    # ILSVRC's validation set is the evaluation set; it also serves the decisions during training.
    return datasets.Dataset('imagenet', names, train=train, val=val, test=None, mean=IMAGENET_MEAN_RGB,
                            class_ids=wnids)


# ---------------------------------------------------------------- --prepare

def _resized_jpeg(path, size):
    """The image at path as RGB JPEG bytes, shorter side resized to size. Decoded by decoding.decode_image,
    as training decodes files (16-bit PNGs, CMYK, palettes, the refusals alike), so that the shards hold the
    pixels training would have read from the folder."""
    image = Image.fromarray(decoding.decode_image(tf.io.read_file(str(path))).numpy())
    w, h = image.size
    scale = size / min(w, h)
    image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    out = io.BytesIO()
    image.save(out, 'JPEG', quality=JPEG_QUALITY)
    return out.getvalue()


def _example(jpeg, label):
    return tf.train.Example(features=tf.train.Features(feature={
        'image/encoded': tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg])),
        'image/class/label': tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
    })).SerializeToString()


def _fingerprint(files, labels, resize_size):
    """What a shard holds (class folder + name, so the data may move) and how it was made."""
    names = [f'{Path(f).parent.name}/{Path(f).name}' for f in files]
    made = [names, [int(x) for x in labels], int(resize_size), JPEG_QUALITY]
    return hashlib.sha1(json.dumps(made).encode()).hexdigest()


def _shard_done(shard, source):
    """Whether shard is complete: its JSON (written last) has this source and the shard's size."""
    try:
        side = json.loads(shard.with_suffix('.json').read_text())
        return side['source'] == source and shard.stat().st_size == side['bytes']
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _write_error(shard, e):
    """The one line for a shard that cannot be written (full disk, permissions, I/O)."""
    code = getattr(e, 'errno', None)
    reason = (e.strerror or str(e)) if isinstance(e, OSError) else getattr(e, 'message', str(e))
    full = code in (errno.ENOSPC, getattr(errno, 'EDQUOT', errno.ENOSPC)) or 'space left' in str(reason).lower()
    return DataError(f'could not write {shard}: {reason}; {"free space" if full else "fix that"} and re-run '
                     f'--prepare: finished shards are kept')


def _write_shard(shard, files, labels, source, size, bar, stop):
    """Write one shard to a temporary name, rename it, then write its JSON (the completion marker: source,
    labels, skipped files, size). Unreadable images are skipped with a warning; a failure to write stops
    with a DataError (the temporary file removed)."""
    side, tmp = shard.with_suffix('.json'), Path(f'{shard}.tmp')
    kept, skipped = [], []
    try:
        side.unlink(missing_ok=True)          # the shard is about to change: its old marker no longer holds
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for path, label in zip(files, labels):
                if stop.is_set():
                    return
                try:
                    record = _example(_resized_jpeg(path, size), label)
                except tf.errors.OpError as e:      # unreadable, refused, or gone
                    warnings.warn(f'{path}: unreadable image, skipped ({decoding.error_reason(e)})',
                                  UnreadableImageWarning)
                    skipped.append(str(path))
                else:
                    writer.write(record)
                    kept.append(int(label))
                bar.update()
        os.replace(tmp, shard)
        write_json_atomic(side, {'source': source, 'labels': kept, 'skipped': skipped,
                                 'bytes': shard.stat().st_size})
    except (OSError, tf.errors.OpError) as e:
        raise _write_error(shard, e) from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def prepare(data_dir, out_dir, shards_train=1024, shards_val=128, resize_size=preprocessing.RESIZE_SIZE,
            progress=True):
    """Write data_dir as TFRecord shards + index.json in out_dir (resumable); return that Dataset."""
    if detect_layout(data_dir) == PREPARED:
        raise DataError(f'{data_dir} is already a prepared folder: pass the ImageNet folder itself')
    ds = load_imagenet(data_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob('*-of-*.tmp'):      # left by an interrupted run
        stale.unlink()
    jobs = []
    for name, split, count in (('train', ds.train, shards_train), ('val', ds.val, shards_val)):
        if split is None:
            continue
        # Training shards mix the classes (a fixed shuffle); validation stays in file order.
        order = np.random.RandomState(0).permutation(len(split)) if name == 'train' else np.arange(len(split))
        n = max(1, min(count, len(split)))
        for k, part in enumerate(np.array_split(order, n)):
            files, labels = [split.files[i] for i in part], split.labels[part]
            jobs.append((name, out / f'{name}-{k:05d}-of-{n:05d}.tfrecord', files, labels,
                         _fingerprint(files, labels, resize_size)))
    todo = [j for j in jobs if not _shard_done(j[1], j[4])]
    if todo:                # the index no longer describes what is there until it is written again
        (out / 'index.json').unlink(missing_ok=True)
    stop = threading.Event()
    bar = tqdm(total=sum(len(j[2]) for j in todo), desc=f'writing {len(todo)} of {len(jobs)} shards',
               unit='img', disable=not progress)
    with bar, ThreadPoolExecutor(min(32, os.cpu_count() or 1)) as pool:
        futures = [pool.submit(_write_shard, *j[1:], resize_size, bar, stop) for j in todo]
        try:
            for f in as_completed(futures):
                f.result()
        except BaseException:        # Ctrl-C or an error: stop the others, keep the complete shards
            stop.set()
            pool.shutdown(cancel_futures=True)
            raise
    index = dict(class_ids=ds.class_ids, class_names=ds.class_names, resize_size=resize_size)
    for name in ('train', 'val'):
        shards = [j[1] for j in jobs if j[0] == name]
        sides = [json.loads(s.with_suffix('.json').read_text()) for s in shards]
        index[name] = dict(shards=[s.name for s in shards], labels=[x for s in sides for x in s['labels']],
                           counts=[len(s['labels']) for s in sides], bytes=[s['bytes'] for s in sides],
                           skipped=[f for s in sides for f in s['skipped']]) if shards else None
    try:
        write_json_atomic(out / 'index.json', index)
    except OSError as e:
        raise _write_error(out / 'index.json', e) from None
    return load_imagenet(out)


# ---------------------------------------------------------------- command line

def summary(ds, data_dir, checked=True):
    """The lines printed by the command line: layout, classes, split sizes, unreadable files."""
    layout, root = _locate(data_dir)
    lines = [f'data        {root} ({layout} layout)', f'classes     {ds.num_classes}']
    lines += [f'  {i:4d} {w} {n}' for i, (w, n) in enumerate(zip(ds.class_ids[:5], ds.class_names[:5]))]
    for name in ('train', 'val'):
        split = getattr(ds, name)
        lines.append(f'{name:11s} {len(split) if split else 0} images'
                     + (f' in {len(split.records)} shards' if split and split.records else ''))
    skipped = [f for s in (ds.train, ds.val) if s for f in s.skipped]
    if not checked:
        return lines + ['unreadable  not checked (--verify decodes every image)']
    why = {f: decoding.why_unreadable(f) for f in skipped}         # decoded again, for the reason
    return lines + [f'unreadable  {len(skipped)} (skipped)'] + [f'  {f} ({why[f]})' if why[f] else f'  {f}'
                                                               for f in skipped]


def parser():
    p = cli.Parser(description='Check an ImageNet folder, or prepare TFRecord shards from it.')
    p.add_argument('--data-dir', required=True, help='devkit ILSVRC2012/, Kaggle root or a --prepare folder')
    p.add_argument('--verify', action='store_true', help='decode every image, list and skip unreadable ones')
    p.add_argument('--speed-seconds', type=cli.number(0, MAX_SPEED_SECONDS), default=10,
                   help=f'measure the input pipeline for this long (images/s); 0 skips (at most {MAX_SPEED_SECONDS:g})')
    p.add_argument('--prepare', metavar='OUT', help='write TFRecord shards (shorter side resized) to OUT')
    p.add_argument('--shards-train', type=cli.whole(1, MAX_SHARDS), default=1024,
                   help=f'training shards (default 1024, at most {MAX_SHARDS})')
    p.add_argument('--shards-val', type=cli.whole(1, MAX_SHARDS), default=128,
                   help=f'validation shards (default 128, at most {MAX_SHARDS})')
    p.add_argument('--resize-size', type=cli.whole(MIN_RESIZE_SIZE, MAX_RESIZE_SIZE), default=preprocessing.RESIZE_SIZE,
                   help=f'shorter side of prepared images (default {preprocessing.RESIZE_SIZE}, from {MIN_RESIZE_SIZE} '
                        f'to {MAX_RESIZE_SIZE})')
    return p


def check_prepare(out, data_dir):
    """--prepare OUT, before any image is read: a folder (or one to make) that is not the data's."""
    if os.path.lexists(out) and not os.path.isdir(out):
        raise DataError(f'--prepare {out} is not a folder: give a folder for the shards (made when missing)')
    inside = os.path.realpath(out) + os.sep
    if os.path.isdir(data_dir) and inside.startswith(os.path.realpath(data_dir) + os.sep):
        raise DataError(f'--prepare {out} is inside --data-dir {data_dir}: give a folder outside the images')


def main(argv=None):
    a = parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UnreadableImageWarning)     # the summary lists them
        warnings.showwarning = cli.show_warning
        return _run(a)


def _run(a):
    try:
        if a.prepare:       # decodes every image, so --verify is implied
            check_prepare(a.prepare, a.data_dir)
            ds = prepare(a.data_dir, a.prepare, a.shards_train, a.shards_val, a.resize_size)
            where = a.prepare
        else:
            ds, where = load_imagenet(a.data_dir, verify=a.verify), a.data_dir
        print('\n'.join(summary(ds, where, checked=bool(a.verify or a.prepare))))
        split = ds.train or ds.val
        if a.speed_seconds > 0 and split is not None:
            batch = min(128, len(split))
            speed, _ = preprocessing.pipeline_speed(split, batch_size=batch, seconds=a.speed_seconds)
            print(f'pipeline    {speed:.0f} images/s (training transforms, batch {batch}, this machine)')
    except DataError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
