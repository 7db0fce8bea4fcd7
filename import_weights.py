"""Import Caffe's released bvlc_alexnet weights as a checkpoint of this project (issue 17).

    python import_weights.py bvlc_alexnet.caffemodel --train-dir runs/bvlc_alexnet
    python import_weights.py bvlc_alexnet.npy --train-dir runs/bvlc_alexnet [--overwrite]

writes runs/bvlc_alexnet/model.ckpt-0.{index,data-*} and model.ckpt-0.json, a checkpoint
like a training run's at step 0: test.py, classify.py, export.py and train.py --model_path
read it as they read their own.

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
    (h, w, c) order). Its pickle is read by a restricted unpickler that builds numpy
    arrays, dtypes and scalars and nothing else: a file asking for any other callable
    (os.system, ...) is refused before anything runs.

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
                   build the graph with alexnet.inference(..., lrn_constants=meta['lrn'])
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

One departure is not a constant: Caffe's norm1 and norm2 windows span all 96 and 256
maps, while this project's towers normalise their own 48 and 128 (the paper's two GPUs),
so the two maps on each side of the tower boundary see a slightly different sum.

train_dir must hold no checkpoint (--overwrite deletes the run there, as train.py -scratch
--overwrite does, once the new checkpoint is ready); the new one is written in a temporary
folder beside train_dir and moved in under the run folder's lock, so an error or an
interruption leaves nothing half-written. About 1.5 GB of memory and 25 s on a CPU.
"""
import quiet  # noqa: F401  (first: keeps TensorFlow's start-up lines out of the output)

import argparse
import math
import os
import pickle
import shutil
import sys
import tempfile

import numpy as np

import alexnet
import checkpoints
import parallel
import settings
from datasets import DataError
from files import FolderLock
from schedule import LearningRate

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
V1_CONVOLUTION, V1_INNER_PRODUCT = 4, 14                               # V1LayerParameter.LayerType
LAYER_TYPES = {'conv': 'Convolution', 'fc': 'InnerProduct'}          # LayerParameter.type
NPY_MAGIC = b'\x93NUMPY'
HDF5_MAGIC = b'\x89HDF'


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


def _shape_text(shape):
    return '[' + ', '.join(str(int(d)) for d in shape) + ']'


# --- Caffe's protobuf messages, built in code --------------------------------
_MESSAGES = None


def caffe_messages():
    """Message classes {'NetParameter', 'LayerParameter', 'V1LayerParameter', 'BlobProto', 'BlobShape'}
    with Caffe's field numbers (caffe.proto), declared only as far as this import reads them.
    Built in a private descriptor pool, so they clash with no other 'caffe' package."""
    global _MESSAGES
    if _MESSAGES is not None:
        return _MESSAGES
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name='alexnet_import_caffe.proto', package='caffe',
                                               syntax='proto2')

    def message(name, fields, enums=()):
        m = proto.message_type.add(name=name)
        for enum_name, values in enums:
            e = m.enum_type.add(name=enum_name)
            for value_name, number in values:
                e.value.add(name=value_name, number=number)
        for field_name, number, kind, label, type_name, packed in fields:
            f = m.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                f.type_name = type_name
            if packed:
                f.options.packed = True

    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    message('BlobShape', [('dim', 1, F.TYPE_INT64, rep, None, True)])
    message('BlobProto', [('num', 1, F.TYPE_INT32, opt, None, False),
                          ('channels', 2, F.TYPE_INT32, opt, None, False),
                          ('height', 3, F.TYPE_INT32, opt, None, False),
                          ('width', 4, F.TYPE_INT32, opt, None, False),
                          ('data', 5, F.TYPE_FLOAT, rep, None, True),
                          ('shape', 7, F.TYPE_MESSAGE, opt, '.caffe.BlobShape', False)])
    message('LayerParameter', [('name', 1, F.TYPE_STRING, opt, None, False),
                               ('type', 2, F.TYPE_STRING, opt, None, False),
                               ('blobs', 7, F.TYPE_MESSAGE, rep, '.caffe.BlobProto', False)])
    # V1LayerParameter.LayerType, all of caffe.proto's values (test files write the non-weight layers too)
    layer_types = [('NONE', 0), ('ABSVAL', 35), ('ACCURACY', 1), ('ARGMAX', 30), ('BNLL', 2), ('CONCAT', 3),
                   ('CONTRASTIVE_LOSS', 37), ('CONVOLUTION', V1_CONVOLUTION), ('DATA', 5),
                   ('DECONVOLUTION', 39), ('DROPOUT', 6), ('DUMMY_DATA', 32), ('EUCLIDEAN_LOSS', 7),
                   ('ELTWISE', 25), ('EXP', 38), ('FLATTEN', 8), ('HDF5_DATA', 9), ('HDF5_OUTPUT', 10),
                   ('HINGE_LOSS', 28), ('IM2COL', 11), ('IMAGE_DATA', 12), ('INFOGAIN_LOSS', 13),
                   ('INNER_PRODUCT', V1_INNER_PRODUCT), ('LRN', 15), ('MEMORY_DATA', 29),
                   ('MULTINOMIAL_LOGISTIC_LOSS', 16), ('MVN', 34), ('POOLING', 17), ('POWER', 26),
                   ('RELU', 18), ('SIGMOID', 19), ('SIGMOID_CROSS_ENTROPY_LOSS', 27), ('SILENCE', 36),
                   ('SOFTMAX', 20), ('SOFTMAX_LOSS', 21), ('SPLIT', 22), ('SLICE', 33), ('TANH', 23),
                   ('WINDOW_DATA', 24), ('THRESHOLD', 31)]
    message('V1LayerParameter', [('name', 4, F.TYPE_STRING, opt, None, False),
                                 ('type', 5, F.TYPE_ENUM, opt, '.caffe.V1LayerParameter.LayerType', False),
                                 ('blobs', 6, F.TYPE_MESSAGE, rep, '.caffe.BlobProto', False)],
            enums=[('LayerType', layer_types)])
    message('NetParameter', [('name', 1, F.TYPE_STRING, opt, None, False),
                             ('layers', 2, F.TYPE_MESSAGE, rep, '.caffe.V1LayerParameter', False),
                             ('layer', 100, F.TYPE_MESSAGE, rep, '.caffe.LayerParameter', False)])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    _MESSAGES = {m.name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f'caffe.{m.name}'))
                 for m in proto.message_type}
    return _MESSAGES


