"""Import Caffe's released bvlc_alexnet weights as a checkpoint of this project (issue 17).

    python import_weights.py bvlc_alexnet --train-dir runs/bvlc_alexnet      # downloads Caffe's file first
    python import_weights.py bvlc_alexnet.caffemodel --train-dir runs/bvlc_alexnet
    python import_weights.py bvlc_alexnet.npy --train-dir runs/bvlc_alexnet [--overwrite]

writes runs/bvlc_alexnet/model.ckpt-0.{index,data-*} and model.ckpt-0.json, a checkpoint
like a training run's at step 0: test.py, classify.py, export.py and train.py --model_path
read it as they read their own. The name bvlc_alexnet (RELEASED) in place of a file fetches Caffe's
released caffemodel into the download cache first (download.get: [--cache-dir DIR], else $ALEXNET_CACHE,
$XDG_CACHE_HOME/alexnet or ~/.cache/alexnet), resumed when cut, its SHA-1 checked, reused after.

Inputs (told apart by their content, not their name):
  * .caffemodel, Caffe's binary NetParameter protobuf, in either encoding: the old
    `layers` (field 2, V1LayerParameter: type an enum; Caffe before 2015) or the current
    `layer` (field 100, LayerParameter: type a string). It is parsed by the `protobuf`
    package (which TensorFlow installs) with message types built in code from caffe.proto's
    field numbers (caffe_messages); only the fields read here are declared, the rest are
    skipped. Size: the released file is 233 MB; the upb backend of today's protobuf (the
    default since 4.21) has no 64 MB limit: its ParseFromString reads the 244 MB test files
    (tests/test_import_weights.py) in under a second. Old releases' C++ backend stopped at
    64 MB; a parse failure there says so in its `error:` line.
  * .npy of caffe-tensorflow (e.g. the widely copied bvlc_alexnet.npy): a pickled dict
    {layer: [weights, biases]} or {layer: {'weights': ..., 'biases': ...}}, already in
    TensorFlow layouts (conv [h, w, in/group, out], fc [in, out], fc6's rows in
    (h, w, c) order). Its pickle is never given to pickle or np.load: weights_files
    interprets it, admitting only float32/float64 arrays, dicts, lists and string keys.

Weight files are untrusted input; what is guaranteed (weights_files reads them):
  * nothing in a weight file ever runs: a .npy's pickle is interpreted opcode by opcode and
    anything but numpy float arrays, dicts, lists, strings and numbers (os.system, object
    arrays, numpy.ndarray called directly, ...) is refused before it is built;
  * reading a file takes memory and time bounded by its size (a few times its bytes, at most
    100,000 pickle opcodes), whatever shapes or structures it declares: every Caffe blob's
    dims are checked against the layer table, and every .npy array's shape x itemsize
    against the bytes actually present, before any array is allocated or any arithmetic is
    done on them;
  * a bad file (not a weight file, truncated, wrong shapes, hostile, a folder) ends in one
    `error:` line that says what is wrong and what to give, exit status 2, no traceback, and
    nothing written: no --train-dir created, no temporary folder left.

The mapping (Caffe's layouts and grouping): conv weights [out, in/group, h, w] become
[h, w, in/group, out]; tower a takes the first half of every layer's outputs, which in
conv2, conv4 and conv5 (group 2) read the first half of the inputs, i.e. tower a's maps;
fc6's Caffe columns read pool5 flattened in (c, h, w) order and are reordered into this
project's fc6 input: tower a's pool5 flattened (h, w, c), then tower b's; fc layers
[out, in] become [in, out]; fc8's first ceil(C/2) = 500 classes go to fc8_a. Every
array's shape is checked against the layer table (CAFFE_SHAPES, NPY_SHAPES).

How the released model differs from the paper's, recorded in the checkpoint's JSON for
the scripts that preprocess and build the graph (beside the usual keys of a training
run's JSON, which are filled as at step 0 of an ImageNet run):
  "source":        "caffe bvlc_alexnet (FILE NAME)"
  "lrn":           [2, 1.0, 2e-05, 0.75], alexnet.CAFFE_LRN: Caffe's alpha/n with k = 1;
  "lrn_across_towers": true: Caffe's norm1 and norm2 windows span all 96 and 256 maps, so
                   each tower's LRN also reads the other tower's 2 maps next to the boundary
                   (alexnet.tower_lrn); build the graph with
                   alexnet.inference(..., lrn_constants=alexnet.lrn_of(meta))
  "channel_order": "BGR": conv1 reads blue, green, red (Caffe loads images with OpenCV);
                   flip RGB images' channels before the network
  "mean":          [122.679, 116.669, 104.007], in RGB order like every "mean" of this
                   project: Caffe's ilsvrc_2012_mean.npy per channel (B 104.007,
                   G 116.669, R 122.679), subtracted before the flip
  "resize_mode":   "warp": Caffe resizes every image to 256x256 without keeping its aspect
                   ratio (this project's training resizes the shorter side), then crops 227
Other keys: dataset 'imagenet', data_dir None, class_names and class_ids from
imagenet_classes.txt (the 1000 ILSVRC-2012 classes in sorted-WNID order, Caffe's label
order), num_classes 1000, input_size 227, resize_size 256, step 0, epoch 0, best None,
precision 'fp32', devices '/cpu:0,/cpu:0', args (settings.DEFAULTS, for such a run).

train_dir must hold no checkpoint (--overwrite deletes the run there, as train.py -scratch
--overwrite does, once the new checkpoint is ready); the new one is written in a temporary
folder inside it (train_dir/.import-*, nothing is written outside train_dir) and moved in,
all under the run folder's lock, so an error or an interruption leaves nothing half-written;
the temporary folder a kill -9 leaves is deleted by the next import into that folder.
About 1.5 GB of memory and 25 s on a CPU.
"""
import quiet  # noqa: F401  (first: keeps TensorFlow's start-up lines out of the output)

