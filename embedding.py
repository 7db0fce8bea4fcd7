"""AlexNet's layers as features: the extractor, vectors saved whole, and nearest neighbours in fc7.

features.py writes the vectors of many images; visualize.py neighbours draws the
paper's Figure 4 (right) from them:

    "If two images produce feature activation vectors with a small Euclidean
    separation, we can say that the higher levels of the neural network consider
    them to be similar." (Section 6.1)

fc7 is taken after its ReLU and before dropout, pool5 flattened with tower a's
maps first (alexnet.inference's endpoints). A gallery's vectors are cached on disk,
keyed by the checkpoint, the gallery's identity and the layer, so that a second
query costs only its own forward pass.
"""
import hashlib
import os

import numpy as np
import tensorflow as tf

import alexnet
import datasets
import evaluate
import parallel
import preprocessing
import progress

LAYERS = ('fc7', 'pool5')      # the features alexnet.inference gives (endpoints)
BATCH_SIZE = 64                # images a step: fc7 of 64 images is 1 MB; 64 crops of 227x227 40 MB
NEIGHBOURS = 6                 # Figure 4 (right): "the six training images" nearest each test image


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
    """np.savez, written whole or not at all (a temporary file beside it, then renamed)."""
    tmp = f'{path}.tmp-{os.getpid()}.npz'
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def cache_key(prefix, identity, layer):
    """A name for a gallery's vectors: the checkpoint (its path, and its index's size and time: a new save
    is another key), what the gallery is (identity: its files, or a dataset split) and the layer."""
    index = os.stat(prefix + '.index')
    text = f'{os.path.abspath(prefix)}|{index.st_size}|{index.st_mtime_ns}|{layer}|{identity}'
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def gallery_vectors(prefix, meta, split, identity, cache_dir, layer='fc7', devices=None):
    """(vectors float32 [M, D], the M row numbers of split read): from cache_dir when made before."""
    path = os.path.join(cache_dir, f'gallery-{cache_key(prefix, identity, layer)}.npz')
    if os.path.exists(path):
        with np.load(path) as cached:
            return cached['features'], cached['rows']
    extractor = Extractor(prefix, meta, split, layer, devices=devices)
    try:
        vectors, rows = extractor.run()
    finally:
        extractor.close()
    os.makedirs(cache_dir, exist_ok=True)
    save_npz(path, features=vectors, rows=rows)
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
