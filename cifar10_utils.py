"""CIFAR-10: download, verify, safely extract and load the official python archive.

    python cifar10_utils.py --data-dir DIR [--md5 HASH] [--url URL]

`load_cifar10(data_dir)` returns a `datasets.Dataset` with uint8 HWC images in
memory. `data_dir` may hold the archive (cifar-10-python.tar.gz, or one other
*.tar.gz), an extracted cifar-10-batches-py/, or nothing (then the archive is
downloaded into it: its size capped, its MD5 and, for the official archive,
SHA-256 checked). An archive named directly is extracted once, into a folder
named for its MD5 beside it (.cifar-10-batches-py-<md5[:12]>/, or under the
cache folder when that is read-only), and reused while complete; nothing the
user put anywhere is replaced or deleted, and runs extracting at once are safe.
The batches are Python-2 pickles; they are read by `cifar10_pickle`, which can only
build what the official files hold (uint8 arrays of N x 3072 pixels, as numpy
pickles them, and plain containers), so a crafted file can neither run code
nor make up images or memory.
"""
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import time
import zlib

import quiet  # noqa: F401  (first: keeps TensorFlow's start-up lines out of the output)
import numpy as np

import cifar10_pickle
import cli
from cifar10_pickle import ROW_SIZE
from errors import DataError
from datasets import Dataset, Split
from download import TooLarge, Unreachable, cache_root, fetch
from files import fsync_folder

CLASS_NAMES = ['airplane', 'automobile', 'bird', 'cat', 'deer',
               'dog', 'frog', 'horse', 'ship', 'truck']
CIFAR10_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'
CIFAR10_MD5 = 'c58f30108f718f92721af3b95e74349a'
CIFAR10_SHA256 = '6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce'
CIFAR10_SIZE = 170498071          # bytes of the official archive: a download never grows past it
MAX_ARCHIVE_BYTES = 2 * CIFAR10_SIZE   # the cap for an archive of unknown size (--md5 of your own)
DEFAULT_CACHE_DIR = os.path.join(cache_root(), 'cifar10')   # in $ALEXNET_CACHE, else $XDG_CACHE_HOME/alexnet, ...
ARCHIVE_NAME = 'cifar-10-python.tar.gz'
BATCHES_DIR = 'cifar-10-batches-py'
TRAIN_BATCHES = [f'data_batch_{i}' for i in range(1, 6)]
TRAIN_IMAGES = 50_000     # 10,000 a training batch
VAL_SIZE = 5_000          # training images held out for validation (a tenth): train.py's --val-size default
BATCH_FILES = ['batches.meta', *TRAIN_BATCHES, 'test_batch']
COMPLETE = '.complete'  # written last into an extracted folder: the archive's MD5
STALE_EXTRACTION = 3600     # seconds after which a .extract-* left by a killed run is removed
OFFLINE_HINT = (f'pass --data-dir pointing at a folder holding {ARCHIVE_NAME} or an extracted '
                f'{BATCHES_DIR}/, or use --dataset demo for the offline demo')


def md5sum(path):
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, 'md5').hexdigest()


def digests(path):
    """(MD5, SHA-256) of a file, read once."""
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            md5.update(chunk)
            sha256.update(chunk)
    return md5.hexdigest(), sha256.hexdigest()


def _check_archive(path, md5):
    """Refuse an archive whose MD5 is neither the official one nor the one the user gave, or that
    has the official MD5 but not the official SHA-256; return its MD5."""
    md5 = md5.lower()
    got, sha256 = digests(path)
    if got != md5:
        hint = (f'if it is a copy you made yourself, pass --md5 {got}' if md5 == CIFAR10_MD5
                else 'check the --md5 you passed')
        raise DataError(f'{path} has MD5 {got}, expected {md5}: delete it to download '
                        f'the official archive again, or {hint}')
    if md5 == CIFAR10_MD5 and sha256 != CIFAR10_SHA256:
        raise DataError(f'{path} has the official MD5 but SHA-256 {sha256}, expected {CIFAR10_SHA256}: '
                        f'it is not the official archive; delete it to download it again')
    return got


# --- download -----------------------------------------------------------------

