"""import_weights.py: Caffe's bvlc_alexnet (.caffemodel in both encodings, caffe-tensorflow's .npy)
becomes a checkpoint whose network computes what Caffe's does.

The files are written here, with random weights of bvlc_alexnet's shapes at a realistic scale,
using import_weights' code-built message classes (declared as caffe.proto declares them). The
reference forward pass is written from Caffe's layer definitions in NumPy (NCHW, BGR, groups,
Caffe's LRN), independently of alexnet.py.
"""
import dataclasses
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf
from numpy.lib.stride_tricks import sliding_window_view

import alexnet
import checkpoints
import import_weights
import settings
import trainer
import weights_files
from files import FolderLock
from test_download import MODEL, serve  # noqa: F401  (serve: the local HTTP server fixture)

REPO = Path(__file__).resolve().parents[1]
VAL_IMAGES = sorted((REPO / 'tests' / 'data' / 'imagenet' / 'val').glob('*.JPEG'))

# bvlc_alexnet's blobs, written out from its deploy.prototxt (not taken from the module under test)
CAFFE = {'conv1': ((96, 3, 11, 11), (96,)), 'conv2': ((256, 48, 5, 5), (256,)),
         'conv3': ((384, 256, 3, 3), (384,)), 'conv4': ((384, 192, 3, 3), (384,)),
         'conv5': ((256, 192, 3, 3), (256,)), 'fc6': ((4096, 9216), (4096,)),
         'fc7': ((4096, 4096), (4096,)), 'fc8': ((1000, 4096), (1000,))}
# name, V1 type, new type: the deploy net's layers, weightless ones included
NET = [('data', 'DATA', 'Data'), ('conv1', 'CONVOLUTION', 'Convolution'), ('relu1', 'RELU', 'ReLU'),
       ('norm1', 'LRN', 'LRN'), ('pool1', 'POOLING', 'Pooling'), ('conv2', 'CONVOLUTION', 'Convolution'),
       ('relu2', 'RELU', 'ReLU'), ('norm2', 'LRN', 'LRN'), ('pool2', 'POOLING', 'Pooling'),
       ('conv3', 'CONVOLUTION', 'Convolution'), ('relu3', 'RELU', 'ReLU'),
       ('conv4', 'CONVOLUTION', 'Convolution'), ('relu4', 'RELU', 'ReLU'),
       ('conv5', 'CONVOLUTION', 'Convolution'), ('relu5', 'RELU', 'ReLU'), ('pool5', 'POOLING', 'Pooling'),
       ('fc6', 'INNER_PRODUCT', 'InnerProduct'), ('relu6', 'RELU', 'ReLU'), ('drop6', 'DROPOUT', 'Dropout'),
       ('fc7', 'INNER_PRODUCT', 'InnerProduct'), ('relu7', 'RELU', 'ReLU'), ('drop7', 'DROPOUT', 'Dropout'),
       ('fc8', 'INNER_PRODUCT', 'InnerProduct'), ('prob', 'SOFTMAX', 'Softmax')]
GROUP = {'conv1': 1, 'conv2': 2, 'conv3': 1, 'conv4': 2, 'conv5': 2}
STRIDE_PAD = {'conv1': (4, 0), 'conv2': (1, 2), 'conv3': (1, 1), 'conv4': (1, 1), 'conv5': (1, 1)}
MEAN_BGR = np.array([104.007, 116.669, 122.679])
PARAMS = 60965224


# --- weights and files ------------------------------------------------------------
def random_caffe_weights(seed=0):
    """Weights of a realistic scale: conv1 outputs of ~100 (where Caffe's LRN changes values by
    tens of percent), He-scaled later layers, logits spread over several units."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, (w, b) in CAFFE.items():
        fan_in = int(np.prod(w[1:]))
        std = {'conv1': 0.07, 'fc8': 0.05 / np.sqrt(fan_in)}.get(name, np.sqrt(2.0 / fan_in))
        out[name] = (rng.standard_normal(w, dtype=np.float32) * np.float32(std),
                     rng.normal(0.5 if name != 'fc8' else 0.0, 0.5, b).astype(np.float32))
    return out


def caffe_to_npy(layers, style):
    """caffe-tensorflow's conversion: conv [h, w, in/group, out], fc [in, out], fc6 rows (h, w, c)."""
    out = {}
    for name, (w, b) in layers.items():
        if name.startswith('conv'):
            w = w.transpose(2, 3, 1, 0)
        elif name == 'fc6':
            w = w.reshape(4096, 256, 6, 6).transpose(2, 3, 1, 0).reshape(9216, 4096)
        else:
            w = w.T
        w = np.ascontiguousarray(w)
        out[name] = [w, b] if style == 'list' else {'weights': w, 'biases': b}
    return out


