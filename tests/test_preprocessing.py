"""preprocessing.py: the paper's transforms, exact-resume pipelines, records, bad files."""
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import datasets
import decoding
import preprocessing as pp
from conftest import TEST_DATA
from helpers import encode, smooth_image

IMAGENET_VAL = TEST_DATA / 'imagenet' / 'val'      # 12 real ILSVRC2012 validation JPEGs
MEAN = (120.0, 110.0, 100.0)


def real_jpegs():
    files = sorted(str(f) for f in IMAGENET_VAL.glob('*.JPEG'))
    assert len(files) == 12, f'missing the committed JPEGs in {IMAGENET_VAL}'
    return files


def run_all(fn, seeds):
    """fn(seed) for each [2] seed, in one tf.data pass (fast)."""
    data = tf.data.Dataset.from_tensor_slices(np.asarray(seeds, np.int64)).map(fn).batch(len(seeds))
    return next(iter(data)).numpy()


# ---------------------------------------------------------------- training transform

@pytest.mark.slow
def test_train_image_crops_lie_in_the_square_and_reflect_half_the_time():
    y, x = np.mgrid[0:16, 0:16]
    image = np.stack([y ** 2, x ** 2, np.zeros_like(y)], -1).astype(np.uint8)    # positions from differences
    out = run_all(lambda s: pp.train_image(image, 8, MEAN, resize_size=16, seed=s), [[3, i] for i in range(600)])
    assert out.shape == (600, 8, 8, 3) and out.dtype == np.float32
    tops, lefts, flips = [], [], []
    for crop in out.astype(np.float64):
        d = crop - crop[:1, :1]                              # the colour offset and mean cancel
        top = (d[1, 0, 0] - 1) / 2                           # (t + 1)^2 - t^2 = 2t + 1
        flip = d[0, 1, 1] < 0
        right = (-d[0, 1, 1] + 1) / 2 if flip else None      # reflected: columns run right to left
        left = right - 7 if flip else (d[0, 1, 1] - 1) / 2
        t, l = int(round(top)), int(round(left))
        assert 0 <= t <= 8 and 0 <= l <= 8
        window = image[t:t + 8, l:l + 8].astype(np.float64)
        window = window[:, ::-1] if flip else window
        np.testing.assert_allclose(d, window - window[:1, :1], atol=1e-3)
        tops.append(t), lefts.append(l), flips.append(flip)
    assert set(tops) == set(range(9)) and set(lefts) == set(range(9))        # every position is used
    assert 0.45 < np.mean(flips) < 0.55


@pytest.mark.slow
def test_pca_colour_noise_has_the_papers_statistics_and_the_mean_is_subtracted():
    image = np.full((4, 4, 3), 100, np.uint8)
    out = run_all(lambda s: pp.train_image(image, 4, MEAN, resize_size=4, seed=s), [[5, i] for i in range(4000)])
    offsets = out[:, 0, 0].astype(np.float64) - 100 + np.array(MEAN)       # the RGB offset of each draw
    assert np.allclose(out, out[:, :1, :1], atol=1e-4)                      # one offset for the whole image
    expected = pp.PCA_EIGVEC @ np.diag(pp.PCA_EIGVAL ** 2 * pp.PCA_STD ** 2) @ pp.PCA_EIGVEC.T
    assert np.linalg.norm(np.cov(offsets.T) - expected) < 0.06 * np.linalg.norm(expected)
    assert np.all(np.abs(offsets.mean(0)) < 0.4)                            # zero-mean: out averages 100 - MEAN
    alphas = np.linalg.solve(pp.PCA_EIGVEC, offsets.T).T / pp.PCA_EIGVAL   # alpha_i ~ N(0, 0.1), independent
    np.testing.assert_allclose(alphas.std(0), 0.1, rtol=0.05)
    assert np.all(np.abs(np.corrcoef(alphas.T) - np.eye(3)) < 0.06)