import argparse
import os
import shutil
import sys
import tempfile

import numpy as np

import alexnet
import checkpoints
import cli
import download
import parallel
import settings
import weights_files
from errors import DataError
from files import FolderLock, LOCK_FILE
from schedule import LearningRate
from weights_files import shape_text

CLASSES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'imagenet_classes.txt')
NUM_CLASSES = 1000
INPUT_SIZE = 227                  # Caffe's crop of bvlc_alexnet
RESIZE_SIZE = 256                 # Caffe's images are warped to 256x256 before the crop
CAFFE_MEAN_B, CAFFE_MEAN_G, CAFFE_MEAN_R = 104.007, 116.669, 122.679   # ilsvrc_2012_mean.npy per channel
CAFFE_MEAN_RGB = (CAFFE_MEAN_R, CAFFE_MEAN_G, CAFFE_MEAN_B)             # this project's "mean" order
CHANNEL_ORDER = 'BGR'
RESIZE_MODE = 'warp'
DEVICES = '/cpu:0,/cpu:0'
ILSVRC_TRAIN_IMAGES = 1281167     # for steps_per_epoch, as a training run would record it

LAYERS = ('conv1', 'conv2', 'conv3', 'conv4', 'conv5', 'fc6', 'fc7', 'fc8')
CONV_LAYERS = LAYERS[:5]
GROUPS = {'conv1': 1, 'conv2': 2, 'conv3': 1, 'conv4': 2, 'conv5': 2}   # bvlc_alexnet's deploy.prototxt
NPY_MAGIC = b'\x93NUMPY'
HDF5_MAGIC = b'\x89HDF'
IMPORT_TMP_PREFIX = '.import-'   # the temporary folder inside --train-dir a checkpoint is built in

# What Caffe's models/bvlc_alexnet/readme.md publishes (its front matter and its License section).
RELEASED = {'bvlc_alexnet': download.Remote(
    name='bvlc_alexnet', url='http://dl.caffe.berkeleyvision.org/bvlc_alexnet.caffemodel',
    filename='bvlc_alexnet.caffemodel', sha1='9116a64c0fbe4459d18f4bb6b56d647b63920377',
    max_bytes=250_000_000,        # its 60,965,224 float32 weights are 243,860,896 bytes, plus the protobuf's framing
    licence='unrestricted ("This model is released for unrestricted use.")',
    source="Caffe's models/bvlc_alexnet/readme.md")}