def serialized_blobs(layers):
    """{layer: [data-only BlobProto bytes]}: the slow part (filling packed floats) done once."""
    Blob = weights_files.caffe_messages()['BlobProto']
    out = {}
    for name, arrays in layers.items():
        out[name] = []
        for a in arrays:
            blob = Blob()
            flat = a.ravel()
            for start in range(0, flat.size, 1 << 20):      # in chunks: a list of 38M floats would take 1.5 GB
                blob.data.extend(flat[start:start + (1 << 20)].tolist())
            out[name].append(blob.SerializeToString())
    return out


def write_caffemodel(path, blobs, shapes, encoding, net=NET):
    """A NetParameter in the old `layers` (V1, 4-D num/channels/height/width blobs) or the current
    `layer` encoding (shape.dim blobs)."""
    m = weights_files.caffe_messages()
    net_msg = m['NetParameter'](name='AlexNet')
    for name, v1_type, new_type in net:
        if encoding == 'v1':
            layer = net_msg.layers.add(name=name, type=m['V1LayerParameter'].LayerType.Value(v1_type))
        else:
            layer = net_msg.layer.add(name=name, type=new_type)
        for data, shape in zip(blobs.get(name, ()), shapes.get(name, ())):
            blob = layer.blobs.add()
            blob.ParseFromString(data)
            if encoding == 'v1':
                blob.num, blob.channels, blob.height, blob.width = (1,) * (4 - len(shape)) + tuple(shape)
            else:
                blob.shape.dim.extend(shape)
    Path(path).write_bytes(net_msg.SerializeToString())
    return path


@pytest.fixture(scope='module')
def weights():
    return random_caffe_weights()


@pytest.fixture(scope='module')
def files(weights, tmp_path_factory):
    folder = tmp_path_factory.mktemp('bvlc')
    blobs = serialized_blobs(weights)
    out = {enc: write_caffemodel(folder / f'{enc}.caffemodel', blobs, CAFFE, enc) for enc in ('v1', 'new')}
    for style in ('list', 'dict'):
        out[style] = folder / f'bvlc_alexnet_{style}.npy'
        np.save(out[style], caffe_to_npy(weights, style), allow_pickle=True)
    return out


def small_caffemodel(path, layers, encoding='new', net=None):
    """A caffemodel of the given arrays only (for the error cases: no 233 MB needed)."""
    net = net or [layer for layer in NET if layer[0] in layers or layer[0] not in CAFFE]
    return write_caffemodel(path, serialized_blobs(layers), {k: [a.shape for a in v] for k, v in layers.items()},
                            encoding, net)


# --- the reference: Caffe's layers in NumPy --------------------------------------
def caffe_conv(x, w, b, stride, pad, group):
    """Caffe's Convolution, NCHW: group g's outputs read input channels g*C/G..(g+1)*C/G."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    k = w.shape[2]
    windows = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]   # N C Ho Wo k k
    cin, cout = w.shape[1], w.shape[0] // group
    parts = [np.einsum('nchwij,ocij->nohw', windows[:, g * cin:(g + 1) * cin], w[g * cout:(g + 1) * cout],
                       optimize=True) for g in range(group)]
    return np.concatenate(parts, axis=1) + b[None, :, None, None]


def caffe_lrn(x, span=None, local_size=5, alpha=1e-4, beta=0.75, k=1.0):
    """Caffe's LRN (ACROSS_CHANNELS): x * (k + alpha/n * sum of x^2 over the n-window)^-beta, the
    window zero-padded at the ends. span=None: over all channels, as Caffe; span=48: in blocks of
    48 channels (this project's towers normalise their own maps)."""
    span = span or x.shape[1]
    out = np.empty_like(x)
    half = (local_size - 1) // 2
    for start in range(0, x.shape[1], span):
        block = x[:, start:start + span]
        squares = np.pad(block ** 2, ((0, 0), (half, half), (0, 0), (0, 0)))
        window = sum(squares[:, i:i + block.shape[1]] for i in range(local_size))
        out[:, start:start + span] = block * (k + alpha / local_size * window) ** -beta
    return out


def caffe_max_pool(x, size=3, stride=2):
    """Caffe's MAX pooling; its output size rounds up, which at 227 equals rounding down."""
    h = x.shape[2]
    assert (h - size) % stride == 0
    return sliding_window_view(x, (size, size), axis=(2, 3))[:, :, ::stride, ::stride].max(axis=(-2, -1))


def caffe_forward(x_bgr_nchw, layers, lrn_span=None, pool5_order='chw'):
    """bvlc_alexnet's deploy net: probabilities [N, 1000] and norm1. pool5_order='hwc' is the classic
    mistake of flattening pool5 channels-last (to show the comparison would catch it)."""
    w = {k: tuple(a.astype(np.float64) for a in v) for k, v in layers.items()}
    relu = lambda t: np.maximum(t, 0)    # noqa: E731
    x = relu(caffe_conv(x_bgr_nchw, *w['conv1'], *STRIDE_PAD['conv1'], GROUP['conv1']))
    norm1 = caffe_lrn(x, lrn_span and 48)
    x = caffe_max_pool(norm1)
    x = relu(caffe_conv(x, *w['conv2'], *STRIDE_PAD['conv2'], GROUP['conv2']))
    x = caffe_max_pool(caffe_lrn(x, lrn_span and 128))
    for name in ('conv3', 'conv4', 'conv5'):
        x = relu(caffe_conv(x, *w[name], *STRIDE_PAD[name], GROUP[name]))
    x = caffe_max_pool(x)                                             # N 256 6 6
    x = x.reshape(len(x), -1) if pool5_order == 'chw' else x.transpose(0, 2, 3, 1).reshape(len(x), -1)
    for name in ('fc6', 'fc7'):
        x = relu(x @ w[name][0].T + w[name][1])                     # dropout: identity at test time
    logits = x @ w['fc8'][0].T + w['fc8'][1]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True), norm1


