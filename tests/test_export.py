"""export.py: the SavedModel's signatures and the TFLite models agree with classify.py --center."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import checkpoints
import classify
import export
import features
import files
import decoding
import preprocessing
from conftest import REPO, TEST_DATA
from helpers import EVAL_CLASSES as CLASSES, INPUT_SIZE, RESIZE_SIZE, make_run

pytestmark = pytest.mark.slow        # subprocesses / SavedModel and TFLite conversion: minutes

JPEG = TEST_DATA / 'imagenet' / 'val' / 'ILSVRC2012_val_00000001.JPEG'


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """A run, its SavedModel and float TFLite model (one export), and an int8 TFLite model (another)."""
    root = tmp_path_factory.mktemp('export')
    tree, run_dir = make_run(root)
    prefix, meta = checkpoints.for_use(str(run_dir))
    assert export.main(['--train-dir', str(run_dir), '--out', str(root / 'saved'),
                        '--tflite', str(root / 'float.tflite')]) == 0
    assert export.main(['--checkpoint', prefix, '--tflite', str(root / 'int8.tflite'), '--quantize', 'int8',
                        '--calibration-images', '20']) == 0
    return dict(root=root, tree=tree, dir=str(run_dir), prefix=prefix, meta=meta)


def classify_center(run_dir, capsys, *paths):
    """classify.py --center's probabilities [C] for each path."""
    assert classify.main(['--train-dir', run_dir, '--center', '--json', '--top-k', str(CLASSES), *paths]) == 0
    results = json.loads(capsys.readouterr().out)
    return [np.array([t['score'] for t in sorted(r['top'], key=lambda t: t['index'])]) for r in results]


def decoded(path):
    """uint8 [H, W, 3] as classify.py decodes it (TensorFlow's JPEG decoder)."""
    return decoding.decode_image(tf.io.read_file(str(path))).numpy()


def tflite_runner(path):
    with warnings.catch_warnings():        # tf.lite.Interpreter's notice about the LiteRT package
        warnings.simplefilter('ignore')
        return tf.lite.Interpreter(str(path)).get_signature_runner('crops')


def centre_crop(path):
    """The TFLite input for an image: the centre crop as classify.py --center takes it, RGB 0..255."""
    return preprocessing.eval_crops(decoded(path), INPUT_SIZE, (0.0, 0.0, 0.0), RESIZE_SIZE, 'center').numpy()


def test_saved_model_signatures_agree_with_classify(exported, capsys):
    png = sorted(exported['tree'].glob('test/class3/*.png'))[0]
    expected = classify_center(exported['dir'], capsys, str(JPEG), str(png))
    model = tf.saved_model.load(str(exported['root'] / 'saved'))
    assert set(model.signatures) == {'serving_default', 'float_images', 'encoded', 'crops'}

    for path, want in zip((JPEG, png), expected):
        out = model.signatures['serving_default'](images=tf.constant(decoded(path)[None]))
        np.testing.assert_allclose(out['probabilities'].numpy()[0], want, atol=1e-5)
        assert out['top_k_indices'].numpy()[0, 0] == want.argmax()
        assert list(out['top_k_indices'].numpy()[0]) == list(np.argsort(-want)[:5])
        np.testing.assert_allclose(out['top_k_scores'].numpy()[0], np.sort(want)[::-1][:5], atol=1e-5)
        names = [n.decode() for n in out['top_k_classes'].numpy()[0]]
        assert names == [exported['meta']['class_names'][i] for i in out['top_k_indices'].numpy()[0]]

    # encoded files of different sizes in one batch
    out = model.signatures['encoded'](image_bytes=tf.constant([JPEG.read_bytes(), png.read_bytes()]))
    np.testing.assert_allclose(out['probabilities'].numpy(), np.stack(expected), atol=1e-5)

    crops = np.concatenate([centre_crop(JPEG), centre_crop(png)])
    out = model.signatures['crops'](crops=tf.constant(crops))
    np.testing.assert_allclose(out['probabilities'].numpy(), np.stack(expected), atol=1e-5)
    labels = (exported['root'] / 'saved' / 'assets' / 'class_names.txt').read_text().splitlines()
    assert labels == exported['meta']['class_names']