# --- the layer table ---------------------------------------------------------
def _table(num_classes=NUM_CLASSES, input_size=INPUT_SIZE):
    """{layer: (Caffe weight shape, bias shape)} of bvlc_alexnet, from alexnet.py's constants."""
    c1, c2, c3, c4, c5 = (2 * alexnet.CONV1_FILTERS, 2 * alexnet.CONV2_FILTERS, 2 * alexnet.CONV3_FILTERS,
                          2 * alexnet.CONV4_FILTERS, 2 * alexnet.CONV5_FILTERS)
    k1, k2, k3 = alexnet.CONV1_KERNEL, alexnet.CONV2_KERNEL, alexnet.CONV345_KERNEL
    p5 = alexnet.feature_sizes(input_size)[-1]
    fc = 2 * alexnet.FC_UNITS
    g = GROUPS                # a grouped layer's kernels read in/group channels
    weights = {'conv1': (c1, 3 // g['conv1'], k1, k1), 'conv2': (c2, c1 // g['conv2'], k2, k2),
               'conv3': (c3, c2 // g['conv3'], k3, k3), 'conv4': (c4, c3 // g['conv4'], k3, k3),
               'conv5': (c5, c4 // g['conv5'], k3, k3),
               'fc6': (fc, c5 * p5 * p5), 'fc7': (fc, fc), 'fc8': (num_classes, fc)}
    return {name: (w, (w[0],)) for name, w in weights.items()}


CAFFE_SHAPES = _table()                    # [out, in/group, h, w] and [out, in]
POOL5_SIZE = alexnet.feature_sizes(INPUT_SIZE)[-1]   # 6


def _npy_shape(name, caffe_shape):
    """caffe-tensorflow's layout of a layer's weights: conv [h, w, in/group, out], fc [in, out]."""
    if name in CONV_LAYERS:
        out, cin, h, w = caffe_shape
        return (h, w, cin, out)
    return tuple(reversed(caffe_shape))


NPY_SHAPES = {name: (_npy_shape(name, w), b) for name, (w, b) in CAFFE_SHAPES.items()}


def read_caffemodel(path):
    """{layer: (weights, biases)} in Caffe's layouts, checked against CAFFE_SHAPES, from a .caffemodel."""
    found, encoding = weights_files.read_caffemodel(path, CAFFE_SHAPES)
    return check_layers(found, CAFFE_SHAPES, path, f"Caffe's [out, in/group, h, w] and [out, in], "
                                                   f"{encoding} encoding")


def _squeeze_to(array, wanted):
    """The array reshaped to `wanted` when it differs only by dimensions of 1 (old Caffe's 4-D
    blobs: fc weights [1, 1, out, in], biases [1, 1, 1, out]), else None."""
    ones = lambda shape: [d for d in shape if d != 1]      # noqa: E731
    if array.shape == tuple(wanted):
        return array
    if ones(array.shape) == ones(wanted):
        return array.reshape(wanted)
    return None


def check_layers(found, table, path, layout):
    """Every layer of `table` present, each array of its shape (up to dimensions of 1), finite."""
    out = {}
    for name, shapes in table.items():
        if name not in found:
            raise DataError(f'{path}: layer {name} is missing (found {", ".join(sorted(found)) or "none"}); '
                            f'bvlc_alexnet has {", ".join(table)}')
        if isinstance(found[name], DataError):
            raise found[name]
        for array, wanted, what in zip(found[name], shapes, ('weights', 'biases')):
            array = np.asarray(array)
            fitted = _squeeze_to(array, wanted) if array.dtype.kind in 'fiu' else None
            if fitted is None:
                raise DataError(f'{path}: layer {name} {what}: found shape {shape_text(array.shape)} '
                                f'{array.dtype}, wanted {shape_text(wanted)} float ({layout})')
            if not np.isfinite(fitted).all():
                raise DataError(f'{path}: layer {name} {what} hold NaN or infinite values')
        out[name] = tuple(np.asarray(_squeeze_to(np.asarray(a), w), np.float32) for a, w in zip(found[name], shapes))
    return out


# --- caffe-tensorflow's .npy ---------------------------------------------------
def _npy_pair(value, name, path):
    if isinstance(value, dict):
        missing = [k for k in ('weights', 'biases') if k not in value]
        if missing:
            raise DataError(f'{path}: layer {name} has no {" or ".join(missing)} '
                            f'(keys: {", ".join(map(str, value))})')
        return value['weights'], value['biases']
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return value[0], value[1]
    raise DataError(f'{path}: layer {name} is a {type(value).__name__}, wanted [weights, biases] or '
                    f'{{"weights": ..., "biases": ...}}')


def npy_to_caffe(layers):
    """caffe-tensorflow's layouts back to Caffe's: conv [h, w, in, out] -> [out, in, h, w]; fc [in, out]
    -> [out, in], with fc6's rows from (h, w, c) back to Caffe's (c, h, w) columns."""
    out = {}
    p, c5 = POOL5_SIZE, CAFFE_SHAPES['conv5'][0][0]
    for name, (w, b) in layers.items():
        if name in CONV_LAYERS:
            w = w.transpose(3, 2, 0, 1)
        elif name == 'fc6':
            w = w.reshape(p, p, c5, -1).transpose(3, 2, 0, 1).reshape(w.shape[1], -1)
        else:
            w = w.T
        out[name] = (np.ascontiguousarray(w), b)
    return out


def read_npy(path):
    """{layer: (weights, biases)} in Caffe's layouts from a caffe-tensorflow .npy."""
    obj = weights_files.load_npy_dict(path)
    found = {k: _npy_pair(v, k, path) for k, v in obj.items() if k in NPY_SHAPES}     # keys: str, checked
    layout = "caffe-tensorflow's [h, w, in/group, out] and [in, out]"
    return npy_to_caffe(check_layers(found, NPY_SHAPES, path, layout))


def read_weights(path):
    """{layer: (weights, biases)} in Caffe's layouts from a .caffemodel or a caffe-tensorflow .npy."""
    if os.path.isdir(path):
        raise DataError(f'{path} is a folder: give the weights file itself (bvlc_alexnet.caffemodel or '
                        f'bvlc_alexnet.npy)')
    if not os.path.isfile(path):
        raise DataError(f'{path}: no such file (the name bvlc_alexnet, in place of a file, downloads Caffe\'s)')
    with open(path, 'rb') as f:
        head = f.read(8)
    if head.startswith(NPY_MAGIC):
        return read_npy(path)
    if head.startswith(HDF5_MAGIC):
        raise DataError(f'{path}: an HDF5 Caffe model; give the binary protobuf .caffemodel or a .npy')
    return read_caffemodel(path)


# --- Caffe's layers -> this project's variables --------------------------------
def to_variables(layers):
    """{variable name: array} of alexnet.inference's graph (conv1_a/weights, ..., fc8_b/biases) from
    {layer: (weights, biases)} in Caffe's layouts."""
    out = {}

    def put(layer, w, b, split):
        for t, part in zip(alexnet.TOWERS, (slice(0, split), slice(split, None))):
            out[f'{layer}_{t}/weights'] = np.ascontiguousarray(w[..., part], np.float32)
            out[f'{layer}_{t}/biases'] = np.ascontiguousarray(b[part], np.float32)

    for name in CONV_LAYERS:          # [out, in/group, h, w] -> [h, w, in/group, out]; tower a: first outputs
        w, b = layers[name]
        put(name, w.transpose(2, 3, 1, 0), b, w.shape[0] // 2)
    w, b = layers['fc6']              # columns (c, h, w), c = 0..255 of both towers -> rows [a (h, w, c), b (h, w, c)]
    c5, p = CAFFE_SHAPES['conv5'][0][0], POOL5_SIZE
    rows = w.reshape(w.shape[0], 2, c5 // 2, p, p).transpose(1, 3, 4, 2, 0).reshape(c5 * p * p, w.shape[0])
    put('fc6', rows, b, w.shape[0] // 2)
    for name in ('fc7', 'fc8'):
        w, b = layers[name]
        split = alexnet.split_classes(w.shape[0])[0] if name == 'fc8' else w.shape[0] // 2
        put(name, w.T, b, split)
    return out


# --- the checkpoint --------------------------------------------------------------
def read_classes(path=CLASSES_FILE):
    """(WNIDs, names) of imagenet_classes.txt: lines `nXXXXXXXX name, name`, sorted by WNID."""
    try:
        with open(path) as f:
            pairs = [line.rstrip('\n').split(' ', 1) for line in f if line.strip()]
    except OSError as e:
        raise DataError(f'{path}: cannot read the class list ({e.strerror})') from None
    wnids = [p[0] for p in pairs]
    if len(pairs) != NUM_CLASSES or any(len(p) != 2 for p in pairs) or wnids != sorted(set(wnids)):
        raise DataError(f'{path}: expected {NUM_CLASSES} lines "nXXXXXXXX name, name" in sorted WNID order')
    return wnids, [p[1] for p in pairs]


def build_meta(source, train_dir):
    """The checkpoint's JSON: a training run's keys (as train.py's Trainer.meta writes them, at step 0)
    plus source, lrn, lrn_across_towers, channel_order, mean and resize_mode (see the module docstring)."""
    wnids, names = read_classes()
    # settings.DEFAULTS: the args every run records
    args = dict(settings.DEFAULTS, dataset='imagenet', data_dir=None, train_dir=train_dir,
                num_classes=NUM_CLASSES, input_size=INPUT_SIZE, resize_size=RESIZE_SIZE, devices=DEVICES,
                precision='fp32', channel_order=CHANNEL_ORDER, resize_mode=RESIZE_MODE,
                mean=list(CAFFE_MEAN_RGB), **alexnet.lrn_record(alexnet.CAFFE_LRN))
    schedule = LearningRate.of(argparse.Namespace(**args)).state()   # as at a run's step 0
    return dict(args=args, dataset='imagenet', data_dir=None, class_names=names, class_ids=wnids,
                num_classes=NUM_CLASSES, input_size=INPUT_SIZE, resize_size=RESIZE_SIZE,
                mean=list(CAFFE_MEAN_RGB), epoch=0, steps_per_epoch=ILSVRC_TRAIN_IMAGES // args['batch_size'],
                learning_rate=args.get('lr'), schedule=schedule, best=None, precision='fp32', devices=DEVICES,
                step=0, source=source, **alexnet.lrn_record(alexnet.CAFFE_LRN), channel_order=CHANNEL_ORDER,
                resize_mode=RESIZE_MODE, plan=None, seconds_used=0.0)


def _existing_checkpoints(train_dir):
    folders = [train_dir] + [os.path.join(train_dir, d) for d in (checkpoints.BEST_DIR, checkpoints.FEATURES_DIR)]
    return [p for d in folders for p in checkpoints.list_checkpoints(d)]


def _refuse_existing(train_dir, overwrite):
    if os.path.exists(train_dir) and not os.path.isdir(train_dir):
        raise DataError(f'--train-dir {train_dir} is a file: give a folder')
    existing = _existing_checkpoints(train_dir)
    if existing and not overwrite:
        raise DataError(f'{train_dir} already holds checkpoints ({os.path.relpath(existing[0], train_dir)}): '
                        f'choose another --train-dir, or add --overwrite to delete them')


def _install(tmp, train_dir, overwrite):
    """Move the finished checkpoint from tmp into train_dir (under the run folder's lock): the old run's
    files go first (--overwrite), then data, index, JSON and TensorFlow's state file, so the checkpoint
    counts only once it is whole."""
    _refuse_existing(train_dir, overwrite)      # again: something may have been saved meanwhile
    if overwrite:
        checkpoints.delete_run(train_dir)
    order = lambda f: (f == checkpoints.STATE_FILE, f.endswith('.json'), f.endswith('.index'))  # noqa: E731
    for f in sorted(os.listdir(tmp), key=order, reverse=False):
        os.replace(os.path.join(tmp, f), os.path.join(train_dir, f))


def _remove_leftovers(train_dir):
    """Delete the temporary folders (IMPORT_TMP_PREFIX) of earlier imports that were killed; called
    under the run folder's lock, which every import holds while its folder exists."""
    for name in os.listdir(train_dir):
        path = os.path.join(train_dir, name)
        if name.startswith(IMPORT_TMP_PREFIX) and os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)


def _save_variables(variables, folder, meta):
    """Build alexnet.inference's graph (1000 classes, 227x227, on the CPU) with a global step of 0,
    give its variables the arrays and save them with checkpoints.save into `folder`."""
    import tensorflow as tf
    with tf.Graph().as_default():
        images = tf.compat.v1.placeholder(tf.float32, [1, INPUT_SIZE, INPUT_SIZE, 3], name='images')
        alexnet.inference(images, NUM_CLASSES, devices='/cpu:0')
        step = tf.compat.v1.train.get_or_create_global_step()
        model = {v.op.name: v for v in tf.compat.v1.trainable_variables()}
        if set(model) != set(variables):
            raise AssertionError(f'graph {sorted(model)} != imported {sorted(variables)}')
        feeds, assigns = {}, []
        for name, v in model.items():
            value = variables[name]
            if tuple(v.shape.as_list()) != value.shape:
                raise AssertionError(f'{name}: graph {v.shape}, imported {value.shape}')
            placeholder = tf.compat.v1.placeholder(tf.float32, value.shape)
            feeds[placeholder] = value
            assigns.append(v.assign(placeholder).op)
        saver = tf.compat.v1.train.Saver(list(model.values()) + [step])
        with tf.compat.v1.Session(config=parallel.session_config('fp32', DEVICES.split(','))) as sess:
            sess.run(step.initializer)
            sess.run(assigns, feeds)
            return checkpoints.save(sess, saver, folder, 0, meta, keep=1)


def write_checkpoint(variables, train_dir, meta, overwrite=False):
    """Save the variables in a temporary folder inside train_dir, then move the files in (_install),
    all under the run folder's lock (a trainer or another import at work there keeps us out; the
    leftovers of killed imports are deleted first). Returns the prefix. A folder this call made is
    removed again when it fails, so nothing is written outside train_dir, and nothing half-written."""
    made = not os.path.exists(train_dir)
    os.makedirs(train_dir, exist_ok=True)
    lock, done = FolderLock(train_dir), False
    try:
        _refuse_existing(train_dir, overwrite)
        _remove_leftovers(train_dir)
        tmp = tempfile.mkdtemp(prefix=IMPORT_TMP_PREFIX, dir=train_dir)
        try:
            written = _save_variables(variables, tmp, meta)
            _install(tmp, train_dir, overwrite)
            done = True
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        lock.release()
        if made and not done and os.listdir(train_dir) == [LOCK_FILE]:
            shutil.rmtree(train_dir, ignore_errors=True)
    return os.path.join(train_dir, os.path.basename(written))


def source_name(path):
    return f'{checkpoints.CAFFE_SOURCE}bvlc_alexnet ({os.path.basename(path)})'


def weights_file(name, cache_dir=None):
    """The weights file to read: `name` itself, or for a name of RELEASED (and no such file here) its download."""
    if name in RELEASED and not os.path.exists(name):
        return download.get(RELEASED[name], cache_dir)
    return name


def import_weights(path, train_dir, overwrite=False):
    """Read `path` (.caffemodel or .npy) and write train_dir/model.ckpt-0. Returns (prefix, parameters)."""
    _refuse_existing(train_dir, overwrite)
    variables = to_variables(read_weights(path))
    meta = build_meta(source_name(path), train_dir)
    prefix = write_checkpoint(variables, train_dir, meta, overwrite)
    return prefix, sum(v.size for v in variables.values())


def parser():
    p = cli.Parser(description="Import Caffe's bvlc_alexnet weights (.caffemodel, or caffe-tensorflow's .npy) as a "
                               "checkpoint of this project.")
    p.add_argument('weights', help="bvlc_alexnet.caffemodel or bvlc_alexnet.npy; or bvlc_alexnet: download Caffe's "
                                   "released file first (into the cache, reused after)")
    p.add_argument('--train-dir', default=os.path.join('runs', 'bvlc_alexnet'),
                   help='run folder to write model.ckpt-0 into (default runs/bvlc_alexnet)')
    p.add_argument('--overwrite', action='store_true',
                   help="delete the run already in --train-dir (its checkpoints, best/, features/, TensorBoard "
                        "files) once the new checkpoint is ready")
    p.add_argument('--cache-dir', help=f'where downloads go (default ${download.CACHE_ENV}, else '
                                       f'$XDG_CACHE_HOME/alexnet, else ~/.cache/alexnet)')
    return p


INTERRUPTED = 130          # the shell's status for a command stopped by Ctrl-C (128 + SIGINT)


def main(argv=None):
    a = parser().parse_args(argv)
    try:
        _refuse_existing(a.train_dir, a.overwrite)      # before a download of 233 MB
        a.weights = weights_file(a.weights, a.cache_dir)
        prefix, params = import_weights(a.weights, a.train_dir, a.overwrite)
    except DataError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1 if isinstance(e, download.DownloadFailed) else 2
    except OSError as e:
        print(f'error: {e.filename or a.weights}: {e.strerror or e}', file=sys.stderr)
        return 2
    except MemoryError:
        print(f'error: {a.weights}: out of memory while importing (about 1.5 GB is needed)', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('interrupted: nothing was imported (a download stopped halfway resumes when run again)',
              file=sys.stderr)
        return INTERRUPTED
    print(f'wrote {prefix} (.index, .data, .json) from {source_name(a.weights)}: {params:,} parameters')
    print(f'classify a photo with it: python classify.py PHOTO.jpg --train-dir {a.train_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
