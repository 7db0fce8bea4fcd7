"""Export a trained AlexNet as a TensorFlow SavedModel (serving) and TensorFlow Lite (edge devices).

    python export.py --out export/alexnet                        # SavedModel
    python export.py --out export/alexnet --tflite alexnet.tflite [--quantize int8]

The SavedModel holds the weights and the preprocessing (the same as `classify.py
--center`: shorter side to 256, the central square, the centre crop, minus the
training mean). Its signatures, each with outputs `probabilities` [N, C],
`top_k_indices` [N, k], `top_k_scores` [N, k] and `top_k_classes` [N, k] (class names),
and the features `features_fc7` [N, 4096] (after ReLU, before dropout) and
`features_pool5` [N, 9216 at 227] (features.py's, for retrieval and transfer learning):

    serving_default  images: uint8 [N, H, W, 3] RGB, any size (one size per batch)
    float_images     images: float32 [N, H, W, 3] RGB pixel values 0..255, any size (one size
                     per batch); the same preprocessing and outputs as serving_default
    encoded          image_bytes: string [N], encoded JPEG / PNG / BMP / GIF files
    crops            crops: float32 [N, s, s, 3] RGB 0..255, already centre-cropped
                     (outputs probabilities and top_k_indices only: the TFLite model's)

The TFLite model is the `crops` signature with N = 1; its class names are written
beside it (FILE without .tflite + _labels.txt), one per line. An existing class names
file is left as it is when it holds these names, and refused (before any work) when not.

Every output is written under a hidden temporary name beside it (.NAME.export-HOST-PID)
and renamed into place when whole: a kill leaves no half-written --out or .tflite,
and the next export removes the temporaries of exports whose process is gone.
"""
import os
import re
import shutil
import socket
import sys
import tempfile

import quiet  # noqa: F401  (first: keeps TensorFlow's start-up lines out of the output)
import numpy as np
import tensorflow as tf

import alexnet
import checkpoints
import cli
import datasets
import decoding
import evaluate
import preprocessing
import settings
from errors import DataError
from files import check_output_file, fsync_folder, process_running

CALIBRATION_IMAGES = 100  # representative images for the int8 quantization ranges
MAX_CALIBRATION_IMAGES = 100_000   # ranges need a few hundred; more is hours of conversion for nothing
PARTIAL = '.export-'      # marks the hidden temporary an output is written to: .NAME.export-HOST-PID


def parser():
    p = cli.Parser(description='Export a trained AlexNet as a SavedModel and/or TensorFlow Lite.')
    p.add_argument('--out', help='SavedModel folder to write (must not exist yet)')
    p.add_argument('--tflite', help='also (or only) write a TensorFlow Lite model to this file')
    p.add_argument('--quantize', choices=('int8',), help='TFLite: int8 weights and activations, their ranges '
                                                          'from the run\'s images (random pixels if none)')
    p.add_argument('--calibration-images', type=cli.whole(1, MAX_CALIBRATION_IMAGES), default=CALIBRATION_IMAGES,
                   help=f'images for the int8 ranges (default {CALIBRATION_IMAGES})')
    cli.add_checkpoint_flags(p)
    cli.add_top_k_flag(p, 'classes in the top-k outputs')
    return p


def parse_args(argv):
    return parser().parse_args(argv)


def centre_crops(images, meta, decode=False):
    """float32 [N, s, s, 3] centre crops (0..255, mean not subtracted) of a batch of uint8 or float32
    images (0..255), or of encoded image files (decode=True): classify.py --center's preprocessing."""
    size = meta['input_size']

    def crop(x):
        image = decoding.decode_image(x) if decode else x
        return preprocessing.eval_crops(image, size, (0.0, 0.0, 0.0), meta['resize_size'], 'center',
                                        resize_mode=preprocessing.model_input(meta)['resize_mode'])[0]
    return tf.map_fn(crop, images, fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))


def outputs(crops, meta, k, names=True):
    """The signature's outputs for float32 RGB centre crops [N, s, s, 3] in 0..255: the mean and, for a network
    that reads BGR (imported Caffe weights), the channel swap happen inside, so every model takes RGB.
    names=False: the TFLite model's two outputs only."""
    images = crops - tf.constant(meta['mean'], tf.float32)
    if preprocessing.model_input(meta)['bgr']:
        images = tf.reverse(images, [-1])
    ends = {}
    logits = alexnet.inference(images, meta['num_classes'], devices='/cpu:0',   # saved without devices, below
                               portable=True,   # TensorFlow's LRN op: TFLite has it built in
                               lrn_constants=alexnet.lrn_of(meta), endpoints=ends)
    probs = tf.nn.softmax(logits)
    scores, indices = tf.math.top_k(probs, k)
    out = {'probabilities': probs, 'top_k_indices': indices}
    if names:
        out.update(top_k_scores=scores, top_k_classes=tf.gather(tf.constant(meta['class_names']), indices),
                   features_fc7=ends['fc7'], features_pool5=ends['pool5'])
    return out


