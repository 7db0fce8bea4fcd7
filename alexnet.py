"""AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012) as the paper built it.

A TF1-style graph of low-level ops split into two towers, one per device, as
the paper split it over two GTX 580 GPUs (Section 3.2, Figure 2). Tower "a" and
tower "b" each hold half of every layer's kernels; they exchange activations
only at conv3, fc6, fc7 and fc8, which read both towers' previous outputs.

    python alexnet.py [--input-size 227] [--num-classes 1000]

prints the layer table (towers, output shape, parameters, multiply-adds).
"""
import argparse
import collections
import math
import sys
import zlib

import numpy as np

import quiet  # noqa: F401,E402  (before TensorFlow: keeps its start-up lines out of the output)
import tensorflow as tf  # noqa: E402

# --- the paper's constants ---------------------------------------------------
INPUT_SIZE = 227          # 224 in the paper's text; 227 makes conv1's 11x11/4 give 55x55 (see README)
NUM_CLASSES = 1000        # ILSVRC-2012 classes
TOWERS = ('a', 'b')       # two GPUs, Section 3.2

CONV1_KERNEL, CONV1_STRIDE = 11, 4   # 96 kernels of 11x11x3, stride 4 (Section 3.5)
CONV2_KERNEL = 5                     # 256 kernels of 5x5x48
CONV345_KERNEL = 3                   # 384, 384, 256 kernels of 3x3
CONV1_FILTERS = 48                   # per tower: 96 in all
CONV2_FILTERS = 128                  # per tower: 256 in all
CONV3_FILTERS = 192                  # per tower: 384 in all
CONV4_FILTERS = 192                  # per tower: 384 in all
CONV5_FILTERS = 128                  # per tower: 256 in all
FC_UNITS = 2048                      # per tower: 4096 in fc6 and fc7

LRN_DEPTH_RADIUS = 2      # n = 5 adjacent kernel maps: 2 on each side (Section 3.3)
LRN_BIAS = 2.0            # k = 2
LRN_ALPHA = 1e-4          # alpha = 10^-4, not divided by n (paper's formula, unlike Caffe)
LRN_BETA = 0.75           # beta = 0.75
# TensorFlow's LRN parameters, and whether the window crosses the towers (Caffe's, below)
LRN = collections.namedtuple('LRN', 'depth_radius bias alpha beta across_towers', defaults=(False,))
PAPER_LRN = LRN(LRN_DEPTH_RADIUS, LRN_BIAS, LRN_ALPHA, LRN_BETA)    # the paper's n=5, k=2, alpha=1e-4, beta=0.75
# Caffe's bvlc_alexnet: scale k + alpha/n sum a^2 with k=1, alpha=1e-4, n=5, over all 96 or 256 maps at once
CAFFE_LRN = LRN(2, 1.0, 2e-5, 0.75, across_towers=True)

DATA_FORMATS = ('NHWC', 'NCHW')   # channels last (CPUs) or first (cuDNN's native layout on GPUs)

POOL_SIZE, POOL_STRIDE = 3, 2   # overlapping pooling, z = 3, s = 2 (Section 3.4)
DROPOUT_RATE = 0.5        # fc6 and fc7 outputs dropped with probability 0.5 (Section 4.2)
INIT_STDDEV = 0.01        # weights from N(0, 0.01) (Section 5)
INITS = ('paper', 'he')   # 'he': N(0, 2/fan_in) (He et al. 2015), a departure for small datasets (README)
PIXEL_STD = 64.0          # about the std of mean-subtracted 0-255 pixels: 'he' scales conv1 by it
HE_CONV1_GRADIENT_SCALE = PIXEL_STD ** -2   # 'he': conv1 learns as if it read pixels / PIXEL_STD (README)
BIAS_ONE, BIAS_ZERO = 1.0, 0.0  # biases 1 in conv2, conv4, conv5, fc6, fc7; 0 elsewhere (Section 5)