def test_train_image_is_a_function_of_the_seed():
    image = smooth_image(50, 70)
    a, b, c = (pp.train_image(image, 32, MEAN, 40, seed=s).numpy() for s in ([1, 2], [1, 2], [1, 3]))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_cutout_zeroes_one_clipped_square_and_changes_nothing_else():
    """The same seed gives the same crop, reflection and colour noise with and without --cutout; the
    difference is one square of zeros (the mean colour), size x size inside, clipped at the borders."""
    image = smooth_image(50, 70)
    seeds = [[4, i] for i in range(300)]
    plain = run_all(lambda s: pp.train_image(image, 32, MEAN, 40, seed=s), seeds)
    cut = run_all(lambda s: pp.train_image(image, 32, MEAN, 40, seed=s, cutout=10), seeds)
    areas = []
    for p, c in zip(plain, cut):
        changed = np.any(p != c, -1)
        assert np.all(c[changed] == 0)
        rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
        assert changed.sum() == len(rows) * len(cols)                          # one rectangle
        assert np.all(np.diff(rows) == 1) and np.all(np.diff(cols) == 1)
        for lines in (rows, cols):                                             # 10 wide, or cut by a border
            assert len(lines) == 10 or (len(lines) < 10 and (lines[0] == 0 or lines[-1] == 31))
        areas.append(changed.sum())
    assert np.mean(np.array(areas) == 100) > 0.4                               # most squares lie inside
    np.testing.assert_array_equal(pp.train_image(image, 32, MEAN, 40, seed=[4, 0], cutout=0).numpy(), plain[0])