def test_the_saved_models_features_are_those_of_features_py(exported, tmp_path, capsys):
    """features_fc7 / features_pool5 of every image signature equal features.py's vectors of the same files."""
    png = sorted(exported['tree'].glob('test/class3/*.png'))[0]
    model = tf.saved_model.load(str(exported['root'] / 'saved'))
    for layer, width in (('fc7', 4096), ('pool5', 2 * 128)):         # pool5 at 67: 1 x 1 x 128 a tower
        npz = tmp_path / f'{layer}.npz'
        assert features.main(['--train-dir', exported['dir'], '--layer', layer, '-o', str(npz), str(JPEG), str(png)]) == 0
        saved = np.load(npz)
        assert list(saved['files']) == [str(JPEG), str(png)] and saved['features'].shape == (2, width)
        out = model.signatures['encoded'](image_bytes=tf.constant([JPEG.read_bytes(), png.read_bytes()]))
        np.testing.assert_allclose(out[f'features_{layer}'].numpy(), saved['features'], rtol=1e-4, atol=1e-4)
        for i, path in enumerate((JPEG, png)):
            one = model.signatures['serving_default'](images=tf.constant(decoded(path)[None]))
            np.testing.assert_allclose(one[f'features_{layer}'].numpy()[0], saved['features'][i], rtol=1e-4, atol=1e-4)
    assert saved['features'].min() >= 0 and str(saved['layer']) == 'pool5'       # after ReLU and max-pooling
    capsys.readouterr()


def test_float_signature_agrees_with_uint8_and_classify(exported, capsys):
    """float_images: the same image as float32 pixels 0..255 (any size) gets serving_default's
    preprocessing and outputs."""
    png = sorted(exported['tree'].glob('test/class3/*.png'))[0]
    expected = classify_center(exported['dir'], capsys, str(JPEG), str(png))
    model = tf.saved_model.load(str(exported['root'] / 'saved'))
    for path, want in zip((JPEG, png), expected):       # a JPEG (downscaled), a PNG (already the resize size)
        image = decoded(path)[None]
        uint8 = model.signatures['serving_default'](images=tf.constant(image))
        out = model.signatures['float_images'](images=tf.constant(image.astype(np.float32)))
        assert set(out) == set(uint8) == {'probabilities', 'top_k_indices', 'top_k_scores', 'top_k_classes',
                                          'features_fc7', 'features_pool5'}
        assert out['probabilities'].dtype == tf.float32 and out['probabilities'].shape == (1, CLASSES)
        np.testing.assert_allclose(out['probabilities'].numpy(), uint8['probabilities'].numpy(), atol=1e-5)
        np.testing.assert_allclose(out['probabilities'].numpy()[0], want, atol=1e-5)
        assert out['top_k_indices'].numpy()[0, 0] == want.argmax()
        assert list(out['top_k_indices'].numpy()[0]) == list(np.argsort(-want)[:5])
        np.testing.assert_allclose(out['top_k_scores'].numpy()[0], np.sort(want)[::-1][:5], atol=1e-5)
        assert list(out['top_k_classes'].numpy()[0]) == list(uint8['top_k_classes'].numpy()[0])

    # an image smaller than the square (45x38, upscaled): the same as the uint8 signature
    small = np.ascontiguousarray(decoded(png)[None, ::2, ::2])
    probs = lambda name, x: model.signatures[name](images=tf.constant(x))['probabilities'].numpy()
    np.testing.assert_allclose(probs('float_images', small.astype(np.float32)), probs('serving_default', small),
                               atol=1e-5)

    # a batch of two images of one size: each image as it is alone
    pngs = sorted(exported['tree'].glob('test/class*/0.png'))[:2]
    batch = np.stack([decoded(p) for p in pngs]).astype(np.float32)
    out = model.signatures['float_images'](images=tf.constant(batch))
    np.testing.assert_allclose(out['probabilities'].numpy(), np.stack(classify_center(
        exported['dir'], capsys, *map(str, pngs))), atol=1e-5)


def test_tflite_models_agree_with_classify(exported, capsys):
    pngs = [str(p) for p in sorted(exported['tree'].glob('test/class*/0.png'))]
    expected = classify_center(exported['dir'], capsys, str(JPEG), *pngs)
    floats, int8s = [], []
    for path, want in zip([JPEG, *pngs], expected):
        crop = centre_crop(path)
        out = tflite_runner(exported['root'] / 'float.tflite')(crops=crop)
        np.testing.assert_allclose(out['probabilities'][0], want, atol=1e-4)
        assert out['top_k_indices'][0, 0] == want.argmax()
        floats.append(out['probabilities'][0])
        int8s.append(tflite_runner(exported['root'] / 'int8.tflite')(crops=crop)['probabilities'][0])
    floats, int8s = np.concatenate(floats), np.concatenate(int8s)
    assert np.corrcoef(floats, int8s)[0, 1] > 0.9
    assert np.abs(int8s.reshape(-1, CLASSES).sum(1) - 1).max() < 0.05
    float_size = (exported['root'] / 'float.tflite').stat().st_size
    assert (exported['root'] / 'int8.tflite').stat().st_size < 0.4 * float_size
    for name in ('float_labels.txt', 'int8_labels.txt'):
        assert (exported['root'] / name).read_text().splitlines() == exported['meta']['class_names']