# --- sizes -------------------------------------------------------------------
def _pool_out(n):
    return (n - POOL_SIZE) // POOL_STRIDE + 1


def feature_sizes(input_size):
    """Spatial sizes after conv1, pool1, pool2 and pool5 for a square input."""
    conv1 = (input_size - CONV1_KERNEL) // CONV1_STRIDE + 1
    pool1 = _pool_out(conv1)
    pool2 = _pool_out(pool1)   # conv2..conv5 keep the size ('SAME' padding)
    pool5 = _pool_out(pool2)
    return conv1, pool1, pool2, pool5


def _min_input_size():
    size = CONV1_KERNEL
    while feature_sizes(size)[-1] < 1:
        size += 1
    return size


MIN_INPUT_SIZE = _min_input_size()   # 67: the smallest input that leaves pool5 non-empty


MAX_INPUT_SIZE = 1024   # fc6 alone is then 1.0e9 weights (4 GB): a larger input is a typo, not a network
MAX_CLASSES = 100_000   # fc8 then holds 4.1e8 weights (1.6 GB); ImageNet's full 21,841 classes fit
MAX_RESIZE_SIZE = 2 * MAX_INPUT_SIZE   # the shorter side images are resized to before the crop (256 for 227)


def check_input_size(input_size):
    if not isinstance(input_size, int) or input_size < MIN_INPUT_SIZE:
        raise ValueError(f'input size {input_size} is too small for AlexNet: pool5 would be '
                         f'empty; use a square input of at least {MIN_INPUT_SIZE} pixels '
                         f'(the paper uses {INPUT_SIZE})')
    if input_size > MAX_INPUT_SIZE:
        raise ValueError(f'input size {input_size} is too large: fc6 would not fit in memory; use a square '
                         f'input of at most {MAX_INPUT_SIZE} pixels (the paper uses {INPUT_SIZE})')


def split_classes(num_classes):
    """Class scores per tower: tower a takes the larger half when the count is odd."""
    if not 2 <= num_classes <= MAX_CLASSES:
        raise ValueError(f'num_classes must be from 2 to {MAX_CLASSES}, got {num_classes}')
    return (num_classes + 1) // 2, num_classes // 2


# --- activation layout -------------------------------------------------------
def default_data_format(devices):
    """NCHW when a tower is on a GPU (cuDNN's native layout), NHWC on CPUs (oneDNN's fastest here)."""
    return 'NCHW' if any('GPU' in (d or '').upper() for d in devices) else 'NHWC'


def check_data_format(data_format):
    if data_format not in DATA_FORMATS:
        raise ValueError(f'unknown data format {data_format!r}: use {" or ".join(DATA_FORMATS)}')
    return data_format


# --- layers ------------------------------------------------------------------
# Every op is named after its layer and tower (conv3_a, pool1_b, ...): the tests
# read the placement and the cross-tower links off those names.

def _weights(shape, init='paper'):
    """'paper': N(0, 0.01). 'he': variance-preserving, N(0, 2/fan_in) after a ReLU; conv1 reads
    raw pixels (no ReLU, std about PIXEL_STD), so it gets N(0, 1/(fan_in PIXEL_STD^2)); fc8, the
    output, starts at zero (uniform first predictions: max-pooling and the biases of 1 make the
    activations grow layer by layer, and He-scaled scores would start with a loss of 15+)."""
    if init not in INITS:
        raise ValueError(f'unknown init {init!r}: use {" or ".join(INITS)}')
    fan_in = math.prod(shape[:-1])
    layer = tf.compat.v1.get_variable_scope().name.split('/')[-1]
    if init == 'he' and layer.startswith('fc8'):
        return tf.compat.v1.get_variable('weights', shape, tf.float32, tf.compat.v1.zeros_initializer())
    he = math.sqrt(1.0 / fan_in) / PIXEL_STD if layer.startswith('conv1') else math.sqrt(2.0 / fan_in)
    stddev = INIT_STDDEV if init == 'paper' else he
    # seeded by the layer's name (and the graph's seed): the draw does not depend on the order the graph is built in
    initializer = tf.compat.v1.random_normal_initializer(stddev=stddev, seed=zlib.crc32(layer.encode()) % 2 ** 31)
    return tf.compat.v1.get_variable('weights', shape, tf.float32, initializer)


