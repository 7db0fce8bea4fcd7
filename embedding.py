"""AlexNet's layers as features: the extractor, vectors saved whole, and nearest neighbours in fc7.

features.py writes the vectors of many images; visualize.py neighbours draws the
paper's Figure 4 (right) from them:

    "If two images produce feature activation vectors with a small Euclidean
    separation, we can say that the higher levels of the neural network consider
    them to be similar." (Section 6.1)

fc7 is taken after its ReLU and before dropout, pool5 flattened with tower a's
maps first (alexnet.inference's endpoints). A gallery's vectors are cached on disk,
keyed by all they are made from (cache_key: the checkpoint's files and JSON, the
layer, the gallery's place and each image's path, size and time), so that a second
query costs only its own forward pass.
"""
import glob
import hashlib
import json
import os
import re
import warnings
import zipfile

import numpy as np
import tensorflow as tf

import alexnet
import datasets
import evaluate
import files
import parallel
import preprocessing
import progress
from errors import DataError

LAYERS = ('fc7', 'pool5')      # the features alexnet.inference gives (endpoints)
BATCH_SIZE = 64                # images a step: fc7 of 64 images is 1 MB; 64 crops of 227x227 40 MB
NEIGHBOURS = 6                 # Figure 4 (right): "the six training images" nearest each test image
CACHE_FORMAT = 2               # part of every cache key: a new format never reads an old file
ZIP_MAGIC = b'PK\x03\x04'         # how an .npz file starts
CACHE_NAME = re.compile(r'gallery-([0-9a-f]{16})-([0-9a-f]{16})\.npz')
OLD_CACHE_NAME = re.compile(r'gallery-[0-9a-f]{16}\.npz')     # format 1's files, which nothing reads now


class Extractor:
    """The graph, built once for a split (image files, or a dataset's images in memory): centre crops in
    batches -> the layer's features. Unreadable files are skipped (self.split.skipped)."""

    def __init__(self, prefix, meta, split, layer='fc7', batch_size=BATCH_SIZE, devices=None):
        self.split = datasets.Split(labels=np.arange(len(split)), files=split.files, images=split.images,
                                    records=split.records)                        # labels: row numbers
        self.graph = tf.Graph()
        with self.graph.as_default():
            with tf.device('/cpu:0'):
                data = preprocessing.eval_dataset(self.split, batch_size, meta['input_size'], meta['mean'],
                                                  meta['resize_size'], mode='center',
                                                  **preprocessing.model_input(meta))
                self.iterator = tf.compat.v1.data.make_initializable_iterator(data)
                crops, self.rows = self.iterator.get_next()
            ends = {}
            size = meta['input_size']
            alexnet.inference(tf.reshape(crops, [-1, size, size, 3]), meta['num_classes'],
                              devices=parallel.tower_devices(devices), lrn_constants=alexnet.lrn_of(meta),
                              endpoints=ends)
            self.features = ends[layer]
            self.sess = tf.compat.v1.Session(config=parallel.session_config('fp32', parallel.tower_devices(devices)))
            evaluate.restore_weights(self.sess, prefix)

    def run(self, show_progress=True):
        """(features float32 [M, D], the M row numbers read) in file order; unreadable files are skipped."""
        self.sess.run(self.iterator.initializer)
        out, rows = [], []
        bar = progress.bar(total=len(self.split), desc='features', unit='img', disable=not show_progress)
        while True:
            try:
                f, r = self.sess.run([self.features, self.rows])
            except tf.errors.OutOfRangeError:
                break
            out.append(f.astype(np.float32))
            rows.append(r)
            bar.update(len(r))
        bar.close()
        return (np.concatenate(out) if out else np.zeros([0, int(self.features.shape[-1])], np.float32),
                np.concatenate(rows) if rows else np.zeros([0], np.int64))

    def close(self):
        self.sess.close()


def save_npz(path, **arrays):
    """np.savez, written whole or not at all (files.write_whole: what a killed write left is removed)."""
    files.write_whole(path, lambda f: np.savez(f, **arrays))


def feature_width(meta, layer):
    """The length of a vector of the layer for a checkpoint's input size (alexnet.inference's endpoints)."""
    if layer == 'fc7':
        return 2 * alexnet.FC_UNITS
    return 2 * alexnet.CONV5_FILTERS * alexnet.feature_sizes(meta['input_size'])[-1] ** 2


def _file_identity(path):
    """path, size and modification time: the same file rewritten, or another file, is another identity."""
    try:
        st = os.stat(path)
    except OSError:
        return f'{os.path.abspath(path)}|missing'
    return f'{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}'


def _split_identity(split):
    """What a split's images are: each file's (or TFRecord shard's) identity in order, or the bytes of
    images held in memory (CIFAR-10's)."""
    if split.images is not None:
        images = np.ascontiguousarray(split.images)
        yield f'images {images.shape} {images.dtype} {hashlib.sha256(images).hexdigest()}'
    for path in split.files if split.files is not None else split.records or ():
        yield _file_identity(path)


def cache_key(prefix, meta, split, source, layer):
    """A name for a gallery's vectors, made of all they are made from: the checkpoint (the real path of its
    prefix, each of its files' size and time: a new save is another key; its JSON: the preprocessing and
    the network's settings), the layer, where the gallery is (source: a folder's or a data set's real
    path and split) and each of its images (_split_identity)."""
    digest = hashlib.sha256(f'{CACHE_FORMAT}|{layer}|{source}|{os.path.realpath(prefix)}\n'.encode())
    for path in sorted(glob.glob(glob.escape(prefix) + '.data-*')) + [prefix + '.index']:
        digest.update(f'{_file_identity(path)}\n'.encode())
    digest.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for line in _split_identity(split):
        digest.update(f'\n{line}'.encode())
    return digest.hexdigest()[:16]