def write_saved_model(prefix, meta, out, k):
    """The SavedModel, from a TF1 graph with the checkpoint's weights (TF1 builder, four signatures)."""
    tf.get_logger().setLevel('ERROR')     # the TF1 builder's deprecation notices are not the user's concern
    signature = tf.compat.v1.saved_model.signature_def_utils.predict_signature_def
    size = meta['input_size']
    with tf.Graph().as_default():
        images = tf.compat.v1.placeholder(tf.uint8, [None, None, None, 3], name='images')
        float_images = tf.compat.v1.placeholder(tf.float32, [None, None, None, 3], name='float_images')
        image_bytes = tf.compat.v1.placeholder(tf.string, [None], name='image_bytes')
        crops = tf.compat.v1.placeholder(tf.float32, [None, size, size, 3], name='crops')
        with tf.compat.v1.variable_scope(tf.compat.v1.get_variable_scope(), reuse=tf.compat.v1.AUTO_REUSE):
            served = outputs(centre_crops(images, meta), meta, k)      # four graphs on the same weights
            from_floats = outputs(centre_crops(float_images, meta), meta, k)
            from_bytes = outputs(centre_crops(image_bytes, meta, decode=True), meta, k)
            from_crops = outputs(crops, meta, k, names=False)
        with tf.compat.v1.Session() as sess:
            evaluate.restore_weights(sess, prefix)
            builder = tf.compat.v1.saved_model.Builder(out)
            builder.add_meta_graph_and_variables(
                sess, [tf.compat.v1.saved_model.tag_constants.SERVING], clear_devices=True,
                signature_def_map={'serving_default': signature({'images': images}, served),
                                   'float_images': signature({'images': float_images}, from_floats),
                                   'encoded': signature({'image_bytes': image_bytes}, from_bytes),
                                   'crops': signature({'crops': crops}, from_crops)})
            builder.save()
    os.makedirs(os.path.join(out, 'assets'), exist_ok=True)
    with open(os.path.join(out, 'assets', 'class_names.txt'), 'w') as f:
        f.write(labels_text(meta))


def labels_text(meta):
    """The class names, one per line (the SavedModel's assets/class_names.txt, the TFLite model's labels)."""
    return ''.join(f'{name}\n' for name in meta['class_names'])


def labels_path(tflite):
    """Where the TFLite model's class names go: beside it, FILE without .tflite + _labels.txt."""
    return os.path.splitext(tflite)[0] + '_labels.txt'


def check_labels(path, meta):
    """A DataError unless the class names can be written at path: nothing there, or a file of these names."""
    if not os.path.lexists(path):
        return
    same = False
    if os.path.isfile(path):                    # not a folder, a FIFO (whose open would wait) or a loop
        try:
            with open(path) as f:
                same = f.read() == labels_text(meta)
        except (OSError, UnicodeDecodeError):   # unreadable, not text
            pass
    if not same:
        raise DataError(f'{path} exists with other contents than these {meta["num_classes"]} class names (the '
                        f'TFLite model\'s labels go there): move it away or choose another --tflite name')


# ---------------------------------------------------------------- written whole or not at all

def folder_of(path):
    """The folder a path is in."""
    return os.path.dirname(os.path.abspath(path))


def partial(path):
    """The hidden temporary beside path that the output is written to before it is renamed into place."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f'.{name}{PARTIAL}{socket.gethostname()}-{os.getpid()}')


def remove_leftovers(folder):
    """Remove from folder the temporaries of exports on this machine that were killed (process gone)."""
    mine = re.compile(rf'\..+{re.escape(PARTIAL + socket.gethostname())}-(\d+)')
    for entry in os.scandir(folder):
        found = mine.fullmatch(entry.name)
        if found and not process_running(int(found.group(1))):
            remove(entry.path)


def remove(path):
    """Remove a file or a folder tree, if there."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def write_file(path, data):
    """Write bytes to path whole: a kill leaves the old file (or none), never a part of the new one."""
    remove_leftovers(folder_of(path))
    tmp = partial(path)
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        remove(tmp)
    fsync_folder(folder_of(path))