def random_crops(count=3, seed=1):
    """RGB 0..255 crops [n, 227, 227, 3]: real validation images warped to 256x256 (Caffe's resize)
    and cropped at random, then random pixels."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    crops = []
    for path in VAL_IMAGES[:count - 1]:
        image = np.asarray(Image.open(path).convert('RGB').resize((256, 256), Image.BILINEAR), np.float64)
        i, j = rng.integers(0, 256 - 227 + 1, 2)
        crops.append(image[i:i + 227, j:j + 227])
    while len(crops) < count:
        crops.append(rng.uniform(0, 255, (227, 227, 3)))
    return np.stack(crops)


def project_forward(prefix, x_bgr_nhwc, meta, portable=False):
    """The imported checkpoint in this project's graph (the LRN its JSON says; TensorFlow's LRN op with
    portable): probabilities and both towers' LRN1 outputs."""
    with tf.Graph().as_default():
        images = tf.compat.v1.placeholder(tf.float32, [None, 227, 227, 3])
        logits = alexnet.inference(images, meta['num_classes'], devices='/cpu:0', portable=portable,
                                   lrn_constants=alexnet.lrn_of(meta))
        probs = tf.nn.softmax(logits)
        graph = tf.compat.v1.get_default_graph()
        lrn1 = tf.concat([graph.get_tensor_by_name(f'lrn1_{t}/output:0') for t in 'ab'], axis=-1)
        with tf.compat.v1.Session() as sess:
            tf.compat.v1.train.Saver(tf.compat.v1.trainable_variables()).restore(sess, prefix)
            p, n1 = sess.run([probs, lrn1], {images: x_bgr_nhwc.astype(np.float32)})
    return p, n1.transpose(0, 3, 1, 2)


def checkpoint_arrays(prefix):
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def assert_nothing_written(train_dir):
    assert not Path(train_dir).exists() or not any(Path(train_dir).rglob('model.ckpt-*'))
    assert not list(Path(train_dir).parent.glob('.*import-*'))       # no temporary folder left


def released_here(monkeypatch, url, path):
    """import_weights.RELEASED's bvlc_alexnet served by a test server at url: the file at path, its SHA-1."""
    sha1 = hashlib.sha1(Path(path).read_bytes()).hexdigest()
    here = dataclasses.replace(import_weights.RELEASED['bvlc_alexnet'], url=url, sha1=sha1)
    monkeypatch.setitem(import_weights.RELEASED, 'bvlc_alexnet', here)


def one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: '), err
    return err[0]


# --- tests ------------------------------------------------------------------------
def test_layer_table_is_bvlc_alexnets():
    assert {k: (tuple(w), tuple(b)) for k, (w, b) in import_weights.CAFFE_SHAPES.items()} == CAFFE
    assert import_weights.NPY_SHAPES['conv2'][0] == (5, 5, 48, 256)
    assert import_weights.NPY_SHAPES['fc6'][0] == (9216, 4096)
    classes = (REPO / 'imagenet_classes.txt').read_text().splitlines()
    wnids = [line.split(' ', 1)[0] for line in classes]
    assert len(classes) == 1000 and wnids == sorted(wnids) and classes[0] == 'n01440764 tench, Tinca tinca'