def test_usage_errors(exported, tmp_path, capsys):
    """One line each, before any work: nothing is written, the user's labels file is kept."""
    (tmp_path / 'mine_labels.txt').write_text('my own labels\n')
    cases = [(['--train-dir', str(tmp_path / 'none'), '--out', str(tmp_path / 'm')], 'error: no checkpoint in'),
             (['--train-dir', exported['dir'], '--out', str(exported['root'] / 'saved')], 'already exists'),
             (['--train-dir', exported['dir']], 'nothing to write'),
             (['--train-dir', exported['dir'], '--out', str(tmp_path / 'm'), '--quantize', 'int8'], 'add --tflite'),
             (['--train-dir', exported['dir'], '--out', str(tmp_path / 'm'), '--tflite',
               str(tmp_path / 'nowhere' / 'a.tflite')], f'there is no folder {tmp_path / "nowhere"}'),
             (['--train-dir', exported['dir'], '--tflite', str(tmp_path)], f'--tflite {tmp_path} is a folder'),
             (['--train-dir', exported['dir'], '--tflite', str(tmp_path / 'mine.tflite')],
              f'{tmp_path / "mine_labels.txt"} exists with other contents than these {CLASSES} class names')]
    for argv, message in cases:
        assert export.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith('error:') and message in err and err.count('\n') == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ['mine_labels.txt']
    assert (tmp_path / 'mine_labels.txt').read_text() == 'my own labels\n'


