"""CIFAR-10: download, verify, safely extract and load the official python archive.

    python cifar10_utils.py --data-dir DIR [--md5 HASH] [--url URL]

`load_cifar10(data_dir)` returns a `datasets.Dataset` with uint8 HWC images in
memory. `data_dir` may hold the archive (cifar-10-python.tar.gz, or one other
*.tar.gz), an extracted cifar-10-batches-py/, or nothing (then the archive is
downloaded into it). The batches are Python-2 pickles; they are read with an
unpickler that can only build numpy arrays and plain containers, so a crafted
file cannot run code.
"""
import argparse
import hashlib
import http.client
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib

import numpy as np
from tqdm import tqdm

from datasets import DataError, Dataset, Split

CLASS_NAMES = ['airplane', 'automobile', 'bird', 'cat', 'deer',
               'dog', 'frog', 'horse', 'ship', 'truck']
CIFAR10_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'
CIFAR10_MD5 = 'c58f30108f718f92721af3b95e74349a'
DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser('~'), '.cache', 'alexnet', 'cifar10')
ARCHIVE_NAME = 'cifar-10-python.tar.gz'
BATCHES_DIR = 'cifar-10-batches-py'
TRAIN_BATCHES = [f'data_batch_{i}' for i in range(1, 6)]
BATCH_FILES = ['batches.meta', *TRAIN_BATCHES, 'test_batch']
ROW_SIZE = 32 * 32 * 3  # one image per row: 1024 red, then 1024 green, then 1024 blue
OFFLINE_HINT = (f'pass --data-dir pointing at a folder holding {ARCHIVE_NAME} or an extracted '
                f'{BATCHES_DIR}/, or use --dataset demo for the offline demo')


def md5sum(path):
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, 'md5').hexdigest()


def _check_md5(path, md5):
    """Refuse an archive whose MD5 is neither the official one nor the one the user gave."""
    got = md5sum(path)
    if got != md5.lower():
        hint = (f'if it is a copy you made yourself, pass --md5 {got}' if md5 == CIFAR10_MD5
                else 'check the --md5 you passed')
        raise DataError(f'{path} has MD5 {got}, expected {md5}: delete it to download '
                        f'the official archive again, or {hint}')
    return got


# --- download -----------------------------------------------------------------

def _fetch(url, part, progress):
    """Append the rest of `url` to `part` (HTTP Range), or rewrite it when the server won't."""
    start = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={'Range': f'bytes={start}-'} if start else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # the .part is already whole or too long: start over
            os.remove(part)
            return _fetch(url, part, progress)
        raise
    with response:
        resumed = (start and response.status == 206 and
                   response.headers.get('Content-Range', '').startswith(f'bytes {start}-'))
        start = start if resumed else 0
        length = response.headers.get('Content-Length')
        total = start + int(length) if length else None
        with open(part, 'ab' if resumed else 'wb') as f, \
                tqdm(total=total, initial=start, unit='B', unit_scale=True,
                     desc=os.path.basename(part), disable=not progress) as bar:
            for chunk in iter(lambda: response.read(1 << 20), b''):
                f.write(chunk)
                bar.update(len(chunk))
    # http.client returns a short body without complaint when the connection drops.
    size = os.path.getsize(part)
    if total is not None and size < total:
        raise ConnectionError(f'connection closed after {size} of {total} bytes')