@pytest.mark.slow
def test_mapping_follows_caffes_groups_and_fc6_order():
    """Small hand-checkable facts of the mapping, on the arrays alone."""
    layers = random_caffe_weights(seed=3)
    v = import_weights.to_variables(layers)
    w2 = layers['conv2'][0]
    np.testing.assert_array_equal(v['conv2_a/weights'], w2[:128].transpose(2, 3, 1, 0))   # [5, 5, 48, 128]
    np.testing.assert_array_equal(v['conv2_b/weights'], w2[128:].transpose(2, 3, 1, 0))
    assert v['conv3_a/weights'].shape == (3, 3, 256, 192)
    np.testing.assert_array_equal(v['conv3_b/weights'], layers['conv3'][0][192:].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(v['conv1_b/biases'], layers['conv1'][1][48:])
    w6 = layers['fc6'][0]          # [4096, 9216], column c*36 + h*6 + w
    for c, h, w_, unit in ((0, 0, 0, 0), (5, 2, 3, 17), (127, 5, 5, 2047), (128, 0, 0, 2048), (255, 4, 1, 4095)):
        tower, ci = ('a', c) if c < 128 else ('b', c - 128)
        row = (0 if tower == 'a' else 4608) + (h * 6 + w_) * 128 + ci     # fc6 input: [pool5_a (h,w,c), pool5_b]
        t, u = ('a', unit) if unit < 2048 else ('b', unit - 2048)
        assert v[f'fc6_{t}/weights'][row, u] == w6[unit, c * 36 + h * 6 + w_], (c, h, w_, unit)
    np.testing.assert_array_equal(v['fc8_a/weights'], layers['fc8'][0][:500].T)
    np.testing.assert_array_equal(v['fc8_b/biases'], layers['fc8'][1][500:])
    assert sum(a.size for a in v.values()) == PARAMS


@pytest.mark.slow
def test_every_encoding_gives_identical_variables(files, weights):
    """Old `layers` and new `layer` caffemodels, and both dict styles of the .npy: the same arrays."""
    want = import_weights.to_variables(weights)
    for kind in ('v1', 'new', 'list', 'dict'):
        got = import_weights.to_variables(import_weights.read_weights(str(files[kind])))
        assert sorted(got) == sorted(want), kind
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f'{kind} {name}')
        del got


