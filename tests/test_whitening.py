"""--whiten-conv1 (whitening.py): conv1 starts as the whitening of the training images' patches."""
import types

import numpy as np
import pytest
import tensorflow as tf

import alexnet
import checkpoints
import data
import preprocessing
import whitening
from helpers import SMALL, run_train, variables

PATCH = alexnet.CONV1_KERNEL ** 2 * 3     # 363 numbers in one conv1 patch


def test_whitened_filters_are_the_top_directions_each_with_unit_output():
    """On patches with a known spread, the filters' outputs are uncorrelated, the strongest directions come
    first, and each output's mean square is lambda / (lambda + eps * mean lambda): 1 without eps."""
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=[PATCH, PATCH]) * np.linspace(0.01, 3, PATCH)
    patches = rng.normal(size=[20000, PATCH]) @ mixing.T * 40
    moment = patches.T @ patches / len(patches)
    eigenvalues = np.sort(np.linalg.eigvalsh(moment))[::-1]
    for eps in (0.0, whitening.WHITEN_EPS):
        filters = whitening.whitened_filters(moment, eps=eps)
        assert filters.shape == (11, 11, 3, alexnet.CONV1_FILTERS) and filters.dtype == np.float32
        flat = filters.reshape(PATCH, -1).astype(np.float64)
        covariance = flat.T @ moment @ flat                 # of the outputs, filter by filter
        top = eigenvalues[:alexnet.CONV1_FILTERS]
        expected = top / (top + eps * eigenvalues.mean())
        np.testing.assert_allclose(np.diag(covariance), expected, rtol=1e-4)
        np.testing.assert_allclose(covariance - np.diag(np.diag(covariance)), 0, atol=1e-4)
    assert np.diag(covariance)[0] > np.diag(covariance)[-1]       # eps tempers the weak directions more


@pytest.mark.slow
def test_conv1_with_the_filters_whitens_the_crops_it_was_measured_on(small_tree):
    """conv1 with the filters, on the very crops that were measured, gives uncorrelated outputs whose mean
    squares are lambda / (lambda + eps * mean lambda), strongest first: the patches are laid out as conv1's
    weights are (rows, columns, channels) and the filters are the moment's own eigenvectors."""
    ds = data.load_dataset('folder', str(small_tree))
    a = types.SimpleNamespace(seed=3, input_size=alexnet.MIN_INPUT_SIZE, resize_size=80, resize_mode='shorter',
                              channel_order='RGB')
    moment, patches = whitening.patch_moments(ds, a, images=10)
    side = alexnet.feature_sizes(a.input_size)[0]
    assert patches == 10 * side * side and moment.shape == (PATCH, PATCH)
    filters = whitening.whitened_filters(moment)
    with tf.Graph().as_default():
        crops = preprocessing.eval_dataset(ds.train.subset(10, a.seed), 10, a.input_size, ds.mean, a.resize_size,
                                           mode='random', num_random=1, seed=a.seed)
        images, _ = tf.compat.v1.data.make_one_shot_iterator(crops).get_next()
        out = tf.nn.conv2d(images[:, 0], filters, alexnet.CONV1_STRIDE, 'VALID')
        with tf.compat.v1.Session() as sess:
            outputs = sess.run(out).reshape(-1, alexnet.CONV1_FILTERS).astype(np.float64)
    covariance = outputs.T @ outputs / len(outputs)
    eigenvalues = np.sort(np.linalg.eigvalsh(moment))[::-1]
    top = eigenvalues[:alexnet.CONV1_FILTERS]
    np.testing.assert_allclose(np.diag(covariance), top / (top + whitening.WHITEN_EPS * eigenvalues.mean()),
                               atol=2e-3)
    np.testing.assert_allclose(covariance - np.diag(np.diag(covariance)), 0, atol=2e-3)


@pytest.mark.slow
def test_a_run_starts_with_the_towers_conv1_opposite(small_tree, tmp_path, capsys):
    """-scratch --whiten-conv1: conv1_a = -conv1_b = the whitened filters at the start (here after one step of
    --init he, whose conv1 learns slowly), a line says so; --synthetic has no images to measure."""
    run_dir = tmp_path / 'run'
    assert run_train('-scratch', '--dataset', 'folder', '--data-dir', small_tree, '--train-dir', run_dir,
                     '--whiten-conv1', '--init', 'he', '--max-steps', 1, '--no-validate', *SMALL) == 0
    assert 'conv1 whitened: the top 48 directions of' in capsys.readouterr().out
    weights = variables(checkpoints.latest(str(run_dir))[0])
    a, b = weights['conv1_a/weights'], weights['conv1_b/weights']
    assert np.linalg.norm(a + b) < 0.01 * np.linalg.norm(a)
    assert np.linalg.norm(a[..., 0]) < np.linalg.norm(a[..., -1])     # strongest direction first, smallest filter

    assert run_train('-scratch', '--synthetic', '--whiten-conv1', '--train-dir', tmp_path / 'synthetic',
                     *SMALL) == 2
    assert 'error: --whiten-conv1 measures the training images' in capsys.readouterr().err