def download(dest_dir, url=CIFAR10_URL, md5=CIFAR10_MD5, progress=True):
    """Return the path of the archive in dest_dir, downloading it first if missing.

    The download goes to a .part file, renamed only once its MD5 checks out, so an
    interrupted run never leaves something that looks done; the next run resumes it.
    """
    md5 = md5 or CIFAR10_MD5
    os.makedirs(dest_dir, exist_ok=True)
    path = os.path.join(dest_dir, ARCHIVE_NAME)
    if os.path.exists(path):
        _check_md5(path, md5)
        return path
    part = path + '.part'
    try:
        _fetch(url, part, progress)
    except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, resets
        reason = e if isinstance(e, urllib.error.HTTPError) else getattr(e, 'reason', e)
        raise DataError(f'could not download {url} into {dest_dir} ({reason}); {OFFLINE_HINT}')
    got = md5sum(part)
    if got != md5.lower():
        os.remove(part)
        raise DataError(f'downloaded {url} has MD5 {got}, expected {md5}; the file was deleted: '
                        f'try again, or pass --md5 {got} if {url} serves a copy you made yourself')
    os.replace(part, path)
    return path


# --- safe extraction ------------------------------------------------------------

def extract(archive, dest_dir):
    """Extract `archive` into dest_dir and return the path of its cifar-10-batches-py/.

    Only plain files and folders inside dest_dir are allowed: absolute paths, '..'
    and links of any kind are refused before anything is written.
    """
    dest_dir = os.path.realpath(dest_dir)
    os.makedirs(dest_dir, exist_ok=True)
    try:
        with tarfile.open(archive, 'r:*') as tar:
            members = tar.getmembers()
            for m in members:
                target = os.path.realpath(os.path.join(dest_dir, m.name))
                if (os.path.isabs(m.name) or '..' in m.name.replace('\\', '/').split('/')
                        or os.path.commonpath([dest_dir, target]) != dest_dir):
                    raise DataError(f'{archive}: member {m.name!r} would land outside {dest_dir}; '
                                    f'refusing to extract it')
                if not (m.isfile() or m.isdir()):
                    raise DataError(f'{archive}: member {m.name!r} is a link or special file; '
                                    f'a CIFAR-10 archive holds only plain files')
            # Extract to a temporary folder and rename, so a half extraction never counts.
            tmp = tempfile.mkdtemp(prefix='.extract-', dir=dest_dir)
            try:
                safe = {'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}
                tar.extractall(tmp, members=members, **safe)
                if not os.path.isdir(os.path.join(tmp, BATCHES_DIR)):
                    raise DataError(f'{archive} holds no {BATCHES_DIR}/ folder; '
                                    f'is it the CIFAR-10 python version?')
                out = os.path.join(dest_dir, BATCHES_DIR)
                if os.path.exists(out):
                    shutil.rmtree(out)
                os.replace(os.path.join(tmp, BATCHES_DIR), out)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataError(f'cannot extract {archive} ({e}); is it a complete .tar.gz?')
    return out


# --- loading the Python-2 pickles --------------------------------------------------

try:  # numpy 2 moved it; the Python-2 pickles name numpy.core.multiarray
    from numpy._core.multiarray import _reconstruct
except ImportError:
    from numpy.core.multiarray import _reconstruct

# The only globals the official batches refer to: numpy's array reconstruction.
SAFE_GLOBALS = {('numpy.core.multiarray', '_reconstruct'): _reconstruct,
                ('numpy._core.multiarray', '_reconstruct'): _reconstruct,
                ('numpy', 'ndarray'): np.ndarray, ('numpy', 'dtype'): np.dtype}


class _SafeUnpickler(pickle.Unpickler):
    """Builds only numpy arrays, dicts, lists, strings and numbers: no code can run."""

    def find_class(self, module, name):
        if (module, name) not in SAFE_GLOBALS:
            raise pickle.UnpicklingError(f'refusing to load {module}.{name}')
        return SAFE_GLOBALS[module, name]


def _load_pickle(path):
    """Return the dict in one batch file, keys as str (Python 2 wrote them as bytes)."""
    try:
        with open(path, 'rb') as f:
            obj = _SafeUnpickler(f, encoding='latin1').load()
    except FileNotFoundError:
        raise DataError(f'{path} is missing; the folder {os.path.dirname(path)} is not a complete '
                        f'{BATCHES_DIR}/ (delete it to extract or download again)')
    except Exception as e:  # any malformed or malicious pickle
        raise DataError(f'{path} is not a valid CIFAR-10 batch ({e})')
    if not isinstance(obj, dict):
        raise DataError(f'{path} holds a {type(obj).__name__}, not a CIFAR-10 batch dict')
    return {k.decode('latin1') if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _load_batch(path):
    """Return (uint8 images [N, 32, 32, 3] HWC RGB, int64 labels [N]) from one batch file."""
    batch = _load_pickle(path)
    missing = {'data', 'labels'} - set(batch)
    if missing:
        raise DataError(f'{path} lacks the key(s) {sorted(missing)}; not a CIFAR-10 batch')
    data = batch['data']
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == ROW_SIZE and len(data) > 0):
        shape = getattr(data, 'shape', None)
        raise DataError(f'{path}: data has shape {shape} and dtype {getattr(data, "dtype", None)}, '
                        f'expected N x {ROW_SIZE} uint8')
    try:
        labels = np.asarray(batch['labels'], dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f'{path}: labels are not a list of integers')
    if labels.shape != (len(data),):
        raise DataError(f'{path}: {labels.size} labels for {len(data)} images')
    if labels.min() < 0 or labels.max() > 9:
        raise DataError(f'{path}: labels range {labels.min()}..{labels.max()}, expected 0..9')
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # CHW planes -> HWC
    return np.ascontiguousarray(images), labels


def load_batches(batches_dir):
    """Return (train_images, train_labels, test_images, test_labels, class_names)."""
    meta = _load_pickle(os.path.join(batches_dir, 'batches.meta'))
    names = [n.decode('latin1') if isinstance(n, bytes) else n for n in meta.get('label_names', [])]
    if len(names) != 10 or not all(isinstance(n, str) for n in names):
        raise DataError(f'{batches_dir}/batches.meta has no list of 10 label_names')
    train = [_load_batch(os.path.join(batches_dir, b)) for b in TRAIN_BATCHES]
    test_images, test_labels = _load_batch(os.path.join(batches_dir, 'test_batch'))
    return (np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train]),
            test_images, test_labels, names)