@pytest.mark.slow
def test_imported_caffemodel_computes_caffes_network(files, weights, tmp_path, capsys):
    """A full import (over existing checkpoints, with --overwrite): the JSON of a training run plus
    Caffe's keys; probabilities equal a NumPy forward pass of Caffe's network (its LRN over all maps)
    within 1e-4, with the fast LRN and with TensorFlow's op."""
    train_dir = tmp_path / 'runs' / 'bvlc_alexnet'
    for folder in (train_dir, train_dir / 'best'):     # an older run's checkpoints
        folder.mkdir(parents=True, exist_ok=True)
        for suffix in ('.index', '.json', '.data-00000-of-00001'):
            (folder / f'model.ckpt-1000{suffix}').write_text('{}')
    assert import_weights.main([str(files['v1']), '--train-dir', str(train_dir)]) == 2
    assert 'already holds checkpoints' in one_error_line(capsys) and (train_dir / 'model.ckpt-1000.index').exists()

    assert import_weights.main([str(files['v1']), '--train-dir', str(train_dir), '--overwrite']) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and 'model.ckpt-0' in out[0] and '60,965,224 parameters' in out[0], out
    assert out[1] == f'classify a photo with it: python classify.py PHOTO.jpg --train-dir {train_dir}'
    assert checkpoints.list_checkpoints(str(train_dir)) == [str(train_dir / 'model.ckpt-0')]
    assert not list(train_dir.rglob('model.ckpt-1000*'))
    assert not list(train_dir.parent.glob('.*import-*'))
    prefix, meta = checkpoints.for_use(str(train_dir))
    assert prefix == str(train_dir / 'model.ckpt-0')

    # the JSON: a training run's keys, as train.py's Trainer.meta writes them, plus Caffe's
    defaults = settings.DEFAULTS
    fake = SimpleNamespace(a=SimpleNamespace(**defaults), ds=SimpleNamespace(name='x', class_names=[], class_ids=[],
                                                                               mean=(0, 0, 0)),
                           step=0, steps_per_epoch=1, best=None, budget=SimpleNamespace(plan=None, used=lambda: 0.0),
                           schedule=SimpleNamespace(rate=0.01, state=lambda: {}))
    run_keys = set(trainer.Trainer.meta(fake)) | {'step'}
    extra = {'source', 'lrn', 'channel_order', 'mean', 'resize_mode'}
    assert set(meta) == run_keys | extra
    assert set(meta['args']) == set(defaults)
    assert meta['source'] == 'caffe bvlc_alexnet (v1.caffemodel)'
    assert meta['lrn'] == [2, 1.0, 2e-05, 0.75] and meta['channel_order'] == 'BGR'
    assert meta['lrn_across_towers'] is True
    assert meta['mean'] == [122.679, 116.669, 104.007] and meta['resize_mode'] == 'warp'
    assert (meta['dataset'], meta['data_dir'], meta['num_classes'], meta['input_size'], meta['resize_size']) == \
        ('imagenet', None, 1000, 227, 256)
    assert (meta['step'], meta['epoch'], meta['best'], meta['precision'], meta['devices']) == \
        (0, 0, None, 'fp32', '/cpu:0,/cpu:0')
    assert meta['class_ids'][0] == 'n01440764' and meta['class_names'][0] == 'tench, Tinca tinca'
    assert meta['class_ids'] == sorted(meta['class_ids']) and len(meta['class_names']) == 1000
    arrays = checkpoint_arrays(prefix)
    assert arrays.pop('global_step') == 0
    assert sum(a.size for a in arrays.values()) == PARAMS

    # the network: RGB crops, mean subtracted, flipped to BGR as the JSON says
    rgb = random_crops()
    x_bgr = (rgb - np.array(meta['mean']))[..., ::-1]
    got, norm1 = project_forward(prefix, x_bgr, meta)
    x_nchw = (rgb[..., ::-1] - MEAN_BGR).transpose(0, 3, 1, 2)     # Caffe's way: BGR image minus its BGR mean
    np.testing.assert_allclose(x_nchw.transpose(0, 2, 3, 1), x_bgr, atol=1e-9)
    want, caffe_norm1 = caffe_forward(x_nchw, weights)
    assert want.max() > 0.05 and (want.max(axis=1) / want.min(axis=1)).min() > 100   # not near-uniform
    scale = np.abs(caffe_norm1).max()
    assert scale > 20                     # conv1 responses where Caffe's LRN divides by tens of percent
    np.testing.assert_allclose(norm1, caffe_norm1, rtol=0, atol=1e-5 * scale)         # maps 46-49 too
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    portable, _ = project_forward(prefix, x_bgr, meta, portable=True)                 # TensorFlow's LRN op
    np.testing.assert_allclose(portable, want, rtol=0, atol=1e-4)
    wrong, _ = caffe_forward(x_nchw, weights, pool5_order='hwc')
    assert np.abs(wrong - want).max() > 100 * 1e-4       # the comparison would catch fc6's row order

    # the key off: each tower normalises its own maps, as the paper's towers; only maps 46-49 differ
    towers, tower_norm1 = project_forward(prefix, x_bgr, dict(meta, lrn_across_towers=False))
    reference, _ = caffe_forward(x_nchw, weights, lrn_span='towers')
    np.testing.assert_allclose(towers, reference, rtol=0, atol=1e-4)
    boundary = [46, 47, 48, 49]
    inside = [c for c in range(96) if c not in boundary]
    np.testing.assert_allclose(tower_norm1[:, inside], caffe_norm1[:, inside], rtol=0, atol=1e-5 * scale)
    assert np.abs(tower_norm1[:, boundary] - caffe_norm1[:, boundary]).max() > 1e-3 * scale
    assert np.abs(reference - want).max() > 10 * 1e-4    # the 1e-4 comparison above tells the two apart
    print(f'\nprobabilities: max |difference| {np.abs(got - want).max():.1e} from Caffe (LRN across the towers), '
          f'{np.abs(towers - want).max():.1e} with each tower\'s own LRN '
          f'(same top-1 {np.mean(towers.argmax(1) == want.argmax(1)):.0%})')


@pytest.mark.slow
def test_npy_import_writes_the_same_checkpoint(files, tmp_path, capsys):
    a_dir, b_dir = tmp_path / 'from_caffemodel', tmp_path / 'from_npy'
    assert import_weights.main([str(files['new']), '--train-dir', str(a_dir)]) == 0
    assert import_weights.main([str(files['dict']), '--train-dir', str(b_dir)]) == 0
    a, b = (checkpoint_arrays(str(d / 'model.ckpt-0')) for d in (a_dir, b_dir))
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    meta = checkpoints.read_meta(str(b_dir / 'model.ckpt-0'))
    assert meta['source'] == 'caffe bvlc_alexnet (bvlc_alexnet_dict.npy)'