def test_jpeg_fast_path_matches_resize_then_crop():
    """Decoding only the crop window gives the crop, reflection and noise of train_image, within a
    third of a pixel: no shifted copy of the reference fits better, and the error is well under a shift's."""
    for path, seed in zip(real_jpegs()[:3], ([0, 1], [0, 2], [0, 3])):
        contents = tf.io.read_file(path)
        fast = pp.train_image_from_file(contents, 227, MEAN, seed=seed).numpy()[2:-2, 2:-2]
        reference = pp.train_image(decoding.decode_image(contents), 227, MEAN, seed=seed).numpy()
        error = {(dy, dx): np.abs(fast - reference[2 + dy:225 + dy, 2 + dx:225 + dx]).mean()
                 for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
        assert min(error, key=error.get) == (0, 0)
        assert error[0, 0] < 0.5 * np.mean([error[d] for d in ((0, 1), (0, -1), (1, 0), (-1, 0))])
    small = tf.constant(encode(smooth_image(32, 32), 'JPEG', quality=95))     # smaller than the square: exact
    np.testing.assert_allclose(pp.train_image_from_file(small, 28, MEAN, 32, seed=[4, 4]),
                               pp.train_image(decoding.decode_image(small), 28, MEAN, 32, seed=[4, 4]), atol=1e-3)


@pytest.mark.parametrize('mode', ['CMYK', 'L'])
def test_jpeg_fast_path_decodes_large_cmyk_and_grayscale_to_rgb(mode):
    """ImageNet's CMYK and grayscale JPEGs are large enough to take the crop-window path too."""
    contents = tf.constant(encode(smooth_image(300, 400, seed=3), 'JPEG', mode, quality=95))
    fast = pp.train_image_from_file(contents, 227, MEAN, seed=[5, 6]).numpy()
    reference = pp.train_image(decoding.decode_image(contents), 227, MEAN, seed=[5, 6]).numpy()
    assert fast.shape == (227, 227, 3)
    assert np.abs(fast[2:-2, 2:-2] - reference[2:-2, 2:-2]).mean() < 1.0
    if mode == 'L':         # grey stays grey: the channels differ only by the colour noise and mean, constants
        assert (fast - fast.mean((0, 1))).std(-1).mean() < 0.5


# ---------------------------------------------------------------- test crops

def test_square_image_is_the_central_square_of_the_resized_image():
    image = smooth_image(256, 300)
    np.testing.assert_allclose(pp.square_image(image, 256), image[:, 22:278], atol=1e-4)
    small = smooth_image(100, 130)
    resized = tf.image.resize(small, [256, 333]).numpy()
    np.testing.assert_allclose(pp.square_image(small, 256), resized[:, 38:294], atol=1e-4)


def test_center_and_ten_crops_equal_numpy_slices():
    image = smooth_image(300, 260)
    square = pp.square_image(image, 64).numpy() - np.array(MEAN)
    center = pp.eval_crops(image, 56, MEAN, 64, 'center').numpy()
    np.testing.assert_allclose(center, square[None, 4:60, 4:60], atol=1e-3)
    ten = pp.eval_crops(image, 56, MEAN, 64, 'ten').numpy()
    five = [square[y:y + 56, x:x + 56] for y, x in ((0, 0), (0, 8), (8, 0), (8, 8), (4, 4))]
    expected = np.stack(five + [c[:, ::-1] for c in five])
    assert ten.shape == (10, 56, 56, 3)
    np.testing.assert_allclose(ten, expected, atol=1e-3)
    assert len({c.tobytes() for c in ten.round(2)}) == 10


def test_random_crops_are_seeded_slices_with_reflections():
    image = smooth_image(40, 40)
    square = pp.square_image(image, 40).numpy() - np.array(MEAN)
    crops = pp.eval_crops(image, 32, MEAN, 40, 'random', num_random=12, seed=[9, 1]).numpy()
    assert crops.shape == (12, 32, 32, 3)
    candidates = {(y, x, f): (square[y:y + 32, x:x + 32, :][:, ::-1] if f else square[y:y + 32, x:x + 32])
                  for y in range(9) for x in range(9) for f in (0, 1)}
    found = [[k for k, c in candidates.items() if np.allclose(c, crop, atol=1e-3)] for crop in crops]
    assert all(len(f) == 1 for f in found)
    assert 0 < sum(f[0][2] for f in found) < 12
    np.testing.assert_array_equal(crops, pp.eval_crops(image, 32, MEAN, 40, 'random', 12, seed=[9, 1]))
    assert not np.allclose(crops, pp.eval_crops(image, 32, MEAN, 40, 'random', 12, seed=[9, 2]))


# ---------------------------------------------------------------- pipelines

def index_images(n, size=8):
    """n uint8 images whose red channel is their index (so batches show what they hold)."""
    images = np.zeros((n, size, size, 3), np.uint8)
    images[..., 0] = np.arange(n)[:, None, None]
    return images


def take(data, k):
    return [(x.numpy(), y.numpy()) for x, y in data.take(k)]


@pytest.mark.slow
def test_train_dataset_resumes_exactly_and_visits_each_image_once_an_epoch():
    split = datasets.Split(np.arange(50, dtype=np.int64), images=index_images(50))
    assert pp.steps_per_epoch(split, 8) == 6
    full = take(pp.train_dataset(split, 8, 8, MEAN, 8, seed=3), 20)            # epochs of 6 steps
    resumed = take(pp.train_dataset(split, 8, 8, MEAN, 8, seed=3, start_step=7), 13)
    for (xa, ya), (xb, yb) in zip(full[7:], resumed):
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa, xb)                                  # same crops, flips and noise
    epochs = [np.concatenate([y for _, y in full[e * 6:(e + 1) * 6]]) for e in range(3)]
    for labels in epochs:
        assert len(set(labels)) == 48 and set(labels) <= set(range(50))
    assert len({e.tobytes() for e in epochs}) == 3                           # a new order every epoch
    other_seed = take(pp.train_dataset(split, 8, 8, MEAN, 8, seed=4), 1)
    assert not np.array_equal(other_seed[0][1], full[0][1])
    for x, y in full[:3]:                                   # the image is the one the label names
        red = x[..., 0].mean((1, 2)) + MEAN[0]
        assert np.all(np.abs(red - y) < 20)                 # within the PCA colour noise


def test_train_dataset_shards_are_disjoint():
    split = datasets.Split(np.arange(50, dtype=np.int64), images=index_images(50))
    assert pp.steps_per_epoch(split, 4, num_shards=2) == 6
    parts = [np.concatenate([y for _, y in take(pp.train_dataset(split, 4, 8, MEAN, 8, seed=1, shard_index=k,
                                                                  num_shards=2), 6)]) for k in (0, 1)]
    assert len(set(parts[0])) == 24 == len(set(parts[1])) and not set(parts[0]) & set(parts[1])


