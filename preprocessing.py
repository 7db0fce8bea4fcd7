"""The paper's image transforms and the tf.data input pipelines (the one place for both).

Training (Sections 2 and 4.1): the shorter side scaled to 256, the central 256x256
square, a random 227x227 crop of it, a horizontal reflection half of the time, the
PCA colour augmentation, minus the per-channel training mean (the paper subtracts
the mean image; Dataset.mean is per channel). Testing (Section 4.1): the centre
crop, the ten crops (the square's four corners and centre, and their reflections),
or K random crops. JPEGs are decoded only where the crop falls (the window is mapped
to the original pixels and resized after), which matches resize-then-crop within a
third of a pixel and is much faster. Image files are read by decoding.decode_image.
"""
import os
import threading
import time

import numpy as np
import tensorflow as tf

import decoding
from alexnet import INPUT_SIZE
from errors import DataError

RESIZE_SIZE = 256         # Section 2: shorter side rescaled to 256, the central 256x256 patch kept
FLIP_PROBABILITY = 0.5    # Section 4.1: random patches "and their horizontal reflections"
PCA_STD = 0.1             # Section 4.1: alpha_i ~ N(0, 0.1), drawn once per image each time it is used
TRAIN_SEEDS = 4           # per training image: crop, reflection, colour noise, cutout (the
                          # first three do not depend on the count: stateless_split draws them alike)
# Section 4.1: the eigenvalues/eigenvectors of the 3x3 covariance of ImageNet RGB pixels. The paper does
# not publish them; these are the values of fb.resnet.torch (datasets/imagenet.lua, pixels in [0, 1])
# and its Caffe/TF ports, times 255 for our [0, 255] pixels. Column i of PCA_EIGVEC is p_i (rows R, G, B),
# and the colour offset added to every pixel is PCA_EIGVEC @ (alpha * PCA_EIGVAL).
PCA_EIGVAL = np.array([0.2175, 0.0188, 0.0045]) * 255.0
PCA_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                       [-0.5808, -0.0045, -0.8140],
                       [-0.5836, -0.6948, 0.4203]])
SHUFFLE_BUFFER = 8192     # records in the shuffle buffer of a TFRecord split (after shard-order shuffling)
RECORD_FEATURES = {'image/encoded': tf.io.FixedLenFeature([], tf.string),
                   'image/class/label': tf.io.FixedLenFeature([], tf.int64)}
AUTOTUNE = tf.data.AUTOTUNE


# ---------------------------------------------------------------- one image

def _seeds(seed, n):
    """n [2] int64 seeds for the stateless random ops, from seed (int or [2]; None: a fresh random one)."""
    if seed is None:
        seed = tf.random.uniform([2], 0, 2 ** 62, tf.int64)
    seed = tf.cast(seed, tf.int64)
    if seed.shape.rank == 0:
        seed = tf.stack([seed, tf.constant(0, tf.int64)])
    return tf.random.experimental.stateless_split(seed, n)


def _resized_shape(height, width, resize_size):
    """(height, width) after scaling the shorter side to resize_size."""
    h, w = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    scale = resize_size / tf.minimum(h, w)
    size = lambda x: tf.maximum(resize_size, tf.cast(tf.round(x * scale), tf.int32))
    return size(h), size(w)


RESIZE_MODES = ('shorter', 'warp')   # the paper's shorter side to R then the central square; Caffe's warp to R x R
MAX_ASPECT = 4.0          # a longer side beyond 4x the shorter: the central square is cut before the resize, so
                          # that a 1 x 30000 image costs a 256 x 256 square, not a 256 x 7,680,000 resize