@pytest.mark.slow
def test_import_builds_inside_train_dir_and_deletes_a_killed_imports_leftovers(files, tmp_path, monkeypatch):
    """The temporary folder lives inside --train-dir (nothing is written beside it), and the one a
    killed import left there is deleted by the next import; other hidden folders stay."""
    train_dir = tmp_path / 'runs' / 'bvlc'
    leftover = train_dir / f'{import_weights.IMPORT_TMP_PREFIX}killed'
    leftover.mkdir(parents=True)
    (leftover / 'model.ckpt-0.data-00000-of-00001').write_bytes(b'x' * 1000)
    foreign = train_dir / '.imported-notes'
    foreign.mkdir()
    before = sorted(os.listdir(train_dir.parent))
    saved_in, save = [], checkpoints.save
    monkeypatch.setattr(checkpoints, 'save', lambda sess, saver, folder, *a, **k:
                        saved_in.append(Path(folder)) or save(sess, saver, folder, *a, **k))
    assert import_weights.main([str(files['new']), '--train-dir', str(train_dir)]) == 0
    assert [folder.parent for folder in saved_in] == [train_dir]
    assert sorted(os.listdir(train_dir.parent)) == before
    assert not leftover.exists() and foreign.exists()
    assert not list(train_dir.glob(f'{import_weights.IMPORT_TMP_PREFIX}*'))
    assert checkpoints.list_checkpoints(str(train_dir)) == [str(train_dir / 'model.ckpt-0')]


def test_leftovers_stay_while_another_import_holds_the_run_folder(tmp_path):
    train_dir = tmp_path / 'run'
    working = train_dir / f'{import_weights.IMPORT_TMP_PREFIX}working'
    working.mkdir(parents=True)
    lock = FolderLock(str(train_dir))
    try:
        with pytest.raises(import_weights.DataError, match='in use'):
            import_weights.write_checkpoint({}, str(train_dir), {})
    finally:
        lock.release()
    assert working.exists()


def malicious_npy(path, marker):
    class Payload:
        def __reduce__(self):
            return os.system, (f'touch {marker}',)
    np.save(path, {'conv1': [np.zeros(3, np.float32), Payload()]}, allow_pickle=True)
    return path