@pytest.mark.slow
def test_train_dataset_of_files_resumes_exactly(tmp_path):
    files = []
    for i in range(12):
        files.append(str(tmp_path / f'{i}.{"jpg" if i % 2 else "png"}'))
        Path(files[-1]).write_bytes(encode(smooth_image(20 + i, 24, seed=i), 'JPEG' if i % 2 else 'PNG'))
    split = datasets.Split(np.arange(12, dtype=np.int64), files=files)
    full = take(pp.train_dataset(split, 4, 16, MEAN, 18, seed=2), 8)
    resumed = take(pp.train_dataset(split, 4, 16, MEAN, 18, seed=2, start_step=5), 3)
    for (xa, ya), (xb, yb) in zip(full[5:], resumed):
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa, xb)
    assert full[0][0].shape == (4, 16, 16, 3)


@pytest.mark.slow
def test_eval_dataset_is_in_order_with_a_short_last_batch():
    images = index_images(10, 12)
    split = datasets.Split(np.arange(10, dtype=np.int64) % 3, images=images)
    batches = take(pp.eval_dataset(split, 4, 8, MEAN, 10, mode='ten'), 10)
    assert [len(y) for _, y in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), np.arange(10) % 3)
    crops = np.concatenate([x for x, _ in batches])
    assert crops.shape == (10, 10, 8, 8, 3)
    for i in (0, 9):
        np.testing.assert_allclose(crops[i], pp.eval_crops(images[i], 8, MEAN, 10, 'ten'), atol=1e-4)
    random = [take(pp.eval_dataset(split, 4, 8, MEAN, 10, 'random', 3, seed=5), 3) for _ in range(2)]
    np.testing.assert_array_equal(random[0][2][0], random[1][2][0])          # seeded: the same every pass


def test_evaluation_passes_run_without_autotuning_and_training_with_it():
    """Validation re-initialises its iterator at every epoch's end; with tf.data's autotuning on, that waited
    up to a minute for the old iterator's model thread (preprocessing._without_autotune)."""
    split = datasets.Split(np.arange(10, dtype=np.int64) % 3, images=index_images(10, 12))
    for mode in ('center', 'ten', 'random'):
        assert pp.eval_dataset(split, 4, 8, MEAN, 10, mode).options().autotune.enabled is False
    assert pp.train_dataset(split, 4, 8, MEAN, 10).options().autotune.enabled is not False


@pytest.mark.slow
def test_unreadable_files_are_dropped_with_a_warning(tmp_path):
    good = [tmp_path / f'{i}.png' for i in range(6)]
    for i, f in enumerate(good):
        f.write_bytes(encode(smooth_image(16, 16, seed=i), 'PNG'))
    (tmp_path / 'broken.jpg').write_bytes(b'\xff\xd8 not really a jpeg')
    files = [str(f) for f in good[:3]] + [str(tmp_path / 'broken.jpg')] + [str(f) for f in good[3:]]
    files.append(str(tmp_path / 'gone.png'))                                 # missing
    split = datasets.Split(np.arange(8, dtype=np.int64), files=files)
    with pytest.warns(datasets.UnreadableImageWarning) as caught:
        labels = np.concatenate([y for _, y in take(pp.eval_dataset(split, 3, 12, MEAN, 16), 5)])
    np.testing.assert_array_equal(labels, [0, 1, 2, 4, 5, 6])
    assert {str(w.message).split(':')[0] for w in caught} == {files[3], files[7]}
    assert sorted(split.skipped) == sorted([files[3], files[7]])
    train = datasets.Split(np.arange(8, dtype=np.int64), files=files)
    with pytest.warns(datasets.UnreadableImageWarning) as caught:          # epoch 0 visits all 8 files
        batches = take(pp.train_dataset(train, 2, 12, MEAN, 16), 4)
    assert {str(w.message).split(':')[0] for w in caught} == {files[3], files[7]}
    assert all(x.shape == (2, 12, 12, 3) for x, _ in batches)
    assert set(np.concatenate([y for _, y in batches[:3]])) == {0, 1, 2, 4, 5, 6}