def _biases(size, value, init='paper'):
    """The paper's constant; 'he' starts every bias at 0 (variance-preserving weights need no
    positive push, and biases of 1 compound through the max-pools into fc inputs 25 times hotter)."""
    init = tf.compat.v1.constant_initializer(value if init == 'paper' else 0.0)
    return tf.compat.v1.get_variable('biases', [size], tf.float32, init)


def _channel_axis(data_format):
    return 1 if data_format == 'NCHW' else -1


def _join(inputs, data_format='NHWC'):
    """A list of inputs is the paper's cross-GPU link: read both towers' activations."""
    return tf.concat(inputs, axis=_channel_axis(data_format)) if isinstance(inputs, list) else inputs


def conv(name, inputs, kernel, filters, bias, stride=1, padding='SAME', init='paper', data_format='NHWC'):
    """Kernels are [kernel, kernel, in, out] in both data formats: checkpoints do not depend on it."""
    with tf.compat.v1.variable_scope(name):
        x = _join(inputs, data_format)
        w = _weights([kernel, kernel, int(x.shape[_channel_axis(data_format)]), filters], init)
        x = tf.nn.conv2d(x, w, strides=stride, padding=padding, data_format=data_format)
        return tf.nn.relu(tf.nn.bias_add(x, _biases(filters, bias, init), data_format=data_format))


def fc(name, inputs, units, bias, relu=True, init='paper'):
    with tf.compat.v1.variable_scope(name):
        x = _join(inputs)
        w = _weights([int(x.shape[-1]), units], init)
        x = tf.nn.bias_add(tf.matmul(x, w), _biases(units, bias, init))
        return tf.nn.relu(x) if relu else x