def _check_download(part, url, md5):
    """Refuse a finished download whose MD5 (and, for the official archive, SHA-256) is not the expected one;
    download.fetch then deletes it."""
    got, sha256 = digests(part)
    if got != md5:
        raise DataError(f'downloaded {url} has MD5 {got}, expected {md5}; the file was deleted: '
                        f'try again, or pass --md5 {got} if {url} serves a copy you made yourself')
    if md5 == CIFAR10_MD5 and sha256 != CIFAR10_SHA256:
        raise DataError(f'downloaded {url} has the official MD5 but SHA-256 {sha256}, expected '
                        f'{CIFAR10_SHA256}; the file was deleted: it is not the official archive, check --url')


def download(dest_dir, url=CIFAR10_URL, md5=None, progress=True):
    """Return the path of the archive in dest_dir, downloading it first if missing (download.fetch).

    The download goes to a .part file, renamed only once its MD5 (and, for the official
    archive, its SHA-256) checks out, so an interrupted run never leaves something that
    looks done; the next run resumes it. A server sending more than the official archive's
    size (twice that for an archive of your own, --md5) is cut off and the .part deleted.
    """
    md5 = (md5 or CIFAR10_MD5).lower()
    official = md5 == CIFAR10_MD5
    limit = CIFAR10_SIZE if official else MAX_ARCHIVE_BYTES
    os.makedirs(dest_dir, exist_ok=True)
    path = os.path.join(dest_dir, ARCHIVE_NAME)
    if os.path.exists(path):
        _check_archive(path, md5)
        return path
    try:
        return fetch(url, path, limit, lambda part: _check_download(part, url, md5), show_progress=progress)
    except TooLarge as e:
        what = f'the official archive is {limit} bytes' if official else f'capped at {limit} bytes for an --md5 archive'
        raise DataError(f'download of {url} stopped: the server {e.what} ({what}); the partial file was deleted: '
                        f'check --url') from None
    except Unreachable as e:
        raise DataError(f'could not download {url} into {dest_dir} ({e.reason}); {OFFLINE_HINT}') from None


# --- safe extraction ------------------------------------------------------------

def _complete(folder, md5=None):
    """Whether folder is an extraction finished by `extract` (of the archive with this MD5)."""
    try:
        with open(os.path.join(folder, COMPLETE)) as f:
            return md5 is None or f.read().strip() == md5
    except OSError:
        return False


def _remove_stale_extractions(dest_dir):
    """Delete the .extract-* folders that killed runs left in dest_dir (ours only, and only old ones)."""
    try:
        entries = list(os.scandir(dest_dir))
    except OSError:
        return
    for e in entries:
        try:
            if e.name.startswith('.extract-') and e.is_dir(follow_symlinks=False) \
                    and time.time() - e.stat(follow_symlinks=False).st_mtime > STALE_EXTRACTION:
                shutil.rmtree(e.path, ignore_errors=True)
        except OSError:
            pass


def extract(archive, dest_dir, name=BATCHES_DIR, md5=''):
    """Extract the archive's cifar-10-batches-py/ to dest_dir/name and return that path.

    Only plain files and folders inside dest_dir are allowed: absolute paths, '..'
    and links of any kind are refused before anything is written. The files go to a
    temporary folder first, get a COMPLETE marker (holding md5), and are renamed into
    place in one step; if dest_dir/name appeared meanwhile (another run extracting the
    same archive, or the user), it is left as it is and this extraction dropped. Nothing
    is ever deleted but the temporary folder.
    """
    dest_dir = os.path.realpath(dest_dir)
    os.makedirs(dest_dir, exist_ok=True)
    out = os.path.join(dest_dir, name)
    _remove_stale_extractions(dest_dir)
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
                done = os.path.join(tmp, BATCHES_DIR)
                if not os.path.isdir(done):
                    raise DataError(f'{archive} holds no {BATCHES_DIR}/ folder; '
                                    f'is it the CIFAR-10 python version?')
                with open(os.path.join(done, COMPLETE), 'w') as f:
                    f.write(md5 + '\n')
                    f.flush()
                    os.fsync(f.fileno())
                if os.path.lexists(out) and not os.path.isdir(out):
                    raise DataError(f'{out} exists and is not a folder: move it away, then run again')
                try:
                    os.rename(done, out)      # fails on a non-empty folder: never replaces one
                except OSError:
                    if not os.path.isdir(out):
                        raise
                else:
                    fsync_folder(dest_dir)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataError(f'cannot extract {archive} ({e}); is it a complete .tar.gz?')
    return out