@pytest.mark.slow
def test_a_skipped_file_is_reported_with_its_reason(tmp_path):
    """Training's warning says why a file was skipped: a decompression bomb names the size its header claims."""
    good = tmp_path / 'good.png'
    good.write_bytes(encode(smooth_image(16, 16), 'PNG'))
    bomb = tmp_path / 'bomb.gif'
    bomb.write_bytes(b'GIF89a' + (20000).to_bytes(2, 'little') * 2 + bytes(30))      # a header only
    split = datasets.Split(np.arange(2, dtype=np.int64), files=[str(bomb), str(good)])
    with pytest.warns(datasets.UnreadableImageWarning) as caught:
        take(pp.train_dataset(split, 1, 12, MEAN, 16), 2)
    assert [str(w.message) for w in caught] == [
        f'{bomb}: unreadable image, skipped (its header claims 20000 x 20000 pixels, more than the 100,000,000 '
        'allowed (a decompression bomb?): refused before decoding)']

def write_records(folder, shards, per_shard):
    paths, label = [], 0
    for s in range(shards):
        path = str(folder / f'train-{s:05d}-of-{shards:05d}.tfrecord')
        with tf.io.TFRecordWriter(path) as writer:
            for _ in range(per_shard):
                jpeg = encode(smooth_image(18, 20, seed=label), 'JPEG')
                writer.write(tf.train.Example(features=tf.train.Features(feature={
                    'image/encoded': tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg])),
                    'image/class/label': tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                })).SerializeToString())
                label += 1
        paths.append(path)
    return datasets.Split(np.arange(label, dtype=np.int64), records=paths)


@pytest.mark.slow
def test_tfrecord_split_resumes_exactly_shards_and_evaluates_in_order(tmp_path):
    split = write_records(tmp_path, 3, 10)
    full = take(pp.train_dataset(split, 4, 16, MEAN, 18, seed=1), 12)         # 7 steps an epoch
    resumed = take(pp.train_dataset(split, 4, 16, MEAN, 18, seed=1, start_step=5), 7)
    for (xa, ya), (xb, yb) in zip(full[5:], resumed):
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa, xb)
    first = np.concatenate([y for _, y in full[:7]])
    second = np.concatenate([y for _, y in full[7:12]])
    assert len(set(first)) == 28 and not np.array_equal(first[:20], second)
    parts = [set(np.concatenate([y for _, y in take(pp.train_dataset(split, 4, 16, MEAN, 18, seed=1,
                                                                      shard_index=k, num_shards=2), 3)]))
             for k in (0, 1)]
    assert len(parts[0]) == len(parts[1]) == 12 and not parts[0] & parts[1]
    labels = np.concatenate([y for _, y in take(pp.eval_dataset(split, 8, 16, MEAN, 18), 10)])
    np.testing.assert_array_equal(labels, np.arange(30))


@pytest.mark.slow
def test_real_imagenet_jpegs_through_the_training_pipeline():
    files = real_jpegs()
    split = datasets.Split(np.arange(12, dtype=np.int64), files=files)
    for x, y in take(pp.train_dataset(split, 4, 227, (123.68, 116.78, 103.94), seed=0), 3):
        assert x.shape == (4, 227, 227, 3) and np.all(np.isfinite(x))
        assert -130 < x.mean() < 130 and x.std() > 10
    assert split.skipped == []


@pytest.mark.slow
def test_graph_mode_iterators_as_train_py_uses_them():
    split = datasets.Split(np.arange(20, dtype=np.int64), images=index_images(20))
    with tf.Graph().as_default():
        images, labels = tf.compat.v1.data.make_one_shot_iterator(
            pp.train_dataset(split, 4, 8, MEAN, 8, seed=3, start_step=2)).get_next()
        iterator = tf.compat.v1.data.make_initializable_iterator(pp.eval_dataset(split, 8, 8, MEAN, 8))
        crops, eval_labels = iterator.get_next()
        with tf.compat.v1.Session() as session:
            graph_labels = [session.run(labels) for _ in range(3)]
            for _ in range(2):                                  # validation re-initialises every time
                session.run(iterator.initializer)
                seen = []
                while True:
                    try:
                        seen.append(session.run(eval_labels))
                    except tf.errors.OutOfRangeError:
                        break
                np.testing.assert_array_equal(np.concatenate(seen), np.arange(20))
    eager = [y for _, y in take(pp.train_dataset(split, 4, 8, MEAN, 8, seed=3), 5)[2:]]
    np.testing.assert_array_equal(graph_labels, eager)