def lrn(name, inputs, portable=False, data_format='NHWC', lrn_constants=PAPER_LRN):
    """Local response normalisation, the paper's formula (Section 3.3):
    b = a / (k + alpha * sum of a^2 over the n adjacent maps)^beta.

    `lrn_constants` (an LRN tuple in TensorFlow's terms: depth_radius = n // 2, bias = k, alpha, beta)
    is PAPER_LRN by default; CAFFE_LRN gives the normalisation Caffe's released weights were trained
    with (Caffe divides alpha by n and takes k = 1). The window never crosses towers: each tower
    normalises its own maps, as on the paper's two GPUs (Caffe's LRN spans all 96 or 256 maps).

    Written with matmul and elementwise ops rather than TensorFlow's LRN op, which has no
    bf16 kernel (bf16 runs pay casts around it) and a slow gradient on CPUs: the window sum
    is a matmul with a banded [C, C] 0/1 matrix (fp32 accumulation in bf16 too), the power
    is rsqrt(s) * sqrt(rsqrt(s)) = s^-0.75 (tf.pow for any other beta), and the gradient is
    written out: da = g s^-beta - 2 alpha beta a * W(g b / s). Same values as the op (tests check it).
    On a GPU the op stays: cuDNN's LRN is fast, and fp16 squares would overflow above 256;
    portable=True keeps it too, for exported models (TFLite has it built in and quantises it well).
    In NCHW the window sum is the [C, C] matrix times each image's [C, H*W] maps; TensorFlow's
    op reads NHWC only, so on a GPU in NCHW it runs between two transposes.
    """
    radius, k, alpha, beta = LRN(*lrn_constants)[:4]     # also a list, e.g. a checkpoint JSON's "lrn"
    radius, k, alpha, beta = int(radius), float(k), float(alpha), float(beta)
    if portable or 'GPU' in inputs.device.upper():
        def op(x, op_name=None):
            return tf.nn.local_response_normalization(x, depth_radius=radius, bias=k,
                                                      alpha=alpha, beta=beta, name=op_name)
        if data_format == 'NHWC':
            return op(inputs, name)
        with tf.name_scope(name):
            return tf.transpose(op(tf.transpose(inputs, [0, 2, 3, 1])), [0, 3, 1, 2], name='output')
    channels = int(inputs.shape[_channel_axis(data_format)])
    with tf.name_scope(name):
        index = np.arange(channels)
        window = np.abs(index[:, None] - index[None, :]) <= radius
        band = tf.constant(alpha * window, tf.float32, name='window')   # alpha folded in
        band_grad = tf.constant(2 * beta * alpha * window, tf.float32, name='window_grad')
        bias = tf.constant(k, tf.float32, [channels], name='bias')

        def window_sum(x, matrix, plus=None):   # the matrices are symmetric: x W and W x are the same sum
            if data_format == 'NCHW':
                y = tf.matmul(matrix, tf.reshape(x, [tf.shape(x)[0], channels, -1]))
            else:
                y = tf.matmul(tf.reshape(x, [-1, channels]), matrix)
            if plus is not None:        # before the reshape: oneDNN fuses it into the matmul
                y = tf.nn.bias_add(y, plus, data_format=data_format)
            return tf.reshape(y, tf.shape(x))

        @tf.custom_gradient
        def normalise(a):
            s = window_sum(tf.square(a), band, plus=bias)
            r = tf.math.rsqrt(s)
            p = r * tf.sqrt(r) if beta == 0.75 else tf.pow(s, -beta)   # s^-0.75, fast
            b = a * p

            def grad(g):
                return g * p - a * window_sum(g * b / s, band_grad)
            return b, grad
        return tf.identity(normalise(inputs), name='output')


def lrn_of(record):
    """The LRN of a network's record (a checkpoint's JSON, or a run's settings): its "lrn" constants (the
    paper's when none) and its "lrn_across_towers"."""
    constants = LRN(*record['lrn'][:4]) if record.get('lrn') else PAPER_LRN
    return constants._replace(across_towers=bool(record.get('lrn_across_towers')))


def lrn_record(constants):
    """lrn_of's inverse: the keys a checkpoint's JSON records of an LRN."""
    constants = LRN(*constants)
    return dict(lrn=list(constants[:4]), lrn_across_towers=bool(constants.across_towers))


def _channels(x, start, stop, data_format):
    return x[:, start:stop] if data_format == 'NCHW' else x[..., start:stop]


def tower_lrn(name, maps, devices, portable=False, data_format='NHWC', lrn_constants=PAPER_LRN):
    """The LRN of both towers ({tower: maps} -> {tower: normalised}), each on its device.

    The paper's window stays inside each tower, as on its two GPUs. Caffe's (lrn_constants.across_towers,
    for its released weights) spans all 96 or 256 maps, so the depth_radius maps on each side of the
    boundary see maps of the other tower: each tower then also reads the other's depth_radius maps next
    to the boundary (cut on the other tower's device, so only those cross), normalises them with its own
    and keeps its own, which is exactly Caffe's function."""
    constants = LRN(*lrn_constants)
    radius, axis, out = int(constants.depth_radius), _channel_axis(data_format), {}
    for t, device, other_device in zip(TOWERS, devices, devices[::-1]):
        x = maps[t]
        if not constants.across_towers or not radius:
            with tf.device(device):
                out[t] = lrn(f'{name}_{t}', x, portable, data_format, constants)
            continue
        other, channels = maps['b' if t == 'a' else 'a'], int(x.shape[axis])
        with tf.device(other_device), tf.name_scope(f'{name}_{t}_edge'):
            edge = _channels(other, 0, radius, data_format) if t == 'a' else \
                _channels(other, -radius, None, data_format)
        with tf.device(device):
            wide = tf.concat([x, edge] if t == 'a' else [edge, x], axis, name=f'{name}_{t}_wide')
            normalised = lrn(f'{name}_{t}_wide_lrn', wide, portable, data_format, constants)
            start = 0 if t == 'a' else radius
            out[t] = tf.identity(_channels(normalised, start, start + channels, data_format),
                                 name=f'{name}_{t}/output')
    return out