def _blob_array(blob, where):
    """A BlobProto's values, shaped by `shape` (current Caffe) or num/channels/height/width (old)."""
    if blob.HasField('shape'):
        dims = [int(d) for d in blob.shape.dim]
    else:
        dims = [blob.num, blob.channels, blob.height, blob.width]
        while len(dims) > 1 and dims[0] == 0:      # unset leading fields of a short legacy blob
            dims = dims[1:]
    data = np.array(blob.data, np.float32)
    if data.size != math.prod(dims):
        raise DataError(f'{where} holds {data.size} values for its shape {_shape_text(dims)}: the file is '
                        f'truncated or not a Caffe model')
    return data.reshape(dims)


def read_caffemodel(path):
    """{layer: (weights, biases)} in Caffe's layouts, checked against CAFFE_SHAPES, from a .caffemodel."""
    messages = caffe_messages()
    from google.protobuf.message import DecodeError
    with open(path, 'rb') as f:
        content = f.read()
    net = messages['NetParameter']()
    try:
        net.ParseFromString(content)
    except (DecodeError, RuntimeError, ValueError) as e:
        from google.protobuf.internal import api_implementation
        hint = ''
        if len(content) > 64 << 20 and api_implementation.Type() == 'cpp':
            hint = ("; protobuf's old C++ backend may stop at 64 MB: upgrade protobuf or run with "
                    "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python")
        raise DataError(f'{path}: not a Caffe model (a NetParameter protobuf), or truncated: {e}{hint}') from None
    del content
    if len(net.layer):
        layers, encoding = net.layer, 'layer'
        kind_of = lambda layer: layer.type                            # noqa: E731
    elif len(net.layers):
        layers, encoding = net.layers, 'layers'
        v1_names = {V1_CONVOLUTION: LAYER_TYPES['conv'], V1_INNER_PRODUCT: LAYER_TYPES['fc']}
        kind_of = lambda layer: v1_names.get(layer.type, f'V1 type {layer.type}')   # noqa: E731
    else:
        raise DataError(f'{path}: not a Caffe model: no layers in it (NetParameter field 100 or 2)')
    found = {}
    for layer in layers:
        if layer.name not in CAFFE_SHAPES:
            continue                              # data, relu, norm, pool, dropout, softmax: no weights
        if layer.name in found:
            raise DataError(f'{path}: layer {layer.name} appears twice')
        wanted_type = LAYER_TYPES['conv' if layer.name.startswith('conv') else 'fc']
        try:                                      # a problem is reported in the table's order (check_layers)
            if kind_of(layer) != wanted_type:
                raise DataError(f'{path}: layer {layer.name} is a {kind_of(layer)} layer, wanted {wanted_type}')
            if len(layer.blobs) != 2:
                raise DataError(f'{path}: layer {layer.name} has {len(layer.blobs)} blobs, wanted 2 '
                                f'(weights and biases)')
            found[layer.name] = tuple(_blob_array(b, f'{path}: layer {layer.name} {what}')
                                      for b, what in zip(layer.blobs, ('weights', 'biases')))
        except DataError as e:
            found[layer.name] = e
    del net
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
                raise DataError(f'{path}: layer {name} {what}: found shape {_shape_text(array.shape)} '
                                f'{array.dtype}, wanted {_shape_text(wanted)} float ({layout})')
            if not np.isfinite(fitted).all():
                raise DataError(f'{path}: layer {name} {what} hold NaN or infinite values')
        out[name] = tuple(np.asarray(_squeeze_to(np.asarray(a), w), np.float32) for a, w in zip(found[name], shapes))
    return out