def square_image(image, resize_size=RESIZE_SIZE, resize_mode='shorter'):
    """float32 [R, R, 3]: the shorter side scaled to R (bilinear, like Caffe, no antialiasing), then the
    central R x R square (Section 2); or, resize_mode 'warp', the whole image resized to R x R without
    keeping its aspect ratio (Caffe's bvlc_alexnet). All crops are taken from this square."""
    image = tf.convert_to_tensor(image)
    if resize_mode == 'warp':
        return tf.image.resize(image, [resize_size, resize_size])
    if resize_mode != 'shorter':
        raise ValueError(f'unknown resize mode {resize_mode!r}: {" or ".join(RESIZE_MODES)}')
    shape = tf.shape(image)

    def central_square_first():
        side = tf.minimum(shape[0], shape[1])
        square = tf.slice(image, tf.stack([(shape[0] - side) // 2, (shape[1] - side) // 2, 0]), [side, side, 3])
        return tf.image.resize(square, [resize_size, resize_size])

    def resize_first():
        h, w = _resized_shape(shape[0], shape[1], resize_size)
        resized = tf.image.resize(image, tf.stack([h, w]))
        return tf.slice(resized, tf.stack([(h - resize_size) // 2, (w - resize_size) // 2, 0]),
                        [resize_size, resize_size, 3])

    longer, shorter = tf.maximum(shape[0], shape[1]), tf.minimum(shape[0], shape[1])
    extreme = tf.cast(longer, tf.float64) > MAX_ASPECT * tf.cast(shorter, tf.float64)
    square = tf.cond(extreme, central_square_first, resize_first)
    square.set_shape([resize_size, resize_size, 3])
    return square


def model_input(meta):
    """The image settings a checkpoint's network expects (its JSON): resize_mode and bgr, as keywords of
    the pipelines and of eval_crops. Imported Caffe weights want warped, BGR images; this project's, RGB."""
    return dict(resize_mode=meta.get('resize_mode') or 'shorter', bgr=meta.get('channel_order') == 'BGR')


def resize_size_for(input_size):
    """The shorter side before cropping for a crop size: the paper's 256 for 227, in proportion otherwise."""
    return round(input_size * RESIZE_SIZE / INPUT_SIZE)


def _check_sizes(input_size, resize_size):
    if resize_size < input_size:
        raise ValueError(f'resize_size {resize_size} is smaller than the crop {input_size}')


def _crop_offset(seed, input_size, resize_size):
    """[top, left] of a uniformly random input_size crop of the R x R square."""
    return tf.random.stateless_uniform([2], seed, 0, resize_size - input_size + 1, tf.int32)


def _finish(crop, seeds, mean, bgr=False, cutout=0):
    """Reflection with probability 1/2, the PCA colour offset, minus the mean (Section 4.1); a cutout
    square if asked; channels reversed for a network that reads BGR."""
    flip = tf.random.stateless_uniform([], seeds[1]) < FLIP_PROBABILITY
    crop = tf.cond(flip, lambda: tf.reverse(crop, [1]), lambda: crop)
    alpha = tf.random.stateless_normal([3], seeds[2], stddev=PCA_STD, dtype=tf.float64)
    offset = tf.cast(tf.linalg.matvec(tf.constant(PCA_EIGVEC), alpha * PCA_EIGVAL) - mean, tf.float32)
    out = _add_per_channel(crop, offset)
    if cutout:
        out = cut_out(out, cutout, seeds[3])
    return tf.reverse(out, [-1]) if bgr else out


def cut_out(image, size, seed):
    """image [s, s, c] with a size x size square set to 0, the mean colour once the mean is subtracted:
    centred on a uniformly random pixel and clipped at the borders (cutout, DeVries & Taylor 2017;
    not in the paper)."""
    s = image.shape[0]
    low = tf.random.stateless_uniform([2], seed, 0, s, tf.int32) - size // 2
    pixels = tf.range(s)
    inside = lambda axis: (pixels >= low[axis]) & (pixels < low[axis] + size)
    square = inside(0)[:, None] & inside(1)[None, :]
    return tf.where(square[:, :, None], tf.zeros_like(image), image)


def _add_per_channel(images, values):
    """images [..., w, 3] (static shape) + values [3], as rows of w * 3 (TF's broadcast over a last
    axis of 3 is several times slower)."""
    w = images.shape[-2]
    return tf.reshape(tf.reshape(images, [-1, w * 3]) + tf.tile(values, [w]), images.shape)


def train_image(image, input_size, mean, resize_size=RESIZE_SIZE, seed=None, resize_mode='shorter', bgr=False,
                cutout=0):
    """float32 [s, s, 3]: a decoded image through the training transforms, resize first, then crop.
    seed (int or [2]) makes the crop, reflection, colour noise and cutout square a function of it."""
    _check_sizes(input_size, resize_size)
    seeds = _seeds(seed, TRAIN_SEEDS)
    top_left = _crop_offset(seeds[0], input_size, resize_size)
    square = square_image(image, resize_size, resize_mode)
    crop = tf.slice(square, tf.concat([top_left, [0]], 0), [input_size, input_size, 3])
    return _finish(crop, seeds, mean, bgr, cutout)


def _jpeg_window(shape, top_left, input_size, resize_size):
    """The crop at top_left of the R x R square, as [y, x, height, width] in the original JPEG's pixels:
    both edges of each axis are rounded to the nearest pixel (off by at most 1/3 of an output pixel)."""
    h, w = shape[0], shape[1]
    rh, rw = _resized_shape(h, w, resize_size)

    def axis(length, resized, offset):        # the reference samples pixel i at (start + i + 0.5) * k - 0.5
        k = tf.cast(length, tf.float64) / tf.cast(resized, tf.float64)
        start = tf.cast((resized - resize_size) // 2 + offset, tf.float64)
        first = tf.cast(tf.round(start * k), tf.int32)
        size = tf.maximum(1, tf.cast(tf.round((start + input_size) * k), tf.int32) - first)
        size = tf.minimum(size, length)
        return tf.clip_by_value(first, 0, length - size), size

    y, height = axis(h, rh, top_left[0])
    x, width = axis(w, rw, top_left[1])
    return tf.stack([y, x, height, width])


def train_image_from_file(contents, input_size, mean, resize_size=RESIZE_SIZE, seed=None, resize_mode='shorter',
                          bgr=False, cutout=0):
    """train_image on encoded bytes. JPEGs at least R pixels on their shorter side decode only the crop
    window (mapped to the original pixels) and resize it to s x s, which matches train_image up to
    interpolation; the same seed picks the same crop, reflection and noise as train_image."""
    _check_sizes(input_size, resize_size)
    seeds = _seeds(seed, TRAIN_SEEDS)
    top_left = _crop_offset(seeds[0], input_size, resize_size)

    def whole():
        square = square_image(decoding.decode_image(contents), resize_size, resize_mode)
        return tf.slice(square, tf.concat([top_left, [0]], 0), [input_size, input_size, 3])

    def jpeg():
        shape = tf.io.extract_jpeg_shape(contents)

        def window():
            at = _jpeg_window(shape, top_left, input_size, resize_size)
            crop = tf.io.decode_and_crop_jpeg(contents, at, channels=3, dct_method='INTEGER_FAST')
            return tf.image.resize(crop, [input_size, input_size])
        # images smaller than the square are cheap to decode whole, and resizing first keeps their crops exact
        fits = tf.logical_and(tf.reduce_min(shape[:2]) >= resize_size,
                              tf.cast(tf.reduce_max(shape[:2]), tf.float64) <=
                              MAX_ASPECT * tf.cast(tf.reduce_min(shape[:2]), tf.float64))
        return tf.cond(fits, window, whole)

    crop = tf.cond(decoding.is_jpeg(contents), jpeg, whole) if resize_mode == 'shorter' else whole()
    crop.set_shape([input_size, input_size, 3])
    return _finish(crop, seeds, mean, bgr, cutout)


def eval_crops(image, input_size, mean, resize_size=RESIZE_SIZE, mode='center', num_random=5, seed=None,
               resize_mode='shorter', bgr=False):
    """float32 [n, s, s, 3] test crops of one decoded image, minus the mean (Section 4.1):
    'center' (n=1), 'ten' (corners and centre of the R x R square, then their reflections, n=10),
    or 'random' (num_random uniformly placed crops, each reflected with probability 1/2)."""
    _check_sizes(input_size, resize_size)
    square = square_image(image, resize_size, resize_mode)
    far, mid = resize_size - input_size, (resize_size - input_size) // 2
    crop = lambda y, x: tf.slice(square, tf.stack([y, x, 0]), [input_size, input_size, 3])
    if mode == 'center':
        crops = crop(mid, mid)[None]
    elif mode == 'ten':
        crops = tf.stack([crop(0, 0), crop(0, far), crop(far, 0), crop(far, far), crop(mid, mid)])
        crops = tf.concat([crops, tf.reverse(crops, [2])], 0)
    elif mode == 'random':
        seeds = _seeds(seed, 2)
        offsets = tf.random.stateless_uniform([num_random, 2], seeds[0], 0, far + 1, tf.int32)
        flips = tf.random.stateless_uniform([num_random], seeds[1]) < FLIP_PROBABILITY
        crops = tf.stack([crop(offsets[k, 0], offsets[k, 1]) for k in range(num_random)])
        crops = tf.where(flips[:, None, None, None], tf.reverse(crops, [2]), crops)
    else:
        raise ValueError(f"unknown crop mode {mode!r}: 'center', 'ten' or 'random'")
    crops = _add_per_channel(crops, -tf.constant(mean, tf.float32))
    return tf.reverse(crops, [-1]) if bgr else crops


MEAN_SAMPLE = 500        # training images averaged for a folder dataset's mean


def image_mean(files, seed=0, sample=MEAN_SAMPLE):
    """Per-channel RGB mean over a seeded sample of up to `sample` images: the average of each image's
    mean (so every image counts once, whatever its size), decoded by decode_image, as training decodes
    them (JPEGs at 1/4 size, which leaves the mean nearly unchanged); unreadable files are left out."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(files), min(sample, len(files)), replace=False)

    def mean_of(path):
        contents = tf.io.read_file(path)
        image = tf.cond(decoding.is_jpeg(contents), lambda: tf.io.decode_jpeg(contents, channels=3, ratio=4),
                        lambda: decoding.decode_image(contents))
        return tf.reduce_mean(tf.reshape(tf.cast(image, tf.float64), [-1, 3]), 0)

    data = tf.data.Dataset.from_tensor_slices([os.fspath(files[i]) for i in chosen])
    data = data.map(mean_of, num_parallel_calls=AUTOTUNE).ignore_errors().batch(64)
    means = [m for batch in data.as_numpy_iterator() for m in batch]
    if not means:
        raise DataError(f'none of the {len(chosen)} sampled training images could be read (first: {files[0]})')
    return tuple(float(m) for m in np.mean(means, 0))


# ---------------------------------------------------------------- the order of a split, epoch by epoch

def steps_per_epoch(split, batch_size, num_shards=1):
    """Full batches per epoch for one of num_shards workers (the remainder is dropped)."""
    return len(split) // num_shards // batch_size


class _Epochs:
    """Maps a worker's stream position j to (index into the split, global position). Epoch e visits
    the split in the permutation np.random.default_rng([seed, e]).permutation(n); worker k of K takes
    every K-th entry of it from k. The global position e * n + p names the element in the whole run."""

    def __init__(self, n, per_epoch, seed, shard_index, num_shards):
        self.n, self.per_epoch, self.seed = n, per_epoch, seed
        self.shard_index, self.num_shards = shard_index, num_shards
        self.cache, self.lock = {}, threading.Lock()

    def permutation(self, epoch):
        with self.lock:
            if epoch not in self.cache:
                if len(self.cache) >= 3:
                    del self.cache[min(self.cache)]
                self.cache[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            return self.cache[epoch]

    def __call__(self, j):
        epoch, k = np.divmod(np.asarray(j, np.int64), self.per_epoch)
        p = k * self.num_shards + self.shard_index
        index = np.empty_like(p)
        for e in np.unique(epoch):
            index[epoch == e] = self.permutation(int(e))[p[epoch == e]]
        return index, epoch * self.n + p


def _healthy(skips, j, read_ahead):
    return tf.numpy_function(lambda j: skips.healthy(j, read_ahead), [j], tf.bool, stateful=True)


def _elements(split, positions, locate):
    """(j, global position, label, path or uint8 image) for batches of stream positions j. The split's
    files or arrays stay in numpy (not constants in the graph); one lookup per batch."""
    labels = np.asarray(split.labels, np.int64)
    if split.files is not None:
        items, dtype = np.array([os.fsencode(os.fspath(f)) for f in split.files], dtype=object), tf.string
    else:
        items, dtype = np.asarray(split.images, np.uint8), tf.uint8

    def lookup(j):
        index, where = locate(j)
        return where.astype(np.int64), labels[index], items[index]

    def fn(j):
        where, label, item = tf.numpy_function(lookup, [j], [tf.int64, tf.int64, dtype], stateful=False)
        item.set_shape([None] + list(items.shape[1:]))
        return j, tf.reshape(where, [-1]), tf.reshape(label, [-1]), item

    return positions.map(fn).unbatch()


def _named_records(shard):
    """(name, serialized record) of each record in a TFRecord shard; name = 'SHARD record K'."""
    return tf.data.TFRecordDataset(shard).enumerate().map(
        lambda k, r: (tf.strings.join([shard, ' record ', tf.strings.as_string(k)]), r))


def _parse(record):
    example = tf.io.parse_single_example(record, RECORD_FEATURES)
    return example['image/encoded'], example['image/class/label']


def _noted(data, skips):
    """Remember the name of each record by its position (for the warning if it is dropped)."""
    return data.map(lambda j, where, name, record: (
        tf.numpy_function(skips.note, [j, name], tf.int64, stateful=True), where, record))


def _pair(seed, value):
    """The [2] int64 seed of the random ops for one element: (the run's seed, the element's position)."""
    return tf.stack([tf.constant(seed, tf.int64), tf.cast(value, tf.int64)])


def _batches(data, load, batch_size, skips, drop_remainder, end_marker=None):
    """Decode in parallel, drop unreadable images (warning about each), batch, prefetch."""
    # The transforms are plain TensorFlow ops: tracing them without AutoGraph's rewrite halves the build time.
    data = data.map(tf.autograph.experimental.do_not_convert(load), num_parallel_calls=AUTOTUNE, deterministic=True)
    if skips is not None:
        data = data.ignore_errors()
    data = data.batch(batch_size, drop_remainder=drop_remainder)
    if skips is not None:
        if end_marker is not None:          # an empty batch: the end of a pass, to warn about the last images
            data = data.concatenate(tf.data.Dataset.from_tensors(end_marker))
        data = data.map(lambda j, x, y: (tf.numpy_function(skips.check, [j], tf.int64, stateful=True), x, y))
        data = data.filter(lambda j, x, y: tf.size(j) > 0)
    return data.map(lambda j, x, y: (x, y)).prefetch(AUTOTUNE)


def train_dataset(split, batch_size, input_size, mean, resize_size=RESIZE_SIZE, seed=0, start_step=0,
                  shard_index=0, num_shards=1, resize_mode='shorter', bgr=False, cutout=0):
    """Infinite (images float32 [B, s, s, 3], labels int64 [B]) with the training transforms (and a
    cutout square of side cutout pixels in each image, if not 0).

    Exact resume: for files and arrays, epoch e visits the split in a permutation fixed by (seed, e)
    and batches drop the remainder, so step t is always the same images; starting at start_step skips
    to it on indices, before any decoding. The crop, reflection and colour noise of each image are
    stateless functions of (seed, its position in the run), so a resumed run also sees the very same
    pixels. This holds as long as no image is dropped as unreadable (a drop shifts the later batches).
    TFRecord splits (records=) shuffle the shard order per epoch and use a shuffle buffer seeded by
    (seed, epoch); resuming reads and skips the records before start_step (exact, only slower).
    When decoding.UNREADABLE_IN_A_ROW images in a row fail (the folder is gone), the stream ends and
    split.stalled names the first few: the caller stops with one line instead of waiting forever.
    Worker shard_index of num_shards gets a disjoint part of every epoch.
    """
    steps = steps_per_epoch(split, batch_size, num_shards)
    if steps < 1:
        raise DataError(f'a split of {len(split)} images gives no full batch of {batch_size} '
                        f'per worker ({num_shards}): lower the batch size')
    per_epoch, start = steps * batch_size, start_step * batch_size
    n, end_of_time = len(split), 2 ** 62
    read_ahead = 32 * batch_size            # what the parallel decoding and the prefetch buffers may hold
    if split.records is not None:
        skips = decoding.Skips(split, start)
        shards = tf.constant([os.fspath(f) for f in split.records])

        def epoch(e):
            order = tf.random.experimental.stateless_shuffle(shards, seed=_pair(seed, e))
            data = tf.data.Dataset.from_tensor_slices(order).interleave(
                _named_records, cycle_length=min(len(split.records), 8),
                num_parallel_calls=AUTOTUNE, deterministic=True)
            data = data.enumerate().filter(lambda q, x: q % num_shards == shard_index).take(per_epoch)
            data = data.map(lambda q, x: (e * n + q, x[0], x[1]))
            return data.shuffle(SHUFFLE_BUFFER, seed=seed * 1000003 + e)

        data = tf.data.Dataset.range(start // per_epoch, end_of_time).flat_map(epoch).skip(start % per_epoch)
        data = _noted(data.enumerate(start).map(lambda j, x: (j, *x)), skips)
        data = data.take_while(lambda j, where, record: _healthy(skips, j, read_ahead))

        def load(j, where, record):
            contents, label = _parse(record)
            return j, train_image_from_file(contents, input_size, mean, resize_size, _pair(seed, where),
                                            resize_mode, bgr, cutout), label
    else:
        locate = _Epochs(n, per_epoch, seed, shard_index, num_shards)
        files = split.files is not None
        name_of = lambda p: os.fspath(split.files[locate(np.array([p]))[0][0]])
        skips = decoding.Skips(split, start, name_of=name_of) if files else None
        positions = tf.data.Dataset.range(start, end_of_time).batch(batch_size)
        if files:
            positions = positions.take_while(lambda j: _healthy(skips, j, read_ahead))
        data = _elements(split, positions, locate)
        transform = train_image_from_file if files else train_image

        def load(j, where, label, item):
            source = tf.io.read_file(item) if files else item
            return j, transform(source, input_size, mean, resize_size, _pair(seed, where), resize_mode, bgr,
                                cutout), label
    return _batches(data, load, batch_size, skips, drop_remainder=True)


def eval_dataset(split, batch_size, input_size, mean, resize_size=RESIZE_SIZE, mode='center', num_random=5,
                 seed=0, resize_mode='shorter', bgr=False):
    """Finite, in order: (crops float32 [B, n, s, s, 3], labels int64 [B]); the last batch may be short.
    Random crops are a function of (seed, the image's index), the same on every pass."""
    n = len(split)
    crops = lambda image, j: eval_crops(image, input_size, mean, resize_size, mode, num_random, _pair(seed, j),
                                        resize_mode, bgr)
    count = {'center': 1, 'ten': 10, 'random': num_random}.get(mode, 0)
    marker = (tf.zeros([0], tf.int64), tf.zeros([0, count, input_size, input_size, 3]), tf.zeros([0], tf.int64))
    if split.records is not None:
        skips = decoding.Skips(split, 0, end=n)
        data = tf.data.Dataset.from_tensor_slices([os.fspath(f) for f in split.records])
        data = data.flat_map(_named_records)
        data = _noted(data.enumerate().map(lambda j, x: (j, j, *x)), skips)

        def load(j, where, record):
            contents, label = _parse(record)
            return j, crops(decoding.decode_image(contents), where), label
    else:
        files = split.files is not None
        skips = decoding.Skips(split, 0, end=n, name_of=lambda p: os.fspath(split.files[p])) if files else None
        data = _elements(split, tf.data.Dataset.range(n).batch(batch_size), lambda j: (j, j))

        def load(j, where, label, item):
            image = decoding.decode_image(tf.io.read_file(item)) if files else item
            return j, crops(image, where), label
    return _without_autotune(_batches(data, load, batch_size, skips, drop_remainder=False, end_marker=marker))


def _without_autotune(data):
    """tf.data's autotuning off for an evaluation pass. Validation re-initialises its iterator at every
    epoch's end, and that could wait for the old iterator's autotuning thread to wake (its rounds 10 ms
    apart, doubling to 60 s): up to 57 s at a quarter of an hour's epoch ends (docs/performance.md)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return data.with_options(options)


# ---------------------------------------------------------------- speed (bench.py, imagenet_utils.py)

def pipeline_speed(split, input_size=INPUT_SIZE, batch_size=128, seconds=10, threads=None):
    """(images/second, images per CPU-second of this process) of the training pipeline (decoding and
    the training transforms) on split, after a warm-up. The second is the per-core rate, whatever else
    the machine is running. threads: tf.data's private thread pool (None: its own default)."""
    data = train_dataset(split, batch_size, input_size, (0.0, 0.0, 0.0))
    if threads:
        options = tf.data.Options()
        options.threading.private_threadpool_size = threads
        options.threading.max_intra_op_parallelism = 1
        data = data.with_options(options)
    batches = iter(data)
    start = time.perf_counter()
    while time.perf_counter() - start < min(2.0, seconds / 4):     # warm-up: fill, then drain the buffers
        next(batches)
    count, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        next(batches)
        count += batch_size
    return count / (time.perf_counter() - start), count / (time.process_time() - cpu)