def max_pool(name, inputs, data_format='NHWC'):
    return tf.nn.max_pool2d(inputs, POOL_SIZE, POOL_STRIDE, padding='VALID', data_format=data_format, name=name)


def flatten(name, inputs, data_format='NHWC'):
    """Rows in (height, width, channel) order in both formats: fc6's weights do not depend on it."""
    if data_format == 'NCHW':
        inputs = tf.transpose(inputs, [0, 2, 3, 1], name=f'{name}/to_nhwc')   # named for its tower
    return tf.reshape(inputs, [-1, int(inputs.shape[1]) * int(inputs.shape[2]) * int(inputs.shape[3])],
                      name=name)


def dropout(name, inputs, training, seed=None, rate=DROPOUT_RATE):
    """Dropout in training only (Section 4.2); evaluation is deterministic.

    `seed` may be an int32 tensor of shape [2] (e.g. the run's seed and the global
    step): the masks are then a pure function of it, so a resumed run draws the
    same masks as one that never stopped.
    """
    def drop():
        if seed is not None and isinstance(seed, tf.Tensor):
            layer_seed = seed + tf.constant([zlib.crc32(name.encode()) % 65536, 0], seed.dtype)
            return tf.nn.experimental.stateless_dropout(inputs, rate, layer_seed)
        return tf.nn.dropout(inputs, rate=rate, seed=seed)

    with tf.name_scope(name):
        if training is False or rate == 0:
            return inputs
        if training is True:
            return drop()
        return tf.cond(training, drop, lambda: inputs)