# --- caffe-tensorflow's .npy ---------------------------------------------------
def _allowed_globals():
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]    # numpy's _reconstruct, wherever this numpy keeps it
    scalar = np.float32(0).__reduce__()[0]                   # numpy's scalar constructor
    allowed = {}
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):   # numpy 1.x and 2.x pickles
        allowed[module, '_reconstruct'] = reconstruct
        allowed[module, 'scalar'] = scalar
    allowed['numpy', 'ndarray'] = np.ndarray
    allowed['numpy', 'dtype'] = np.dtype
    return allowed


class RefusedPickle(pickle.UnpicklingError):
    pass


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, dtypes, scalars and the builtin containers; refuses every other global."""
    ALLOWED = _allowed_globals()

    def find_class(self, module, name):
        try:
            return self.ALLOWED[module, name]
        except KeyError:
            raise RefusedPickle(f'{module}.{name}') from None

    def persistent_load(self, pid):
        raise RefusedPickle(f'persistent id {pid!r}')


def load_npy_dict(path):
    """The dict pickled in a .npy file, read without np.load(allow_pickle=True): the header by
    numpy's format functions, the payload by ArrayUnpickler."""
    fmt = np.lib.format
    with open(path, 'rb') as f:
        try:
            version = fmt.read_magic(f)
            read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read_header(f)
        except ValueError as e:
            raise DataError(f'{path}: not a readable .npy file ({e})') from None
        if not dtype.hasobject:
            raise DataError(f'{path}: holds a {dtype} array of shape {_shape_text(shape)}, not caffe-tensorflow\'s '
                            f'pickled dict of layers')
        try:
            obj = ArrayUnpickler(f, encoding='latin1').load()     # latin1: Python 2 pickles, as the released file
        except RefusedPickle as e:
            raise DataError(f'{path}: refused: its pickle asks for {e}, which is not numpy array data '
                            f'(nothing was run)') from None
        except Exception as e:          # truncated or corrupt pickle: any error the unpickler raises
            raise DataError(f'{path}: unreadable pickled payload ({type(e).__name__}: {e})') from None
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject and obj.size == 1:
        obj = obj.reshape(()).item()
    if not isinstance(obj, dict):
        raise DataError(f'{path}: holds a {type(obj).__name__}, not caffe-tensorflow\'s dict of layers')
    return obj


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
    obj = load_npy_dict(path)
    found = {str(k): _npy_pair(v, str(k), path) for k, v in obj.items() if str(k) in NPY_SHAPES}
    layout = "caffe-tensorflow's [h, w, in/group, out] and [in, out]"
    return npy_to_caffe(check_layers(found, NPY_SHAPES, path, layout))


