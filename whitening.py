"""--whiten-conv1: conv1's filters from the training images' own patches (a departure, off by default).

    moment, patches = patch_moments(ds, a)             # the second moment of conv1's input patches
    filters = whitened_filters(moment)                  # [11, 11, 3, 48]
    assign_conv1(sess, filters)                         # conv1_a = +filters, conv1_b = -filters

The fastest CIFAR-10 recipes (Page's DAWNBench ResNet, Jordan's airbench) gain
most from a first layer that starts as the whitening of the data: the principal
directions of the input's patches, each scaled so that its output has unit
second moment. Here conv1 reads 11x11x3 patches at stride 4; its 48 filters in
each tower become the top 48 principal directions of those patches, tower a
with the sign +, tower b with -, so that after the ReLU the two towers together
keep both halves of every direction (airbench's +V, -V). conv1 then goes on
learning like any layer: only its start changes.
"""
import numpy as np
import tensorflow as tf

import alexnet
import preprocessing
import progress
import recipe

WHITEN_IMAGES = 2048       # training images whose conv1 patches are measured (about 1M patches at input 99)
WHITEN_BATCH = 128         # of them at a time
WHITEN_EPS = 1e-2          # added to each eigenvalue, in units of the mean eigenvalue: the weakest directions kept
                           # are not amplified past about 10x the average pixel's scale


def _patches_second_moment(batch):
    """float64 [k, k] sum of p p^T over every conv1 patch p (flattened as conv1's weights are) of a batch."""
    kernel, stride = alexnet.CONV1_KERNEL, alexnet.CONV1_STRIDE
    patches = tf.image.extract_patches(batch, sizes=[1, kernel, kernel, 1], strides=[1, stride, stride, 1],
                                       rates=[1, 1, 1, 1], padding='VALID')
    flat = tf.cast(tf.reshape(patches, [-1, kernel * kernel * 3]), tf.float64)
    return tf.matmul(flat, flat, transpose_a=True), tf.shape(flat, out_type=tf.int64)[0]


def patch_moments(ds, a, images=WHITEN_IMAGES):
    """(float64 [363, 363] mean of p p^T over conv1's patches, number of patches) of `images` training images,
    drawn once by the seed, each cropped and reflected at random as training does (its mean subtracted)."""
    split = ds.train.subset(images, a.seed)
    with tf.Graph().as_default(), tf.device('/cpu:0'):
        data = preprocessing.eval_dataset(split, WHITEN_BATCH, a.input_size, ds.mean, a.resize_size,
                                          mode='random', num_random=1, seed=a.seed,
                                          **preprocessing.model_input(vars(a)))
        crops, _ = tf.compat.v1.data.make_one_shot_iterator(data).get_next()
        moment, count = _patches_second_moment(crops[:, 0])
        batch = tf.shape(crops)[0]
        total, n = 0.0, 0
        with tf.compat.v1.Session() as sess, progress.bar(total=len(split), desc='conv1 patches', unit='img',
                                                           leave=False) as bar:
            while True:
                try:
                    m, c, shown = sess.run([moment, count, batch])
                except tf.errors.OutOfRangeError:
                    break
                total, n = total + m, n + int(c)
                bar.update(int(shown))
    if not n:
        raise ValueError('--whiten-conv1 found no training image to measure')
    return total / n, n


def whitened_filters(moment, filters=alexnet.CONV1_FILTERS, eps=WHITEN_EPS):
    """float32 [11, 11, 3, filters]: the top `filters` eigenvectors v of the patches' second moment, each
    divided by sqrt(lambda + eps * mean lambda), so that (v . p)^2 averages about 1 over the patches."""
    eigenvalues, eigenvectors = np.linalg.eigh(moment)           # ascending
    top = eigenvalues[::-1][:filters]
    scale = 1.0 / np.sqrt(np.maximum(top, 0.0) + eps * max(eigenvalues.mean(), 1e-12))
    vectors = eigenvectors[:, ::-1][:, :filters] * scale
    kernel = alexnet.CONV1_KERNEL
    return vectors.reshape(kernel, kernel, 3, filters).astype(np.float32)


def assign_conv1(sess, filters):
    """conv1_a's weights = +filters, conv1_b's = -filters (and their --ema averages, which start there too)."""
    signed = {f'conv1_{alexnet.TOWERS[0]}': filters, f'conv1_{alexnet.TOWERS[1]}': -filters}
    averages = recipe.averages()
    targets = {v.op.name: v for v in tf.compat.v1.global_variables()}
    for layer, value in signed.items():
        name = f'{layer}/weights'
        for variable in (targets[name], averages.get(name)):
            if variable is not None:
                variable.load(value, sess)
