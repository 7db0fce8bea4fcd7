"""How fast AlexNet trains and classifies here: images per second on synthetic data.

    python bench.py [--precision bf16] [--batch-size 128] [--data-format NHWC] [--data-dir ../shared/data/imagenet/val]

Times the training step (forward, backward, momentum update with weight decay, built
by recipe.build_train_op: the recipe train.py runs), inference on random images
held in memory, and a large matrix product in the same precision (this machine's
practical limit), taken in turn, the median of --steps steps after --warmup
untimed ones; then the input pipeline alone on real JPEGs with the training
transforms (decoding included). One figure a line on stdout, the summary last:

    train 110.2 img/s  infer 352.0 img/s  (bf16, batch 128)
"""
import os
import statistics
import sys
import time
from pathlib import Path

import quiet  # noqa: F401  (first: keeps TensorFlow's start-up lines out of the output)
import numpy as np
import tensorflow as tf

import alexnet
import cli
import datasets
import parallel
import preprocessing
import recipe
import settings
from errors import DataError

SAMPLE_JPEGS = Path(__file__).resolve().parent / 'tests' / 'data' / 'imagenet' / 'val'
MATMUL_SIZE = 4096     # the reference product: [n, n] x [n, n], 2 n^3 FLOP
MAX_MATMUL_SIZE = 32768   # three [n, n] matrices of 4 GiB each: more than any machine this runs on holds
MAX_SECONDS = 3600.0      # --pipeline-seconds: an hour measures any pipeline; more is a typo
# FLOP per image: 2 per multiply-add (724,406,816 at 227x227), x3 for training (forward, and
# backward to the activations and to the weights).


def log(message):
    print(message, file=sys.stderr, flush=True)


def time_interleaved(runs, steps, warmup):
    """Median seconds of one sess.run(fetch) for each (sess, fetch), after `warmup` untimed runs,
    the runs taken in turn so that a change in the machine's load touches all of them alike."""
    for sess, fetch in runs:
        for _ in range(warmup):
            sess.run(fetch)
    times = [[] for _ in runs]
    for _ in range(steps):
        for (sess, fetch), spent in zip(runs, times):
            start = time.perf_counter()
            sess.run(fetch)
            spent.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def _session(graph, a):
    return tf.compat.v1.Session(graph=graph, config=parallel.session_config(a.precision, a.devices.split(",")))


def _synthetic(a):
    """Random images and labels held in (non-trainable) variables: no input cost in the timings."""
    with tf.device('/cpu:0'):
        shape = [a.batch_size, a.input_size, a.input_size, 3]
        images = tf.Variable(tf.random.uniform(shape, -128, 128), trainable=False, name='bench_images')
        labels = tf.Variable(tf.random.uniform([a.batch_size], 0, a.num_classes, tf.int64),
                             trainable=False, name='bench_labels')
    return images, labels


def training_session(a):
    """(session, train_op) for the training step of train.py on synthetic data."""
    graph = tf.Graph()
    with graph.as_default():
        images, labels = _synthetic(a)
        global_step = tf.compat.v1.train.get_or_create_global_step()
        train_op, _, _ = recipe.build_train_op(recipe.Recipe.of(a), images, labels, global_step,
                                               tf.constant(recipe.LEARNING_RATE))
        init = tf.compat.v1.global_variables_initializer()
    sess = _session(graph, a)
    sess.run(init)
    return sess, train_op


def inference_session(a):
    graph = tf.Graph()
    with graph.as_default():
        images, _ = _synthetic(a)
        logits = alexnet.inference(images, a.num_classes, training=False, devices=a.devices.split(','),
                                   data_format=a.data_format)
        fetch = tf.reduce_sum(logits)         # one number back: no copy of the logits in the timing
        init = tf.compat.v1.global_variables_initializer()
    sess = _session(graph, a)
    sess.run(init)
    return sess, fetch


def matmul_session(a, n=MATMUL_SIZE):
    """A [n, n] x [n, n] product in the model's precision (fp16 only on a GPU, as the model)."""
    graph = tf.Graph()
    device = a.devices.split(',')[0]
    on_gpu = 'GPU' in device.upper()
    dtype = {'bf16': tf.bfloat16, 'fp16': tf.float16 if on_gpu else tf.float32}.get(a.precision, tf.float32)
    with graph.as_default(), tf.device(device):     # stored in the precision: no casts in the timing
        x = tf.Variable(tf.cast(tf.random.normal([n, n]), dtype), name='x')
        y = tf.Variable(tf.cast(tf.random.normal([n, n]), dtype), name='y')
        fetch = tf.reduce_sum(tf.cast(tf.matmul(x, y), tf.float32))
        init = tf.compat.v1.global_variables_initializer()
    sess = _session(graph, a)
    sess.run(init)
    return sess, fetch


