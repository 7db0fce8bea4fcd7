"""Test helpers shared by several test files: small datasets made on the fly, runs, checkpoints.

make_folder        a class-folder dataset of flat-colour images in mixed formats (datasets, data)
make_learnable_tree  a class-folder dataset that AlexNet learns in a few steps (train, cluster)
make_eval_tree / make_run  a dataset whose crops can be cut in NumPy, and a run with input-sensitive
                   weights on it (test, classify, export)
variables          every tensor of a checkpoint, by name
run_train / SMALL / events  train.py in this process, its small settings, a run's TensorBoard scalars
"""
import glob
import io
import os
import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

import alexnet
import checkpoints
import train

FOLDER_CLASSES = ['cat', 'dog', 'zebra']
# The keys every script reads of a checkpoint's JSON (checkpoints.META_SCHEMA's required ones), for
# checkpoints the tests save themselves.
CHECKPOINT_META = dict(dataset='folder', class_names=FOLDER_CLASSES, num_classes=3, input_size=alexnet.MIN_INPUT_SIZE,
                       resize_size=76, mean=[120.0, 110.0, 100.0])
FOLDER_COLOURS = {'cat': (200, 10, 10), 'dog': (10, 200, 10), 'zebra': (10, 10, 200)}


def make_folder(root, split, per_class, classes=FOLDER_CLASSES, exts=('.png', '.JPG', '.Bmp')):
    """root/split/<class>/ with per_class flat-colour images in mixed formats, and a non-image file."""
    for c in classes:
        d = root / split / c
        d.mkdir(parents=True)
        for i in range(per_class):
            ext = exts[i % len(exts)]
            fmt = {'.png': 'PNG', '.jpg': 'JPEG', '.bmp': 'BMP'}[ext.lower()]
            Image.new('RGB', (12, 10), FOLDER_COLOURS.get(c, (99, 99, 99))).save(d / f'{i:03d}{ext}', fmt, quality=100)
        (d / 'notes.txt').write_text('not an image')
    return root


def make_learnable_tree(root, classes=4, train_per_class=32, val_per_class=8, seed=0):
    """A learnable class-folder dataset: each class a colour with a stripe direction, plus noise."""
    rng = np.random.default_rng(seed)
    colours = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)]
    for split, n in (('train', train_per_class), ('val', val_per_class)):
        for c in range(classes):
            folder = root / split / f'class{c}'
            folder.mkdir(parents=True)
            for i in range(n):
                img = np.full((40, 40, 3), colours[c], np.float32)
                if c % 2:
                    img[::4] *= 0.3
                else:
                    img[:, ::4] *= 0.3
                img += rng.normal(0, 25, img.shape)
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f'{i}.png')
    return root


INPUT_SIZE, RESIZE_SIZE = 67, 76    # the smallest AlexNet input; train.py's resize size for it (67 x 256/227)
EVAL_CLASSES = 10                   # more than 5, so that top-5 is not trivially 100%


def make_eval_tree(root, counts=(('train', 2), ('val', 1), ('test', 5)), seed=0):
    """A class-folder dataset of PNGs whose shorter side is already RESIZE_SIZE (76x90 and 90x76), so
    the test-time square is a plain slice of the decoded pixels and crops can be cut in NumPy."""
    rng = np.random.default_rng(seed)
    for split, n in counts:
        for c in range(EVAL_CLASSES):
            folder = root / split / f'class{c}'
            folder.mkdir(parents=True)
            for i in range(n):
                shape = (RESIZE_SIZE, 90, 3) if i % 2 else (90, RESIZE_SIZE, 3)
                image = rng.uniform(0, 255, (1, 1, 3)) + rng.normal(0, 40, shape)
                Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f'{i}.png')
    return root


def input_sensitive_weights(prefix, seed=0):
    """Redraw the weights of a checkpoint: He-scaled and centred on each unit, biases 0, fc8 / 4. AlexNet
    at the paper's initialisation gives nearly the same output for every image for its first hundred
    steps; checking crops and counts needs a network whose output depends on its input, with softmax
    outputs neither flat nor one-hot (no near-ties)."""
    rng = np.random.default_rng(seed)
    reader = tf.train.load_checkpoint(prefix)
    names = sorted(name for name, _ in tf.train.list_variables(prefix))
    tensors = []
    for name in names:
        value = reader.get_tensor(name)
        if name.endswith('/weights'):
            std = np.sqrt(2 / np.prod(value.shape[:-1])) * (0.25 if name.startswith('fc8') else 1)
            value = rng.normal(0, std, value.shape)
            value = (value - value.mean(axis=tuple(range(value.ndim - 1)))).astype(np.float32)
        elif name.endswith('/biases'):
            value = np.zeros_like(value)
        tensors.append(value)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[''] * len(names), tensors=tensors)


_MADE_RUN = []      # (tree, run) of the first make_run of this test process