def _extracted_once(archive, md5):
    """The folder holding the archive's batches, extracted on first use into .cifar-10-batches-py-<md5[:12]>/
    beside the archive (or in the cache folder when the archive's folder is read-only), then reused."""
    name = f'.{BATCHES_DIR}-{md5[:12]}'
    places = [os.path.dirname(os.path.abspath(archive)), os.path.expanduser(DEFAULT_CACHE_DIR)]
    for place in places:
        if _complete(os.path.join(place, name), md5):
            return os.path.join(place, name)
    place = places[0] if os.access(places[0], os.W_OK) else places[1]
    out = extract(archive, place, name, md5)
    if not _complete(out, md5):     # it was there already, but not as extract() leaves one
        raise DataError(f'{out} exists but is not a complete extraction of {archive} (no {COMPLETE} '
                        f'holding its MD5): move it away, then run again')
    return out


# --- reading the batches ---------------------------------------------------------

def _read(path):
    """The dict in one file of an extracted batches folder (`cifar10_pickle.load`)."""
    try:
        return cifar10_pickle.load(path)
    except FileNotFoundError:
        raise DataError(f'{path} is missing; the folder {os.path.dirname(path)} is not a complete '
                        f'{BATCHES_DIR}/ (delete it to extract or download again)')


def _load_batch(path):
    """Return (uint8 images [N, 32, 32, 3] HWC RGB, int64 labels [N]) from one batch file."""
    batch = _read(path)
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
    meta = _read(os.path.join(batches_dir, 'batches.meta'))
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

    data_dir may be an archive file (extracted once into .cifar-10-batches-py-<md5[:12]>/
    beside it, see `_extracted_once`), a cifar-10-batches-py/ folder, a folder holding
    either (an archive there is extracted into its cifar-10-batches-py/, then that folder
    is used), or an empty folder (then the archive is downloaded into it).
    """
    data_dir = os.path.expanduser(data_dir or DEFAULT_CACHE_DIR)
    expected = md5 or CIFAR10_MD5
    official = expected.lower() == CIFAR10_MD5
    if os.path.isdir(os.path.join(data_dir, BATCHES_DIR)):
        data_dir = os.path.join(data_dir, BATCHES_DIR)
    if (os.path.basename(os.path.normpath(data_dir)) == BATCHES_DIR
            or any(os.path.isfile(os.path.join(data_dir, f)) for f in BATCH_FILES)):
        return data_dir, f'folder {data_dir} used as is (no archive MD5 to check)'
    named = os.path.isfile(data_dir)
    if named:
        archive = data_dir
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
    got = _check_archive(archive, expected)
    status = 'the official archive' if official else 'the --md5 given (not the official archive)'
    status = f'archive {archive}: MD5 {got} matches {status}'
    if named:           # extracted once, beside it, into a folder of its own
        return _extracted_once(archive, got), status
    return extract(archive, folder, md5=got), status


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


def load_cifar10(data_dir=None, val_size=VAL_SIZE, seed=0, md5=None, download=True, url=CIFAR10_URL):
    """Return the CIFAR-10 `Dataset`: train minus a `val_size` holdout, val, and test_batch.

    val (the holdout, see `holdout`) is for learning-rate and checkpoint decisions;
    test is never used for them. val is None when val_size is 0.
    """
    batches_dir, _ = prepare(data_dir, md5=md5, download_missing=download, url=url)
    return dataset_from(batches_dir, val_size, seed)


def dataset_from(batches_dir, val_size=VAL_SIZE, seed=0):
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


def parser():
    ap = cli.Parser(description='Download, verify and summarise CIFAR-10.')
    ap.add_argument('--data-dir', default=DEFAULT_CACHE_DIR,
                    help=f'archive, {BATCHES_DIR}/ or a folder to download into')
    ap.add_argument('--md5', type=cli.md5, help='MD5 of an archive you made yourself (default: the official one)')
    ap.add_argument('--url', default=CIFAR10_URL)
    ap.add_argument('--val-size', type=cli.whole(0, TRAIN_IMAGES - 1), default=VAL_SIZE,
                    help=f'training images held out for validation (default {VAL_SIZE}, at most {TRAIN_IMAGES - 1})')
    ap.add_argument('--seed', type=cli.whole(0), default=0, help='seed of the holdout (default 0)')
    return ap


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        if os.path.lexists(args.data_dir) and not os.path.isdir(args.data_dir):   # an archive: not a FIFO, a loop
            cli.input_file(args.data_dir, '--data-dir', f'{ARCHIVE_NAME}, {BATCHES_DIR}/ or a folder to download into')
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