# --- finding the data and building the Dataset --------------------------------------

def prepare(data_dir=None, md5=None, download_missing=True, url=CIFAR10_URL, progress=True):
    """Return (batches folder, one line saying what was used and its MD5 status).

    data_dir may be an archive file, a cifar-10-batches-py/ folder, a folder holding
    either, or an empty folder (then the archive is downloaded into it).
    """
    data_dir = os.path.expanduser(data_dir or DEFAULT_CACHE_DIR)
    expected = md5 or CIFAR10_MD5
    official = expected.lower() == CIFAR10_MD5
    if os.path.isdir(os.path.join(data_dir, BATCHES_DIR)):
        data_dir = os.path.join(data_dir, BATCHES_DIR)
    if (os.path.basename(os.path.normpath(data_dir)) == BATCHES_DIR
            or any(os.path.isfile(os.path.join(data_dir, f)) for f in BATCH_FILES)):
        return data_dir, f'folder {data_dir} used as is (no archive MD5 to check)'
    if os.path.isfile(data_dir):
        archive, folder = data_dir, os.path.dirname(data_dir)
    else:
        folder = data_dir
        found = sorted(f for f in os.listdir(data_dir) if f.endswith(('.tar.gz', '.tgz'))) \
            if os.path.isdir(data_dir) else []
        if ARCHIVE_NAME in found:
            archive = os.path.join(data_dir, ARCHIVE_NAME)
        elif len(found) == 1:
            archive = os.path.join(data_dir, found[0])
        elif found:
            raise DataError(f'{data_dir} holds several archives ({", ".join(found)}); '
                            f'pass --data-dir the one to use')
        elif download_missing:
            archive = download(data_dir, url=url, md5=expected, progress=progress)
        else:
            raise DataError(f'{data_dir} holds neither {ARCHIVE_NAME} nor {BATCHES_DIR}/; '
                            f'{OFFLINE_HINT}')
    got = _check_md5(archive, expected)
    status = 'the official archive' if official else 'the --md5 given (not the official archive)'
    return extract(archive, folder), f'archive {archive}: MD5 {got} matches {status}'