def calibration_crops(meta, count):
    """Up to count float32 [1, s, s, 3] centre crops (0..255) of the run's images for the int8 ranges;
    random pixels when the run's dataset cannot be loaded (synthetic runs, data moved)."""
    split = None
    try:
        if meta['dataset'] != 'synthetic':
            ds = settings.run_dataset(meta)
            split = ds.val or ds.train
    except DataError as e:
        print(f'note: {e}; the int8 ranges come from random pixels instead')
    if split is None:
        rng = np.random.default_rng(0)
        for _ in range(count):
            yield rng.uniform(0, 255, [1, meta['input_size'], meta['input_size'], 3]).astype(np.float32)
        return
    if split.records is None and len(split) > count:       # spread over the split: folders are sorted by class
        pick = np.linspace(0, len(split) - 1, count).astype(int)
        files = None if split.files is None else [split.files[i] for i in pick]
        images = None if split.images is None else split.images[pick]
        split = datasets.Split(split.labels[pick], files=files, images=images)
    batches = preprocessing.eval_dataset(split, 1, meta['input_size'], (0.0, 0.0, 0.0), meta['resize_size'], 'center',
                                         resize_mode=preprocessing.model_input(meta)['resize_mode'])
    for crops, _ in batches.take(count):
        yield crops.numpy()[:, 0]


def write_tflite(saved_model, meta, path, quantize=None, count=CALIBRATION_IMAGES):
    """A TFLite model of the `crops` signature, input float32 [1, s, s, 3], and its class names beside it."""
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=['crops'])
    if quantize == 'int8':
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([c] for c in calibration_crops(meta, count))
    write_file(path, converter.convert())
    if not os.path.exists(labels_path(path)):          # check_labels: if there, it holds these names
        write_file(labels_path(path), labels_text(meta).encode())


def size_of(path):
    total = os.path.getsize(path) if os.path.isfile(path) else sum(
        os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
    return f'{total / 2 ** 20:.1f} MiB'


def make_room(out):
    """The temporary folder beside --out to write the SavedModel in, --out's parents made, the leftovers of
    killed exports removed there."""
    try:
        os.makedirs(folder_of(out), exist_ok=True)
    except OSError as e:
        raise DataError(f'--out {out}: cannot make its folder: {e.strerror or e}') from None
    remove_leftovers(folder_of(out))
    remove(partial(out))           # a leftover of an earlier process with this id (before a restart)
    return partial(out)


def put_in_place(tmp, out):
    """Rename the whole SavedModel folder tmp to out (which must still not exist)."""
    if os.path.lexists(out):
        raise DataError(f'{out} appeared while exporting: choose a new --out folder or remove it')
    os.rename(tmp, out)
    fsync_folder(folder_of(out))


def check(a):
    """Every refusal before the work starts; returns the checkpoint (prefix, meta)."""
    if not a.out and not a.tflite:
        raise DataError('nothing to write: give --out DIR (SavedModel) and/or --tflite FILE')
    if a.quantize and not a.tflite:
        raise DataError('--quantize applies to the TFLite model: add --tflite FILE')
    if a.out and os.path.lexists(a.out):
        raise DataError(f'{a.out} already exists: choose a new --out folder or remove it')
    prefix, meta = checkpoints.for_use(a.train_dir, a.checkpoint)
    if a.tflite:
        check_output_file(a.tflite, '--tflite', 'tflite', cli.checkpoint_files(prefix))
        check_labels(labels_path(a.tflite), meta)
    return prefix, meta


def export(a, prefix, meta):
    """Write the SavedModel (beside --out, renamed into place at the end; without --out, in a temporary
    folder) and the TFLite model converted from it."""
    with tempfile.TemporaryDirectory() as tmp:
        out = make_room(a.out) if a.out else os.path.join(tmp, 'saved_model')
        try:
            write_saved_model(prefix, meta, out, min(a.top_k, meta['num_classes']))
            if a.tflite:
                write_tflite(out, meta, a.tflite, a.quantize, a.calibration_images)
            if a.out:
                put_in_place(out, a.out)
        finally:
            remove(out)


def main(argv=None):
    cli.one_line_warnings()
    a = parse_args(argv)
    try:
        prefix, meta = check(a)
        export(a, prefix, meta)
    except DataError as e:
        return cli.fail(e)
    if a.out:
        print(f'SavedModel {a.out} ({size_of(a.out)}) from {prefix}: signatures serving_default '
              f'(uint8 images), float_images (float32 images 0..255), encoded (image bytes), crops '
              f'(float32 {meta["input_size"]}x{meta["input_size"]} centre crops)')
    if a.tflite:
        print(f'TFLite {a.tflite} ({size_of(a.tflite)}{", int8" if a.quantize else ""}): input float32 '
              f'[1, {meta["input_size"]}, {meta["input_size"]}, 3] centre crop, RGB 0..255; '
              f'class names in {labels_path(a.tflite)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
