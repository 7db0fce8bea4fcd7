"""Export a trained AlexNet as a TensorFlow SavedModel (serving) and TensorFlow Lite (edge devices).

    python export.py --out export/alexnet                        # SavedModel
    python export.py --out export/alexnet --tflite alexnet.tflite [--quantize int8]

The SavedModel holds the weights and the preprocessing (the same as `classify.py
--center`: shorter side to 256, the central square, the centre crop, minus the
training mean). Its signatures, each with outputs `probabilities` [N, C],
`top_k_indices` [N, k], `top_k_scores` [N, k] and `top_k_classes` [N, k] (class names):

    serving_default  images: uint8 [N, H, W, 3] RGB, any size (one size per batch)
    float_images     images: float32 [N, H, W, 3] RGB pixel values 0..255, any size (one size
                     per batch); the same preprocessing and outputs as serving_default
    encoded          image_bytes: string [N], encoded JPEG / PNG / BMP / GIF files
    crops            crops: float32 [N, s, s, 3] RGB 0..255, already centre-cropped
                     (outputs probabilities and top_k_indices only: the TFLite model's)

The TFLite model is the `crops` signature with N = 1; its class names are written
beside it (FILE without .tflite + _labels.txt), one per line.
"""
import os
import sys
import tempfile

import quiet  # noqa: F401  (first: keeps TensorFlow's start-up lines out of the output)
import numpy as np
import tensorflow as tf

import alexnet
import checkpoints
import cli
import data
import datasets
import decoding
import evaluate
import preprocessing
from datasets import DataError

CALIBRATION_IMAGES = 100  # representative images for the int8 quantization ranges


def parse_args(argv):
    p = cli.Parser(description='Export a trained AlexNet as a SavedModel and/or TensorFlow Lite.')
    p.add_argument('--out', help='SavedModel folder to write (must not exist yet)')
    p.add_argument('--tflite', help='also (or only) write a TensorFlow Lite model to this file')
    p.add_argument('--quantize', choices=('int8',), help='TFLite: int8 weights and activations, their ranges '
                                                          'from the run\'s images (random pixels if none)')
    p.add_argument('--calibration-images', type=int, default=CALIBRATION_IMAGES,
                   help=f'images for the int8 ranges (default {CALIBRATION_IMAGES})')
    cli.add_checkpoint_flags(p)
    cli.add_top_k_flag(p, 'classes in the top-k outputs')
    return p.parse_args(argv)


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
    that reads BGR (imported Caffe weights), the channel swap happen inside, so every model takes RGB."""
    images = crops - tf.constant(meta['mean'], tf.float32)
    if preprocessing.model_input(meta)['bgr']:
        images = tf.reverse(images, [-1])
    logits = alexnet.inference(images, meta['num_classes'], devices='/cpu:0',   # saved without devices, below
                               portable=True,   # TensorFlow's LRN op: TFLite has it built in
                               lrn_constants=evaluate.lrn_constants(meta))
    probs = tf.nn.softmax(logits)
    scores, indices = tf.math.top_k(probs, k)
    out = {'probabilities': probs, 'top_k_indices': indices}
    if names:
        out.update(top_k_scores=scores, top_k_classes=tf.gather(tf.constant(meta['class_names']), indices))
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
    write_labels(os.path.join(out, 'assets', 'class_names.txt'), meta)


def write_labels(path, meta):
    with open(path, 'w') as f:
        f.write(''.join(f'{name}\n' for name in meta['class_names']))


def calibration_crops(meta, count):
    """Up to count float32 [1, s, s, 3] centre crops (0..255) of the run's images for the int8 ranges;
    random pixels when the run's dataset cannot be loaded (synthetic runs, data moved)."""
    split = None
    try:
        if meta['dataset'] != 'synthetic':
            args = meta.get('args', {})
            ds = data.load_dataset(meta['dataset'], meta.get('data_dir'), val_size=args.get('val_size', 5000),
                                       seed=args.get('seed', 0), md5=args.get('md5'))
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
    """A TFLite model of the `crops` signature, input float32 [1, s, s, 3]."""
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=['crops'])
    if quantize == 'int8':
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([c] for c in calibration_crops(meta, count))
    model = converter.convert()
    with open(path, 'wb') as f:
        f.write(model)
    labels = os.path.splitext(path)[0] + '_labels.txt'
    write_labels(labels, meta)
    return labels


def size_of(path):
    total = os.path.getsize(path) if os.path.isfile(path) else sum(
        os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
    return f'{total / 2 ** 20:.1f} MiB'


def main(argv=None):
    cli.one_line_warnings()
    a = parse_args(argv)
    try:
        if not a.out and not a.tflite:
            raise DataError('nothing to write: give --out DIR (SavedModel) and/or --tflite FILE')
        if a.quantize and not a.tflite:
            raise DataError('--quantize applies to the TFLite model: add --tflite FILE')
        if a.out and os.path.exists(a.out):
            raise DataError(f'{a.out} already exists: choose a new --out folder or remove it')
        if a.top_k < 1:
            raise DataError(f'--top-k must be at least 1, got {a.top_k}')
        prefix, meta = checkpoints.for_use(a.train_dir, a.checkpoint)
        k = min(a.top_k, meta['num_classes'])
        with tempfile.TemporaryDirectory() as tmp:
            out = a.out or os.path.join(tmp, 'saved_model')
            write_saved_model(prefix, meta, out, k)
            if a.out:
                print(f'SavedModel {a.out} ({size_of(a.out)}) from {prefix}: signatures serving_default '
                      f'(uint8 images), float_images (float32 images 0..255), encoded (image bytes), crops '
                      f'(float32 {meta["input_size"]}x{meta["input_size"]} centre crops)')
            if a.tflite:
                labels = write_tflite(out, meta, a.tflite, a.quantize, a.calibration_images)
                print(f'TFLite {a.tflite} ({size_of(a.tflite)}{", int8" if a.quantize else ""}): input float32 '
                      f'[1, {meta["input_size"]}, {meta["input_size"]}, 3] centre crop, RGB 0..255; '
                      f'class names in {labels}')
    except DataError as e:
        return cli.fail(e)
    return 0


if __name__ == '__main__':
    sys.exit(main())