def holdout(labels, val_size, seed=0):
    """Return sorted (train indices, val indices): a seeded, class-balanced holdout.

    Classes take turns in a seeded random order, so the default 5,000 of CIFAR-10's
    balanced training set are exactly 500 per class; the same seed gives the same split.
    """
    order = np.random.RandomState(seed).permutation(len(labels))
    rank = np.empty(len(labels), np.int64)  # position of each image within its class
    for c in np.unique(labels):
        members = order[labels[order] == c]
        rank[members] = np.arange(len(members))
    val = np.sort(order[np.argsort(rank[order], kind='stable')][:val_size])
    return np.setdiff1d(np.arange(len(labels)), val), val


def load_cifar10(data_dir=None, val_size=5000, seed=0, md5=None, download=True, url=CIFAR10_URL):
    """Return the CIFAR-10 `Dataset`: train minus a `val_size` holdout, val, and test_batch.

    val (the holdout, see `holdout`) is for learning-rate and checkpoint decisions;
    test is never used for them. val is None when val_size is 0.
    """
    batches_dir, _ = prepare(data_dir, md5=md5, download_missing=download, url=url)
    return dataset_from(batches_dir, val_size, seed)


def dataset_from(batches_dir, val_size=5000, seed=0):
    """Build the `Dataset` from an extracted cifar-10-batches-py/ (see `load_cifar10`)."""
    images, labels, test_images, test_labels, names = load_batches(batches_dir)
    if not 0 <= val_size < len(labels):
        raise DataError(f'val_size {val_size} must be between 0 and {len(labels) - 1}')
    train_idx, val_idx = holdout(labels, val_size, seed)
    train = Split(labels=labels[train_idx], images=images[train_idx])
    val = Split(labels=labels[val_idx], images=images[val_idx]) if val_size else None
    mean = train.images.reshape(-1, 3).mean(axis=0, dtype=np.float64)
    return Dataset(name='cifar10', class_names=names, train=train, val=val,
                   test=Split(labels=test_labels, images=test_images),
                   mean=tuple(float(m) for m in mean))


def main(argv=None):
    ap = argparse.ArgumentParser(description='Download, verify and summarise CIFAR-10.')
    ap.add_argument('--data-dir', default=DEFAULT_CACHE_DIR,
                    help=f'archive, {BATCHES_DIR}/ or a folder to download into')
    ap.add_argument('--md5', help='MD5 of an archive you made yourself (default: the official one)')
    ap.add_argument('--url', default=CIFAR10_URL)
    ap.add_argument('--val-size', type=int, default=5000)
    ap.add_argument('--seed', type=int, default=0)
    args = ap.parse_args(argv)
    try:
        batches_dir, status = prepare(args.data_dir, md5=args.md5, url=args.url)
        ds = dataset_from(batches_dir, val_size=args.val_size, seed=args.seed)
    except DataError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(status)
    print(f'batches: {batches_dir}')
    splits = [('train', ds.train), ('val', ds.val), ('test', ds.test)]
    print('images: ' + ', '.join(f'{n} {len(s) if s else 0}' for n, s in splits))
    print(f'{"class":<12}' + ''.join(f'{n:>8}' for n, _ in splits))
    for c, name in enumerate(ds.class_names):
        counts = [int(np.sum(s.labels == c)) if s else 0 for _, s in splits]
        print(f'{name:<12}' + ''.join(f'{k:>8}' for k in counts))
    print('mean (RGB, 0..255): ' + ', '.join(f'{m:.2f}' for m in ds.mean))
    return 0


if __name__ == '__main__':
    sys.exit(main())