def cache_path(prefix, meta, split, source, layer, cache_dir):
    """cache_dir/gallery-GROUP-KEY.npz: GROUP names the gallery (its source and layer, the checkpoint's
    folder), so that a new file of the same gallery replaces the older ones; KEY is cache_key."""
    group = hashlib.sha256(f'{source}|{layer}|{os.path.realpath(os.path.dirname(prefix))}'.encode()).hexdigest()
    return os.path.join(cache_dir, f'gallery-{group[:16]}-{cache_key(prefix, meta, split, source, layer)}.npz')


def _array_header(npz, name):
    """(shape, dtype) of one array of an .npz, read from its header alone (before any memory is taken)."""
    with npz.zip.open(f'{name}.npy') as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f'{name}: .npy format {version}')
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
    return shape, dtype


def _check_headers(npz, count, width):
    if sorted(npz.files) != ['features', 'rows']:
        raise ValueError(f'arrays {", ".join(npz.files) or "none"}, wanted features and rows')
    (shape, dtype), (row_shape, row_dtype) = _array_header(npz, 'features'), _array_header(npz, 'rows')
    if dtype != np.float32 or len(shape) != 2 or shape[1] != width or not 0 < shape[0] <= count:
        raise ValueError(f'features {dtype} {list(shape)}, wanted float32 [1..{count}, {width}]')
    if row_dtype.kind not in 'iu' or row_shape != shape[:1]:
        raise ValueError(f'rows {row_dtype} {list(row_shape)}, wanted integers [{shape[0]}]')


def read_cache(path, count, width):
    """(vectors float32 [M, D], rows [M]) of a cache file of a gallery of count images, or None (and a
    warning) when it cannot be used: cut, empty, not an .npz, other arrays, shapes or row numbers. Nothing
    is unpickled, and the arrays' sizes are checked from their headers before they are read."""
    try:
        with open(path, 'rb') as f:         # np.load(path) leaves the file open when it is not a zip
            if f.read(len(ZIP_MAGIC)) != ZIP_MAGIC:     # else np.load would read an .npy file whole
                raise ValueError('not an .npz file')
            f.seek(0)
            with np.load(f, allow_pickle=False) as cached:
                _check_headers(cached, count, width)
                vectors, rows = cached['features'], cached['rows']
        if rows[0] < 0 or rows[-1] >= count or (np.diff(rows) <= 0).any():
            raise ValueError(f'rows do not number gallery images of {count} in order')
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        warnings.warn(f'{path}: not a usable gallery cache ({why}); computing the vectors again')
        return None
    return vectors, rows


def _remove_older(path):
    """Remove the other cache files of path's gallery (the same group: made from an older checkpoint or
    older images) and those of the first format, leaving files of other names alone."""
    folder, name = os.path.split(path)
    group = CACHE_NAME.fullmatch(name).group(1)
    for other in os.listdir(folder):
        match = CACHE_NAME.fullmatch(other)
        if match and match.group(1) == group and other != name or OLD_CACHE_NAME.fullmatch(other):
            try:
                os.remove(os.path.join(folder, other))
            except OSError:
                pass            # removed by another process meanwhile, or not ours to remove


def gallery_vectors(prefix, meta, split, source, cache_dir, layer='fc7', devices=None):
    """(vectors float32 [M, D], the M row numbers of split read): from cache_dir when made before from the
    same checkpoint and images (cache_key), else computed and cached (written whole, the gallery's older
    caches removed). A DataError when no image of the gallery can be read (nothing cached)."""
    path = cache_path(prefix, meta, split, source, layer, cache_dir)
    if os.path.exists(path):
        found = read_cache(path, len(split), feature_width(meta, layer))
        if found is not None:
            return found
    extractor = Extractor(prefix, meta, split, layer, devices=devices)
    try:
        vectors, rows = extractor.run()
    finally:
        extractor.close()
    if not len(rows):
        raise DataError(f'none of the {len(split)} gallery images could be read: give a gallery of images')
    try:
        os.makedirs(cache_dir, exist_ok=True)
        save_npz(path, features=vectors, rows=rows)
        _remove_older(path)
    except OSError as e:
        warnings.warn(f'{cache_dir}: cannot cache the gallery\'s vectors there ({e.strerror or e}); '
                      f'give a folder you can write with --cache')
    return vectors, rows


def nearest(queries, gallery, k=NEIGHBOURS, chunk=256):
    """(indices [Q, k], Euclidean distances [Q, k]) of each query's k nearest gallery vectors, nearest first
    (ties: lower index first); the distance matrix is made chunk queries at a time."""
    g = gallery.astype(np.float64)
    g2 = (g ** 2).sum(1)
    k = min(k, len(g))
    found, dist = [], []
    for start in range(0, len(queries), chunk):
        q = queries[start:start + chunk].astype(np.float64)
        d2 = np.maximum((q ** 2).sum(1)[:, None] + g2[None] - 2 * q @ g.T, 0)
        order = np.argsort(d2, axis=1, kind='stable')[:, :k]
        found.append(order)
        dist.append(np.sqrt(np.take_along_axis(d2, order, 1)))
    return np.concatenate(found), np.concatenate(dist)