# --- the network (Figure 2) --------------------------------------------------
def inference(images, num_classes=NUM_CLASSES, training=False, devices=None, dropout_seed=None,
              dropout_rate=DROPOUT_RATE, init='paper', portable=False, data_format=None,
              lrn_constants=PAPER_LRN, endpoints=None):
    """Logits [batch, num_classes] for float images [batch, s, s, 3] (mean subtracted).

    `devices`: the two towers' devices (parallel.tower_devices reads them from a flag), or one device
    for both; None leaves both where TensorFlow places ops.
    `training` (a Python bool or a bool tensor) switches dropout on (dropout_rate 0: off). Variables are
    created with get_variable, so calling this again under a reusing variable
    scope builds another graph (e.g. for evaluation) on the same weights.
    `init` draws the weights: 'paper' (N(0, 0.01)) or 'he' (N(0, 2/fan_in)). portable=True builds
    TensorFlow's LRN op rather than the faster equivalent (see lrn): for SavedModel/TFLite export.
    `data_format` lays the activations out inside: 'NHWC' or 'NCHW' (the images stay NHWC; default:
    default_data_format). It changes neither the variables nor the results (up to float rounding).
    `lrn_constants`: the LRN's (depth_radius, bias, alpha, beta, across_towers), PAPER_LRN or CAFFE_LRN
    (see lrn and tower_lrn).
    `endpoints`, a dict, receives the features of both towers: 'pool5' [batch, 2 x 6 x 6 x 128 at 227]
    (each tower's map flattened, tower a first) and 'fc7' [batch, 4096] (after ReLU, before dropout).
    """
    size = int(images.shape[1])
    check_input_size(size)
    if int(images.shape[2]) != size:
        raise ValueError(f'AlexNet needs square inputs, got {images.shape[1]}x{images.shape[2]}')
    devices = (devices, devices) if devices is None or isinstance(devices, str) else tuple(devices)
    fmt = check_data_format(data_format or default_data_format(devices))
    classes = split_classes(num_classes)
    conv1, conv2, pool2, pool5, fc6, relu7, fc7, fc8 = {}, {}, {}, {}, {}, {}, {}, {}
    if fmt == 'NCHW':
        with tf.device(devices[0]):
            images = tf.transpose(images, [0, 3, 1, 2], name='to_nchw')

    for t, device in zip(TOWERS, devices):      # each tower sees the whole image
        with tf.device(device):
            conv1[t] = conv(f'conv1_{t}', images, CONV1_KERNEL, CONV1_FILTERS, BIAS_ZERO,
                            stride=CONV1_STRIDE, padding='VALID', init=init, data_format=fmt)
    norm1 = tower_lrn('lrn1', conv1, devices, portable, fmt, lrn_constants)

    for t, device in zip(TOWERS, devices):
        with tf.device(device):
            x = max_pool(f'pool1_{t}', norm1[t], fmt)
            conv2[t] = conv(f'conv2_{t}', x, CONV2_KERNEL, CONV2_FILTERS, BIAS_ONE, init=init, data_format=fmt)
    norm2 = tower_lrn('lrn2', conv2, devices, portable, fmt, lrn_constants)

    for t, device in zip(TOWERS, devices):
        with tf.device(device):
            pool2[t] = max_pool(f'pool2_{t}', norm2[t], fmt)

    for t, device in zip(TOWERS, devices):      # conv3 reads both towers
        with tf.device(device):
            x = conv(f'conv3_{t}', [pool2['a'], pool2['b']], CONV345_KERNEL, CONV3_FILTERS, BIAS_ZERO,
                     init=init, data_format=fmt)
            x = conv(f'conv4_{t}', x, CONV345_KERNEL, CONV4_FILTERS, BIAS_ONE, init=init, data_format=fmt)
            x = conv(f'conv5_{t}', x, CONV345_KERNEL, CONV5_FILTERS, BIAS_ONE, init=init, data_format=fmt)
            pool5[t] = flatten(f'flatten5_{t}', max_pool(f'pool5_{t}', x, fmt), fmt)

    for t, device in zip(TOWERS, devices):      # fc6 reads both towers
        with tf.device(device):
            x = fc(f'fc6_{t}', [pool5['a'], pool5['b']], FC_UNITS, BIAS_ONE, init=init)
            fc6[t] = dropout(f'dropout6_{t}', x, training, dropout_seed, dropout_rate)

    for t, device in zip(TOWERS, devices):      # fc7 reads both towers
        with tf.device(device):
            relu7[t] = fc(f'fc7_{t}', [fc6['a'], fc6['b']], FC_UNITS, BIAS_ONE, init=init)
            fc7[t] = dropout(f'dropout7_{t}', relu7[t], training, dropout_seed, dropout_rate)

    for t, device, n in zip(TOWERS, devices, classes):   # fc8 reads both; each tower scores its half
        with tf.device(device):
            fc8[t] = fc(f'fc8_{t}', [fc7['a'], fc7['b']], n, BIAS_ZERO, relu=False, init=init)

    with tf.device(devices[0]):
        if endpoints is not None:
            endpoints['pool5'] = tf.concat([pool5['a'], pool5['b']], axis=-1, name='features_pool5')
            endpoints['fc7'] = tf.concat([relu7['a'], relu7['b']], axis=-1, name='features_fc7')
        return tf.concat([fc8['a'], fc8['b']], axis=-1, name='logits')


FEATURE_LAYERS = ('conv1', 'conv2', 'conv3', 'conv4', 'conv5')   # conv1..pool5: the feature extractor
LAYERS = FEATURE_LAYERS + ('fc6', 'fc7', 'fc8')                   # every layer with weights