def test_a_killed_export_leaves_nothing_half_written(exported, tmp_path, capsys):
    """kill -9 in the middle of an export leaves no --out (the SavedModel is written in a hidden folder
    beside it, renamed into place at the end); the next export removes such leftovers of dead processes,
    and writes whole outputs. An existing labels file with these class names is kept as it is."""
    saved = tmp_path / 'saved'
    run = subprocess.Popen([sys.executable, 'export.py', '--train-dir', exported['dir'], '--out', str(saved)],
                           cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = []
    while not partial and run.poll() is None:
        partial = list(tmp_path.glob('.saved.export-*'))
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert partial and not saved.exists(), 'the export was not caught while writing'
    stale = tmp_path / f'.m.tflite.export-{os.uname().nodename}-{run.pid}'          # a killed TFLite write
    stale.write_bytes(b'half a model')
    (tmp_path / 'm_labels.txt').write_text(''.join(f'{n}\n' for n in exported['meta']['class_names']))
    labels_written = (tmp_path / 'm_labels.txt').stat().st_mtime_ns
    assert export.main(['--train-dir', exported['dir'], '--out', str(saved), '--tflite', str(tmp_path / 'm.tflite')]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['m.tflite', 'm_labels.txt', 'saved']
    assert (saved / 'saved_model.pb').is_file()
    assert tflite_runner(tmp_path / 'm.tflite')(crops=centre_crop(JPEG))['probabilities'].shape == (1, CLASSES)
    assert (tmp_path / 'm_labels.txt').stat().st_mtime_ns == labels_written


def test_a_bgr_model_still_takes_rgb_and_agrees_with_classify(exported, tmp_path, capsys):
    """A checkpoint whose network reads BGR (imported Caffe weights) exports signatures that take RGB like
    every other, the swap, the warp resize and Caffe's LRN constants of its JSON inside: they give what
    classify.py gives for that checkpoint, and differ from the same weights read as an RGB network."""
    bgr_run = tmp_path / 'bgr'
    shutil.copytree(exported['dir'], bgr_run)
    prefix = checkpoints.latest(str(bgr_run))[0]
    meta = checkpoints.read_meta(prefix)
    files.write_json_atomic(prefix + '.json', dict(meta, channel_order='BGR', resize_mode='warp', lrn=[2, 1.0, 2e-05, 0.75]))
    for best in (bgr_run / 'best').glob('*.json'):
        best.unlink()                                   # use the edited latest checkpoint
    assert export.main(['--train-dir', str(bgr_run), '--out', str(tmp_path / 'saved')]) == 0
    capsys.readouterr()
    model = tf.saved_model.load(str(tmp_path / 'saved'))
    image = decoded(JPEG)
    got = model.signatures['serving_default'](images=tf.constant(image[None]))['probabilities'].numpy()[0]
    [expected] = classify_center(str(bgr_run), capsys, str(JPEG))
    np.testing.assert_allclose(got, expected, atol=2e-5)
    warped = preprocessing.eval_crops(image, INPUT_SIZE, (0.0, 0.0, 0.0), RESIZE_SIZE, 'center',
                                      resize_mode='warp').numpy()
    crops = model.signatures['crops'](crops=tf.constant(warped))['probabilities'].numpy()[0]
    np.testing.assert_allclose(crops, got, atol=2e-5)
    [as_rgb] = classify_center(exported['dir'], capsys, str(JPEG))
    assert np.abs(as_rgb - got).max() > 1e-3                   # the JSON's settings did change the network


def test_keras_tfsm_layer_gives_classifys_probabilities(exported):
    """Keras 3's TFSMLayer loads the SavedModel: its `encoded` endpoint (a batch of files of different sizes)
    and its `serving_default` endpoint inside a keras.Model give classify.py --center's probabilities."""
    png = sorted(exported['tree'].glob('test/class3/*.png'))[0]
    classifier = classify.Classifier(exported['prefix'], exported['meta'], mode='center')
    expected = [classifier.probabilities(str(path)) for path in (JPEG, png)]
    classifier.close()
    saved = str(exported['root'] / 'saved')

    encoded = keras.layers.TFSMLayer(saved, call_endpoint='encoded')
    out = encoded(tf.constant([JPEG.read_bytes(), png.read_bytes()]))
    np.testing.assert_allclose(out['probabilities'].numpy(), np.stack(expected), atol=1e-5)
    names = [[n.decode() for n in row] for row in out['top_k_classes'].numpy()]
    assert [row[0] for row in names] == [exported['meta']['class_names'][p.argmax()] for p in expected]

    inputs = keras.Input(shape=(None, None, 3), dtype='uint8')
    model = keras.Model(inputs, keras.layers.TFSMLayer(saved, call_endpoint='serving_default')(inputs)['probabilities'])
    for path, want in zip((JPEG, png), expected):
        np.testing.assert_allclose(model.predict(decoded(path)[None], verbose=0)[0], want, atol=1e-5)


def test_keras_head_learns_on_the_frozen_fc7_features(exported, small_tree):
    """The SavedModel as a frozen feature extractor (TFSMLayer, trainable=False) under a Dense head, trained a
    few steps on a 4-class tree's encoded images: the exported weights stay as they are, the head's change, the
    loss falls and the head classifies the held-out images (fc7 of these weights separates the classes' colours)."""
    def load(split):
        paths = sorted((small_tree / split).glob('*/*.png'))
        return tf.constant([p.read_bytes() for p in paths]), np.array([int(p.parent.name[len('class'):]) for p in paths])

    backbone = keras.layers.TFSMLayer(str(exported['root'] / 'saved'), call_endpoint='encoded', trainable=False)
    head = keras.layers.Dense(4, activation='softmax', kernel_initializer=keras.initializers.GlorotUniform(seed=0))
    inputs = keras.Input(shape=(), dtype='string')
    model = keras.Model(inputs, head(backbone(inputs)['features_fc7']))
    model.compile(keras.optimizers.Adam(1e-3), 'sparse_categorical_crossentropy', metrics=['accuracy'])
    assert backbone.trainable_weights == [] and len(backbone.non_trainable_weights) == 32     # 16 layers' w, b
    assert [id(w) for w in model.trainable_weights] == [id(w) for w in head.weights]
    frozen, initial = [w.numpy() for w in backbone.weights], [w.numpy() for w in head.weights]

    history = model.fit(*load('train'), batch_size=16, epochs=3, shuffle=False, verbose=0)     # 6 steps
    assert all(np.array_equal(before, w.numpy()) for before, w in zip(frozen, backbone.weights))
    assert all(np.abs(before - w.numpy()).max() > 1e-4 for before, w in zip(initial, head.weights))
    loss = history.history['loss']
    assert loss[-1] < loss[0] / 4, loss
    assert model.evaluate(*load('val'), verbose=0, return_dict=True)['accuracy'] >= 0.9     # chance: 0.25