def read_weights(path):
    """{layer: (weights, biases)} in Caffe's layouts from a .caffemodel or a caffe-tensorflow .npy."""
    if not os.path.isfile(path):
        raise DataError(f'{path}: no such file')
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
    plus source, lrn, channel_order, mean and resize_mode (see the module docstring)."""
    wnids, names = read_classes()
    # settings.DEFAULTS: the args every run records
    args = dict(settings.DEFAULTS, dataset='imagenet', data_dir=None, train_dir=train_dir,
                num_classes=NUM_CLASSES, input_size=INPUT_SIZE, resize_size=RESIZE_SIZE, devices=DEVICES,
                precision='fp32', lrn=list(alexnet.CAFFE_LRN), channel_order=CHANNEL_ORDER, resize_mode=RESIZE_MODE,
                mean=list(CAFFE_MEAN_RGB))
    schedule = LearningRate.of(argparse.Namespace(**args)).state()   # as at a run's step 0
    return dict(args=args, dataset='imagenet', data_dir=None, class_names=names, class_ids=wnids,
                num_classes=NUM_CLASSES, input_size=INPUT_SIZE, resize_size=RESIZE_SIZE,
                mean=list(CAFFE_MEAN_RGB), epoch=0, steps_per_epoch=ILSVRC_TRAIN_IMAGES // args['batch_size'],
                learning_rate=args.get('lr'), schedule=schedule, best=None, precision='fp32', devices=DEVICES,
                step=0, source=source, lrn=list(alexnet.CAFFE_LRN), channel_order=CHANNEL_ORDER,
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
    """Move the finished checkpoint from tmp into train_dir, under the run-folder lock (a trainer at
    work there keeps us out): the old run's files go first (--overwrite), then data, index, JSON and
    TensorFlow's state file, so the checkpoint counts only once it is whole."""
    os.makedirs(train_dir, exist_ok=True)
    lock = FolderLock(train_dir)
    try:
        _refuse_existing(train_dir, overwrite)      # again: something may have been saved meanwhile
        if overwrite:
            checkpoints.delete_run(train_dir)
        order = lambda f: (f == checkpoints.STATE_FILE, f.endswith('.json'), f.endswith('.index'))  # noqa: E731
        for f in sorted(os.listdir(tmp), key=order, reverse=False):
            os.replace(os.path.join(tmp, f), os.path.join(train_dir, f))
    finally:
        lock.release()


def write_checkpoint(variables, train_dir, meta, overwrite=False):
    """Build alexnet.inference's graph (1000 classes, 227x227, on the CPU) with a global step of 0,
    give its variables the arrays and save them with checkpoints.save into a temporary folder
    beside train_dir, then move the files in (_install). Returns the prefix."""
    import tensorflow as tf
    parent = os.path.dirname(os.path.abspath(train_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{os.path.basename(os.path.abspath(train_dir))}.import-', dir=parent)
    try:
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
                written = checkpoints.save(sess, saver, tmp, 0, meta, keep=1)
        _install(tmp, train_dir, overwrite)
        return os.path.join(train_dir, os.path.basename(written))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def source_name(path):
    return f'caffe bvlc_alexnet ({os.path.basename(path)})'


def import_weights(path, train_dir, overwrite=False):
    """Read `path` (.caffemodel or .npy) and write train_dir/model.ckpt-0. Returns (prefix, parameters)."""
    _refuse_existing(train_dir, overwrite)
    variables = to_variables(read_weights(path))
    meta = build_meta(source_name(path), train_dir)
    prefix = write_checkpoint(variables, train_dir, meta, overwrite)
    return prefix, sum(v.size for v in variables.values())


def main(argv=None):
    p = argparse.ArgumentParser(description="Import Caffe's bvlc_alexnet weights (.caffemodel, or "
                                            "caffe-tensorflow's .npy) as a checkpoint of this project.")
    p.add_argument('weights', help='bvlc_alexnet.caffemodel or bvlc_alexnet.npy')
    p.add_argument('--train-dir', default=os.path.join('runs', 'bvlc_alexnet'),
                   help='run folder to write model.ckpt-0 into (default runs/bvlc_alexnet)')
    p.add_argument('--overwrite', action='store_true',
                   help="delete the run already in --train-dir (its checkpoints, best/, features/, TensorBoard "
                        "files) once the new checkpoint is ready")
    a = p.parse_args(argv)
    try:
        prefix, params = import_weights(a.weights, a.train_dir, a.overwrite)
    except DataError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    except OSError as e:
        print(f'error: {e.filename or a.weights}: {e.strerror or e}', file=sys.stderr)
        return 2
    except MemoryError:
        print(f'error: {a.weights}: out of memory while importing (about 1.5 GB is needed)', file=sys.stderr)
        return 2
    print(f'wrote {prefix} (.index, .data, .json) from {source_name(a.weights)}: {params:,} parameters')
    return 0


if __name__ == '__main__':
    sys.exit(main())