def folder_split(data_dir, batch_size):
    """(Split, image count) of the images under data_dir, cycled so that an epoch is 20 batches at least."""
    folder = Path(data_dir)
    if not folder.is_dir():
        raise DataError(f'--data-dir {folder} is not a folder: point it at a folder of JPEGs, '
                        f'e.g. ../shared/data/imagenet/val')
    files = datasets.image_files(folder, recursive=True)
    if not files:
        raise DataError(f'no images ({", ".join(datasets.IMAGE_EXTENSIONS)}) in {folder}')
    repeat = -(-20 * batch_size // len(files))
    return datasets.Split(np.zeros(len(files) * repeat, np.int64), files=files * repeat), len(files)


def op_category(name, op_type):
    """Which part of the training step an op belongs to, for --profile."""
    rules = (('lrn' in name, 'local response normalisation (forward and gradient)'),
             ('BackpropFilter' in op_type, 'convolution weight gradients'),
             ('BackpropInput' in op_type, 'convolution input gradients'),
             ('Conv2D' in op_type, 'convolutions (forward, with bias and ReLU)'),
             ('MatMul' in op_type, 'fully-connected matmuls (forward and backward)'),
             (name.startswith(('decayed_gradients', 'Momentum')), 'weight decay and momentum update'),
             (op_type == 'ReluGrad', 'ReLU gradients'),
             (op_type == 'Cast', 'casts between precisions'),
             ('Pool' in op_type, 'max-pooling (forward and gradient)'),
             ('dropout' in name, 'dropout'))
    return next((category for hit, category in rules if hit), 'other')


def profile(sess, fetch, steps=3):
    """[(share of op time, category)] over `steps` traced runs of fetch, largest first (TensorFlow's step
    stats; ops on the two cores overlap, so shares are of the summed op time, not of the wall clock)."""
    spent = {}
    options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
    for _ in range(steps):
        metadata = tf.compat.v1.RunMetadata()
        sess.run(fetch, options=options, run_metadata=metadata)
        for device in metadata.step_stats.dev_stats:
            for node in device.node_stats:
                op_type = node.timeline_label.split(' = ')[-1].split('(')[0].strip()
                category = op_category(node.node_name, op_type)
                spent[category] = spent.get(category, 0) + node.all_end_rel_micros
    total = sum(spent.values()) or 1
    return sorted(((micros / total, category) for category, micros in spent.items()), reverse=True)


def parser():
    p = cli.Parser(description='Measure AlexNet training and inference speed (images/second) on synthetic data, '
                               'and the input pipeline on real images.')
    p.add_argument('-b', '--batch-size', type=cli.whole(1), default=recipe.BATCH_SIZE,
                   help=f'images per step (default {recipe.BATCH_SIZE})')
    p.add_argument('--precision', choices=parallel.PRECISIONS, default='fp32',
                   help='fp32 (default), bf16 (oneDNN mixed precision on CPUs), fp16 (GPUs)')
    p.add_argument('--steps', type=cli.whole(1), default=10, help='timed steps; the median is reported (default 10)')
    p.add_argument('--warmup', type=cli.whole(0), default=3, help='untimed steps first (default 3)')
    p.add_argument('-i', '--input-size', type=cli.whole(alexnet.MIN_INPUT_SIZE), default=alexnet.INPUT_SIZE,
                   help=f'square input size (default {alexnet.INPUT_SIZE}, at least {alexnet.MIN_INPUT_SIZE})')
    p.add_argument('--devices', help='tower devices, e.g. /gpu:0,/gpu:1 (default: two GPUs, one GPU or the CPU)')
    p.add_argument('--data-format', type=str.upper, choices=alexnet.DATA_FORMATS,
                   help='activation layout: NHWC or NCHW (default: NCHW on GPUs, NHWC on CPUs)')
    p.add_argument('--data-dir', default=str(SAMPLE_JPEGS),
                   help='JPEGs for the input pipeline figure (default: the 12 real ImageNet validation images '
                        'of tests/data/imagenet/val; ../shared/data/imagenet/val has 100)')
    p.add_argument('--pipeline-seconds', type=cli.number(0, MAX_SECONDS, low_included=False), default=10.0,
                   help=f'how long to run the pipeline (default 10, at most {MAX_SECONDS})')
    p.add_argument('--threads', type=cli.whole(1), help="the input pipeline's threads (default: tf.data's choice)")
    p.add_argument('--skip-pipeline', action='store_true', help='do not measure the input pipeline')
    p.add_argument('--profile', action='store_true',
                   help='also print where a training step spends its time (share of op time by part)')
    p.add_argument('--matmul-size', type=cli.whole(1, MAX_MATMUL_SIZE), default=MATMUL_SIZE,
                   help=f'n of the reference [n, n] x [n, n] product (default {MATMUL_SIZE}, at most '
                        f'{MAX_MATMUL_SIZE})')
    return p


def parse_args(argv):
    return parser().parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        if not args.skip_pipeline:
            split, n_files = folder_split(args.data_dir, args.batch_size)
        alexnet.check_input_size(args.input_size)
        devices = ','.join(parallel.tower_devices(args.devices))
    except (DataError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    a = settings.settled(dict(input_size=args.input_size, devices=devices, batch_size=args.batch_size,   # the paper's
                              precision=args.precision,                                              # recipe
                              data_format=args.data_format or alexnet.default_data_format(devices.split(','))))
    if args.precision == 'bf16' and 'GPU' not in devices.upper() and not parallel.cpu_has_bf16():
        log(parallel.BF16_EMULATED_NOTE)
    if args.precision == 'fp16' and 'GPU' not in devices.upper():
        log('note: the fp16 rewrite applies on GPUs only: on the CPU these are fp32 figures (loss scaling aside)')
    macs = alexnet.count(args.input_size)[1]
    b = args.batch_size
    print(f'load average {" ".join(f"{x:.2f}" for x in os.getloadavg())} on {os.cpu_count()} cores '
          f'(1, 5, 15 min; other work on the machine slows the figures)')

    log(f'building: training step and inference ({args.precision}, batch {b}, {args.input_size}x'
        f'{args.input_size}, {a.data_format}, devices {devices}), {args.matmul_size}^3 matrix product ...')
    try:
        runs = [training_session(a), inference_session(a), matmul_session(a, args.matmul_size)]
    except DataError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    log(f'timing {args.steps} steps of each, in turn, after {args.warmup} warm-up steps ...')
    t_train, t_infer, t_matmul = time_interleaved(runs, args.steps, args.warmup)
    shares = profile(*runs[0]) if args.profile else []
    for sess, _ in runs:
        sess.close()
    n = args.matmul_size
    train_rate, infer_rate = b / t_train, b / t_infer
    peak = 2 * n ** 3 / t_matmul / 1e9
    train_gflops = train_rate * 3 * 2 * macs / 1e9
    infer_gflops = infer_rate * 2 * macs / 1e9
    print(f'training   {train_rate:9.1f} img/s       ({t_train * 1000:.0f} ms a step, median of {args.steps}, '
          f'{a.data_format})')
    print(f'training   {train_gflops:9.1f} GFLOP/s     ({train_gflops / peak:.0%} of the matrix product)')
    print(f'inference  {infer_rate:9.1f} img/s       ({t_infer * 1000:.0f} ms a batch, median of {args.steps}, '
          f'{a.data_format})')
    print(f'inference  {infer_gflops:9.1f} GFLOP/s     ({infer_gflops / peak:.0%} of the matrix product)')
    print(f'matmul     {peak:9.1f} GFLOP/s     ({n}x{n}x{n}, {args.precision}: '
          f'this machine\'s practical limit)')
    if not args.skip_pipeline:
        log(f'input pipeline on {args.data_dir} ...')
        try:
            rate, per_core = preprocessing.pipeline_speed(split, args.input_size, b, args.pipeline_seconds,
                                                          args.threads)
        except DataError as e:
            print(f'error: {e}', file=sys.stderr)
            return 2
        threads = f', {args.threads} threads' if args.threads else ''
        print(f'pipeline   {rate:9.1f} img/s       ({n_files} images from {args.data_dir}, training transforms'
              f'{threads})')
        print(f'pipeline   {per_core:9.1f} img/s/core  (images per CPU-second)')
    for share, category in shares:
        print(f'profile    {100 * share:9.1f} % of op time  {category}')
    print(f'train {train_rate:.1f} img/s  infer {infer_rate:.1f} img/s  ({args.precision}, batch {b})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