@pytest.mark.slow          # import_weights.py in a child process: TensorFlow's start-up, seconds
def test_malicious_npy_is_refused_and_nothing_runs(tmp_path, capsys):
    marker = tmp_path / 'pwned'
    evil = malicious_npy(tmp_path / 'bvlc_alexnet.npy', marker)
    train_dir = tmp_path / 'runs' / 'x'
    assert import_weights.main([str(evil), '--train-dir', str(train_dir)]) == 2
    line = one_error_line(capsys)
    assert 'refused' in line and 'system' in line, line
    assert not marker.exists()
    assert_nothing_written(train_dir)
    # the same from the command line
    r = subprocess.run([sys.executable, str(REPO / 'import_weights.py'), str(evil), '--train-dir', str(train_dir)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 2, r.stderr
    err = [line for line in r.stderr.splitlines() if line.startswith('error: ')]
    assert len(err) == 1 and 'refused' in err[0] and 'Traceback' not in r.stderr, r.stderr
    assert not marker.exists()
    assert_nothing_written(train_dir)


def test_npy_loader_reads_numpy_pickles_only(tmp_path):
    ok = tmp_path / 'ok.npy'
    np.save(ok, {'fc8': {'weights': np.ones((2, 3), np.float32), 'biases': np.float32(2.5)}}, allow_pickle=True)
    got = weights_files.load_npy_dict(str(ok))
    assert got['fc8']['weights'].shape == (2, 3) and got['fc8']['biases'] == 2.5
    plain = tmp_path / 'plain.npy'
    np.save(plain, np.zeros((2, 2), np.float32))
    with pytest.raises(import_weights.DataError, match='not caffe-tensorflow'):
        weights_files.load_npy_dict(str(plain))
    cut = tmp_path / 'cut.npy'
    cut.write_bytes(ok.read_bytes()[:-20])
    with pytest.raises(import_weights.DataError, match='unreadable'):
        weights_files.load_npy_dict(str(cut))


@pytest.mark.slow
def test_truncated_caffemodel_is_refused(files, tmp_path, capsys):
    cut = tmp_path / 'cut.caffemodel'
    data = Path(files['v1']).read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    del data
    train_dir = tmp_path / 'runs' / 'cut'
    assert import_weights.main([str(cut), '--train-dir', str(train_dir)]) == 2
    assert 'truncated' in one_error_line(capsys)
    assert_nothing_written(train_dir)


def test_wrong_missing_or_foreign_layers_are_one_line(tmp_path, capsys):
    rng = np.random.default_rng(0)
    conv1 = (rng.standard_normal((96, 3, 11, 11), dtype=np.float32), np.zeros(96, np.float32))
    train_dir = tmp_path / 'runs' / 'bad'
    ungrouped = (np.zeros((256, 96, 5, 5), np.float32), np.zeros(256, np.float32))   # conv2 without groups
    cases = [
        (small_caffemodel(tmp_path / 'ungrouped.caffemodel', {'conv1': conv1, 'conv2': ungrouped}),
         ['conv2', '[256, 96, 5, 5]', '[256, 48, 5, 5]']),
        (small_caffemodel(tmp_path / 'short.caffemodel', {'conv1': conv1}, encoding='v1'), ['conv2', 'missing']),
        (small_caffemodel(tmp_path / 'typed.caffemodel', {'conv1': conv1},
                          net=[('conv1', 'INNER_PRODUCT', 'InnerProduct')]), ['conv1', 'InnerProduct', 'Convolution']),
    ]
    whole = small_caffemodel(tmp_path / 'whole.caffemodel', {'conv1': conv1}).read_bytes()
    cut = tmp_path / 'cut.caffemodel'
    cut.write_bytes(whole[:len(whole) // 2])                        # ends inside conv1's weights
    cases.append((cut, ['truncated']))
    npy = tmp_path / 'wrong.npy'
    np.save(npy, {'conv1': [np.zeros((96, 3, 11, 11), np.float32), np.zeros(96, np.float32)]}, allow_pickle=True)
    cases.append((npy, ['conv1', '[96, 3, 11, 11]', '[11, 11, 3, 96]']))
    text = tmp_path / 'notes.caffemodel'
    text.write_text('these are not weights\n' * 10)
    cases += [(text, ['not a Caffe model']), (tmp_path / 'absent.caffemodel', ['no such file']),
              (tmp_path, ['is a folder', '.caffemodel', '.npy'])]
    for path, words in cases:
        assert import_weights.main([str(path), '--train-dir', str(train_dir)]) == 2, path
        line = one_error_line(capsys)
        for word in words:
            assert word in line, (path, line)
        assert_nothing_written(train_dir)


def test_the_name_bvlc_alexnet_downloads_caffes_file_into_the_cache_then_imports_it(serve, tmp_path, capsys,
                                                                                   monkeypatch):
    """`import_weights.py bvlc_alexnet`: Caffe's file fetched into the cache (here a small caffemodel from a
    local server), reused after, then imported (and this one refused, naming the cached file); a run folder
    that holds checkpoints is refused before any download; offline: one line, exit status 1."""
    server = serve()
    (tmp_path / 'served.caffemodel').write_bytes(MODEL)
    released_here(monkeypatch, server.url, tmp_path / 'served.caffemodel')
    monkeypatch.chdir(tmp_path)
    cache, run = tmp_path / 'cache', tmp_path / 'run'
    assert import_weights.main(['bvlc_alexnet', '--train-dir', str(run), '--cache-dir', str(cache)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (cache / 'bvlc_alexnet.caffemodel').read_bytes() == MODEL
    assert server.log == [('/bvlc_alexnet.caffemodel', None, 200)]
    assert err[0] == (f'downloading bvlc_alexnet.caffemodel from {server.url} into {cache}; licence: unrestricted '
                      f'("This model is released for unrestricted use.") (Caffe\'s models/bvlc_alexnet/readme.md)')
    assert err[-1].startswith(f'error: {cache / "bvlc_alexnet.caffemodel"}: layer conv1 has 1 blobs')
    assert not run.exists()

    monkeypatch.setenv('ALEXNET_CACHE', str(cache))          # the variable moves the cache as --cache-dir does
    assert import_weights.main(['bvlc_alexnet', '--train-dir', str(run)]) == 2
    assert 'layer conv1 has 1 blobs' in one_error_line(capsys) and len(server.log) == 1    # reused, no licence again

    run.mkdir()
    for suffix in ('.index', '.json', '.data-00000-of-00001'):     # an earlier run's checkpoint
        (run / f'model.ckpt-5{suffix}').write_text('{}')
    monkeypatch.setenv('ALEXNET_CACHE', str(tmp_path / 'empty'))
    assert import_weights.main(['bvlc_alexnet', '--train-dir', str(run)]) == 2
    assert 'already holds checkpoints' in one_error_line(capsys) and len(server.log) == 1
    assert not (tmp_path / 'empty').exists()

    server.shutdown()
    server.server_close()
    capsys.readouterr()
    assert import_weights.main(['bvlc_alexnet', '--train-dir', str(tmp_path / 'new')]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith('downloading') and err[1].startswith(f'error: could not download '
                                                                                    f'{server.url} (')
    assert f'put it at {tmp_path / "empty" / "bvlc_alexnet.caffemodel"}' in err[1]

    (tmp_path / 'bvlc_alexnet').write_bytes(b'not weights')  # a file of that name here is what is meant
    assert import_weights.main(['bvlc_alexnet', '--train-dir', str(tmp_path / 'new')]) == 2
    assert one_error_line(capsys).startswith('error: bvlc_alexnet: ')


@pytest.mark.slow
def test_fine_tuning_the_imported_model_keeps_frozen_layers_and_its_constants(files, tmp_path, capsys, serve,
                                                                            monkeypatch):
    """train.py --model_path runs/bvlc_alexnet --train-layers fc7,fc8 on 3 new classes: a new fc8, fc7
    trained, every other layer bit for bit as imported, with no momentum slot; the run and its -resume
    keep Caffe's LRN, BGR, warp and mean. classify.py names the imported model's classes. The model comes
    as a user gets it: `import_weights.py bvlc_alexnet`, downloaded from a local server, then imported."""
    from helpers import make_folder
    import classify
    import train
    imported = tmp_path / 'bvlc'
    server = serve(files={'/bvlc_alexnet.caffemodel': files['new']})       # the 244 MB file, from a local server
    released_here(monkeypatch, server.url, files['new'])
    assert import_weights.main(['bvlc_alexnet', '--cache-dir', str(tmp_path / 'cache'),
                                '--train-dir', str(imported)]) == 0
    source = checkpoint_arrays(checkpoints.latest(str(imported))[0])
    capsys.readouterr()
    assert classify.main(['--train-dir', str(imported), '--center', '--top-k', '2', str(VAL_IMAGES[0])]) == 0
    shown = capsys.readouterr().out.splitlines()
    names = set(import_weights.read_classes()[1])
    assert shown[0].startswith('AlexNet saw') and all(line.split(' - score: ')[0] in names for line in shown[1:3])

    data = make_folder(tmp_path / 'photos', 'train', 4)
    tuned = tmp_path / 'tuned'
    common = ['--dataset', 'folder', '--data-dir', str(data), '--train-dir', str(tuned), '--batch-size', '2',
              '--no-validate', '--save-minutes', '60', '--dropout', '0']
    assert train.main(['-scratch', '--model_path', str(imported), '--train-layers', 'fc7,fc8', '--max-steps', '2',
                       *common]) == 0
    prefix, meta = checkpoints.latest(str(tuned))
    assert (meta['lrn'], meta['lrn_across_towers'], meta['channel_order'], meta['resize_mode']) == \
        ([2, 1.0, 2e-05, 0.75], True, 'BGR', 'warp')
    assert meta['mean'] == [122.679, 116.669, 104.007] and meta['num_classes'] == 3
    after = checkpoint_arrays(prefix)
    for name, value in source.items():
        layer = name.split('_')[0]
        if layer in ('conv1', 'conv2', 'conv3', 'conv4', 'conv5', 'fc6'):
            np.testing.assert_array_equal(after[name], value, err_msg=name)          # frozen: bit for bit
            assert f'{name}/Momentum' not in after, name                            # and no slot
    assert not np.array_equal(after['fc7_a/weights'], source['fc7_a/weights'])      # trained
    assert after['fc8_a/weights'].shape == (4096, 2) and after['fc8_b/weights'].shape == (4096, 1)   # new fc8
    assert train.main(['-resume', '--train-dir', str(tuned), '--max-steps', '3']) == 0
    prefix, meta = checkpoints.latest(str(tuned))
    assert meta['step'] == 3 and meta['lrn'] == [2, 1.0, 2e-05, 0.75] and meta['channel_order'] == 'BGR'
    assert meta['args']['lrn_across_towers'] and meta['lrn_across_towers']
    again = checkpoint_arrays(prefix)
    np.testing.assert_array_equal(again['conv1_a/weights'], source['conv1_a/weights'])
    assert train.main(['-scratch', '--model_path', str(imported), '--train-layers', 'fc9', *common[:4],
                       '--train-dir', str(tmp_path / 'x')]) == 2
    assert "fc9 is not a layer" in capsys.readouterr().err


def test_ctrl_c_during_an_import_is_one_line_and_status_130(tmp_path, monkeypatch, capsys):
    def interrupted(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(import_weights, 'weights_file', interrupted)
    assert import_weights.main(['bvlc_alexnet', '--train-dir', str(tmp_path / 'run')]) == import_weights.INTERRUPTED
    err = capsys.readouterr().err
    assert err.startswith('interrupted: nothing was imported') and err.count('\n') == 1, err
    assert not (tmp_path / 'run').exists()