@pytest.mark.slow
def test_pipeline_speed():
    split = datasets.Split(np.zeros(64, np.int64), images=index_images(64, 32))
    assert pp.pipeline_speed(split, 28, batch_size=16, seconds=0.5)[0] > 0


def test_an_extreme_aspect_ratio_costs_only_its_central_square():
    """A 1 x 30000 image (a few hundred bytes as a PNG) would be resized to 256 x 7,680,000 first."""
    thin = tf.constant(encode(np.full((1, 30000, 3), 200, np.uint8), 'PNG'))
    assert len(thin.numpy()) < 2000
    square = pp.square_image(decoding.decode_image(thin), 256)
    assert square.shape == (256, 256, 3) and np.allclose(square.numpy(), 200)
    crops = pp.eval_crops(decoding.decode_image(thin), 227, MEAN, 256, 'ten')
    assert crops.shape == (10, 227, 227, 3)
    normal = smooth_image(300, 400)                    # ordinary images: the shorter side first, as before
    got = pp.square_image(normal, 256).numpy()
    ref = tf.image.resize(normal, [256, 341]).numpy()[:, 42:298]
    np.testing.assert_allclose(got, ref, atol=1e-3)


def test_warp_and_bgr_for_imported_caffe_weights():
    image = smooth_image(100, 300)
    warped = pp.square_image(image, 64, 'warp').numpy()
    np.testing.assert_allclose(warped, tf.image.resize(image, [64, 64]).numpy(), atol=1e-4)
    rgb = pp.eval_crops(image, 56, MEAN, 64, 'center', resize_mode='warp').numpy()
    bgr = pp.eval_crops(image, 56, MEAN, 64, 'center', resize_mode='warp', bgr=True).numpy()
    np.testing.assert_array_equal(bgr, rgb[..., ::-1])
    assert pp.model_input({'channel_order': 'BGR', 'resize_mode': 'warp'}) == {'resize_mode': 'warp', 'bgr': True}
    assert pp.model_input({}) == {'resize_mode': 'shorter', 'bgr': False}
    with pytest.raises(ValueError, match='unknown resize mode'):
        pp.square_image(image, 64, 'stretch')


@pytest.mark.slow
def test_the_mean_and_training_decode_every_file_alike(tmp_path):
    """The folder mean is measured with the decoder training uses; BMPs that TensorFlow would read wrong
    (8-bit palette: indices as pixels; 1-bit: unreadable) are refused with a reason, not read wrong."""
    grey16 = tmp_path / 'grey16.png'
    Image.fromarray(np.full((8, 8), 32896, np.uint16)).save(grey16)        # 16 bits: 128.5 of 255
    decoded = decoding.decode_image(tf.io.read_file(str(grey16))).numpy()
    assert np.all(np.abs(decoded.astype(int) - 128) <= 1)
    assert pp.image_mean([str(grey16)]) == pytest.approx((decoded.mean(),) * 3, abs=0.5)
    rgb = smooth_image(6, 10)
    Image.fromarray(rgb).save(tmp_path / 'rgb.bmp')
    np.testing.assert_array_equal(decoding.decode_image(tf.io.read_file(str(tmp_path / 'rgb.bmp'))).numpy(), rgb)
    Image.fromarray(rgb).convert('P').save(tmp_path / 'palette.bmp')
    Image.fromarray(rgb).convert('1').save(tmp_path / 'one_bit.bmp')
    for name in ('palette.bmp', 'one_bit.bmp'):
        with pytest.raises(tf.errors.InvalidArgumentError, match='colour palette'):
            decoding.decode_image(tf.io.read_file(str(tmp_path / name)))
    files = [str(tmp_path / n) for n in ('rgb.bmp', 'palette.bmp', 'one_bit.bmp')]
    assert pp.image_mean(files) == pytest.approx(tuple(rgb.reshape(-1, 3).mean(0)), abs=1e-6)