# --- the layer table ---------------------------------------------------------
def layer_table(input_size=INPUT_SIZE, num_classes=NUM_CLASSES):
    """Rows (layer, towers, output shape, params, multiply-adds), computed from the sizes."""
    check_input_size(input_size)
    c1, p1, p2, p5 = feature_sizes(input_size)
    fc8_a, fc8_b = split_classes(num_classes)
    rows = []

    def conv_row(name, reads, size, kernel, cin, cout):
        params = 2 * (kernel * kernel * cin * cout + cout)
        macs = 2 * size * size * cout * kernel * kernel * cin
        rows.append((name, reads, f'{size}x{size}x{2 * cout}', params, macs))

    conv_row('conv1', 'image', c1, CONV1_KERNEL, 3, CONV1_FILTERS)
    rows.append(('pool1', 'own', f'{p1}x{p1}x{2 * CONV1_FILTERS}', 0, 0))
    conv_row('conv2', 'own', p1, CONV2_KERNEL, CONV1_FILTERS, CONV2_FILTERS)
    rows.append(('pool2', 'own', f'{p2}x{p2}x{2 * CONV2_FILTERS}', 0, 0))
    conv_row('conv3', 'both', p2, CONV345_KERNEL, 2 * CONV2_FILTERS, CONV3_FILTERS)
    conv_row('conv4', 'own', p2, CONV345_KERNEL, CONV3_FILTERS, CONV4_FILTERS)
    conv_row('conv5', 'own', p2, CONV345_KERNEL, CONV4_FILTERS, CONV5_FILTERS)
    rows.append(('pool5', 'own', f'{p5}x{p5}x{2 * CONV5_FILTERS}', 0, 0))
    fan_in = p5 * p5 * 2 * CONV5_FILTERS
    for name, cin, (ua, ub) in (('fc6', fan_in, (FC_UNITS, FC_UNITS)),
                                ('fc7', 2 * FC_UNITS, (FC_UNITS, FC_UNITS)),
                                ('fc8', 2 * FC_UNITS, (fc8_a, fc8_b))):
        rows.append((name, 'both', f'{ua + ub}', cin * (ua + ub) + ua + ub, cin * (ua + ub)))
    return rows


def count(input_size=INPUT_SIZE, num_classes=NUM_CLASSES):
    """(parameters, multiply-adds per image) of the whole network."""
    rows = layer_table(input_size, num_classes)
    return sum(r[3] for r in rows), sum(r[4] for r in rows)


class Parser(argparse.ArgumentParser):
    """cli.Parser's one-line flag errors (cli.py imports this module, so it cannot be imported here)."""
    def error(self, message):
        self.exit(2, f'error: {message} (see --help)\n')


def parser():
    p = Parser(description='Print the AlexNet layer table.')
    p.add_argument('-i', '--input-size', type=int, default=INPUT_SIZE,
                   help=f'square input size in pixels (default {INPUT_SIZE}, from {MIN_INPUT_SIZE} to '
                        f'{MAX_INPUT_SIZE})')
    p.add_argument('-n', '--num-classes', type=int, default=NUM_CLASSES,
                   help=f'number of classes (default {NUM_CLASSES}, from 2 to {MAX_CLASSES})')
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        rows = layer_table(args.input_size, args.num_classes)
    except ValueError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f'AlexNet, two towers (a, b), input {args.input_size}x{args.input_size}x3, '
          f'{args.num_classes} classes')
    print(f'{"layer":6} {"each tower reads":>17} {"output (a+b)":>13} {"params":>12} {"mult-adds":>13}')
    for name, reads, shape, params, macs in rows:
        reads = {'image': 'the image', 'own': 'its own tower', 'both': 'both towers'}[reads]
        print(f'{name:6} {reads:>17} {shape:>13} {params:>12,} {macs:>13,}')
    params, macs = count(args.input_size, args.num_classes)
    print(f'params {params} macs {macs}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