def make_run(root):
    """(data folder, run folder): one step of train.py on a small tree (the real checkpoint and JSON),
    then input-sensitive weights. The run is trained once per test process (the first caller's), and every
    later caller gets its own copy of that run folder under root (a moved run, as train.py allows), on the
    first caller's tree, which the runs' JSON names and every caller only reads: the same run each time
    (the input-sensitive weights are redrawn from seed 0 anyway), without a train.py start each time."""
    if _MADE_RUN:
        tree, made = _MADE_RUN[0]
        run = root / 'run'
        shutil.copytree(made, run)
        return tree, run
    tree, run = make_eval_tree(root / 'data'), root / 'run'
    assert train.main(['-scratch', '--dataset', 'folder', '--data-dir', str(tree), '--train-dir', str(run),
                       '--input-size', str(INPUT_SIZE), '--batch-size', '16', '--max-steps', '1',
                       '--no-validate', '--save-minutes', '60']) == 0
    input_sensitive_weights(checkpoints.latest(str(run))[0])
    _MADE_RUN.append((tree, run))
    return tree, run


def square(path):
    """The central RESIZE_SIZE square of an image of the tree, in NumPy."""
    image = np.asarray(Image.open(path).convert('RGB'), np.float32)
    top, left = (image.shape[0] - RESIZE_SIZE) // 2, (image.shape[1] - RESIZE_SIZE) // 2
    return image[top:top + RESIZE_SIZE, left:left + RESIZE_SIZE]


def ten_crops(path, mean):
    """The paper's ten crops cut in NumPy: corners, centre, then their reflections."""
    sq, s = square(path), INPUT_SIZE
    far, mid = RESIZE_SIZE - s, (RESIZE_SIZE - s) // 2
    crops = [sq[y:y + s, x:x + s] for y, x in ((0, 0), (0, far), (far, 0), (far, far), (mid, mid))]
    return np.stack(crops + [c[:, ::-1] for c in crops]) - np.float32(mean)


def network_probabilities(prefix, num_classes, crops):
    """Softmax (in NumPy) of the network's logits for float crops [n, s, s, 3], restored weights."""
    with tf.Graph().as_default():
        images = tf.compat.v1.placeholder(tf.float32, [None, INPUT_SIZE, INPUT_SIZE, 3])
        logits = alexnet.inference(images, num_classes, devices='/cpu:0')
        with tf.compat.v1.Session() as sess:
            tf.compat.v1.train.Saver().restore(sess, prefix)
            z = sess.run(logits, {images: crops}).astype(np.float64)
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def split_files(tree):
    """(paths, labels) of the tree's test split."""
    paths = sorted(tree.glob('test/class*/*.png'))
    return paths, np.array([int(p.parent.name[len('class'):]) for p in paths])




def variables(prefix):
    """{name: value} of every tensor in a checkpoint."""
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(prefix)}


TWO_CPUS = ('/cpu:0', '/cpu:1')      # two logical CPU devices: the paper's two towers in a test


def build(input_size=alexnet.MIN_INPUT_SIZE, num_classes=10, training=False, batch=2,
          devices=TWO_CPUS, seed=None, init='paper', portable=False, data_format=None):
    graph = tf.Graph()
    with graph.as_default():
        if seed is not None:
            tf.compat.v1.set_random_seed(seed)
        images = tf.compat.v1.placeholder(tf.float32, [batch, input_size, input_size, 3])
        logits = alexnet.inference(images, num_classes, training=training, devices=devices, init=init,
                                   portable=portable, data_format=data_format)
    return graph, images, logits


def encode(array, fmt, mode=None, **kw):
    image = Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    out = io.BytesIO()
    image.save(out, fmt, **kw)
    return out.getvalue()


def smooth_image(h, w, seed=0):
    """A smooth random RGB image (JPEG-friendly, so decoders agree closely)."""
    small = np.random.default_rng(seed).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR))


# train.py's settings for the small trees: 67x67 inputs, batches of 16, no time-based saves
SMALL = ['--input-size', '67', '--batch-size', '16', '--save-minutes', '60', '--log-steps', '2']


def run_train(*args):
    return train.main([str(a) for a in args])


def events(train_dir):
    """{tag: [(step, value), ...]} of the scalars in a run folder's TensorBoard files."""
    tags = {}
    for path in glob.glob(os.path.join(train_dir, 'events.out.tfevents.*')):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append((event.step, value.simple_value))
    return tags


class FakeExtractor:
    """embedding.Extractor's interface without a network: a file's vector is FEATURE_WIDTH copies of
    value(its bytes), and a file whose bytes readable() refuses is unreadable. Each one made records the
    split it was given in `made` (a list the test sets)."""
    made = None

    def __init__(self, prefix, meta, split, layer='fc7', batch_size=None, devices=None):
        self.made.append(split)
        self.split = split

    @staticmethod
    def readable(contents):
        return True

    @staticmethod
    def value(contents):
        return len(contents)

    def run(self, show_progress=True):
        contents = [Path(f).read_bytes() for f in self.split.files]
        rows = np.array([i for i, c in enumerate(contents) if self.readable(c)], np.int64)
        vectors = np.array([np.full(FEATURE_WIDTH, self.value(contents[i]), np.float32) for i in rows], np.float32)
        return vectors.reshape(len(rows), FEATURE_WIDTH), rows

    def close(self):
        pass


FEATURE_WIDTH = 4096     # fc7
