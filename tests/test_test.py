"""test.py: crops, exact top-1/top-5 against an independent NumPy evaluation, output, errors.

The helpers here (make_tree, make_run, restore, network_probabilities) are shared by
test_classify.py and test_export.py.
"""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import alexnet
import checkpoints
import test as test_script
import train

INPUT_SIZE, RESIZE_SIZE = 67, 76    # the smallest AlexNet input; train.py's resize size for it (67 x 256/227)
CLASSES = 10                        # more than 5, so that top-5 is not trivially 100%


def make_tree(root, counts=(('train', 2), ('val', 1), ('test', 5)), seed=0):
    """A class-folder dataset of PNGs whose shorter side is already RESIZE_SIZE (76x90 and 90x76), so
    the test-time square is a plain slice of the decoded pixels and crops can be cut in NumPy."""
    rng = np.random.default_rng(seed)
    for split, n in counts:
        for c in range(CLASSES):
            folder = root / split / f'class{c}'
            folder.mkdir(parents=True)
            for i in range(n):
                shape = (RESIZE_SIZE, 90, 3) if i % 2 else (90, RESIZE_SIZE, 3)
                image = rng.uniform(0, 255, (1, 1, 3)) + rng.normal(0, 40, shape)
                Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f'{i}.png')
    return root


def input_sensitive_weights(prefix, seed=0):
    """Redraw the weights of a checkpoint: He-scaled and centred on each unit, biases 0, fc8 / 4. AlexNet
    at the paper's initialisation gives nearly the same output for every image for its first hundred
    steps; checking crops and counts needs a network whose output depends on its input, with softmax
    outputs neither flat nor one-hot (no near-ties)."""
    rng = np.random.default_rng(seed)
    reader = tf.train.load_checkpoint(prefix)
    names = sorted(name for name, _ in tf.train.list_variables(prefix))
    tensors = []
    for name in names:
        value = reader.get_tensor(name)
        if name.endswith('/weights'):
            std = np.sqrt(2 / np.prod(value.shape[:-1])) * (0.25 if name.startswith('fc8') else 1)
            value = rng.normal(0, std, value.shape)
            value = (value - value.mean(axis=tuple(range(value.ndim - 1)))).astype(np.float32)
        elif name.endswith('/biases'):
            value = np.zeros_like(value)
        tensors.append(value)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[''] * len(names), tensors=tensors)


def make_run(root):
    """(data folder, run folder): one step of train.py on a small tree (the real checkpoint and JSON),
    then input-sensitive weights."""
    tree, run = make_tree(root / 'data'), root / 'run'
    assert train.main(['-scratch', '--dataset', 'folder', '--data-dir', str(tree), '--train-dir', str(run),
                       '--input-size', str(INPUT_SIZE), '--batch-size', '16', '--max-steps', '1',
                       '--no-validate', '--save-minutes', '60']) == 0
    input_sensitive_weights(checkpoints.latest(str(run))[0])
    return tree, run


def square(path):
    """The central RESIZE_SIZE square of an image of the tree, in NumPy."""
    image = np.asarray(Image.open(path).convert('RGB'), np.float32)
    top, left = (image.shape[0] - RESIZE_SIZE) // 2, (image.shape[1] - RESIZE_SIZE) // 2
    return image[top:top + RESIZE_SIZE, left:left + RESIZE_SIZE]


def ten_crops(path, mean):
    """The paper's ten crops cut in NumPy: corners, centre, then their reflections."""
    sq, s = square(path), INPUT_SIZE
    far, mid = RESIZE_SIZE - s, (RESIZE_SIZE - s) // 2
    crops = [sq[y:y + s, x:x + s] for y, x in ((0, 0), (0, far), (far, 0), (far, far), (mid, mid))]
    return np.stack(crops + [c[:, ::-1] for c in crops]) - np.float32(mean)


def network_probabilities(prefix, num_classes, crops):
    """Softmax (in NumPy) of the network's logits for float crops [n, s, s, 3], restored weights."""
    with tf.Graph().as_default():
        images = tf.compat.v1.placeholder(tf.float32, [None, INPUT_SIZE, INPUT_SIZE, 3])
        logits = alexnet.inference(images, num_classes, devices='/cpu:0')
        with tf.compat.v1.Session() as sess:
            tf.compat.v1.train.Saver().restore(sess, prefix)
            z = sess.run(logits, {images: crops}).astype(np.float64)
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def split_files(tree):
    """(paths, labels) of the tree's test split."""
    paths = sorted(tree.glob('test/class*/*.png'))
    return paths, np.array([int(p.parent.name[len('class'):]) for p in paths])


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    tree, run_dir = make_run(tmp_path_factory.mktemp('test'))
    prefix, meta = checkpoints.for_use(str(run_dir))
    return dict(tree=tree, dir=run_dir, prefix=prefix, meta=meta)


def first_batch(run, *argv):
    """Crops of the first test batch as test.py builds them for these flags."""
    a = test_script.parse_args(['--train-dir', str(run['dir']), *argv])
    _, which, split = test_script.load_split(a, run['meta'])
    assert which == 'test' and len(split) == 5 * CLASSES
    crops, labels = next(iter(test_script.eval_data(split, run['meta'], a)))
    return split, crops.numpy(), labels.numpy()


def test_ten_crops_are_the_corners_the_centre_and_their_reflections(run):
    split, crops, labels = first_batch(run, '--ten-crop', '--batch-size', '4')
    assert crops.shape == (4, 10, INPUT_SIZE, INPUT_SIZE, 3)
    for path, label, got in zip(split.files, labels, crops):
        assert label == int(Path(path).parent.name[len('class'):])
        np.testing.assert_allclose(got, ten_crops(path, run['meta']['mean']), atol=1e-4)
        flat = got.reshape(10, -1)
        assert all(not np.allclose(flat[i], flat[j]) for i in range(10) for j in range(i))


def test_random_crops_are_reflected_windows_of_the_square_and_repeat(run):
    split, crops, _ = first_batch(run, '--crops', '3', '--batch-size', '2')
    _, again, _ = first_batch(run, '--crops', '3', '--batch-size', '2')
    np.testing.assert_array_equal(crops, again)
    s, far = INPUT_SIZE, RESIZE_SIZE - INPUT_SIZE
    found = set()
    for path, got in zip(split.files, crops):
        sq = square(path) - np.float32(run['meta']['mean'])
        for crop in got:
            where = [(y, x, flip) for y in range(far + 1) for x in range(far + 1) for flip in (0, 1)
                     if np.allclose(crop, sq[y:y + s, x:x + s][:, ::-1] if flip else sq[y:y + s, x:x + s],
                                    atol=1e-3)]
            assert len(where) == 1, 'a random crop is not a window of the square'
            found.add(where[0])
    assert len(found) >= 4                      # placed at random, not all alike


def test_ten_crop_figures_are_those_of_an_independent_evaluation(run, tmp_path, capsys):
    out = tmp_path / 'result.json'
    assert test_script.main(['--train-dir', str(run['dir']), '--ten-crop', '--batch-size', '7',
                             '--json', str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    final = re.fullmatch(r'top-1 (\d+\.\d\d)% top-5 (\d+\.\d\d)% \((\d+) images, 10 crops\)', lines[-1])
    assert final, lines

    paths, labels = split_files(run['tree'])
    crops = np.concatenate([ten_crops(p, run['meta']['mean']) for p in paths])
    probs = network_probabilities(run['prefix'], CLASSES, crops).reshape(len(paths), 10, CLASSES).mean(1)
    order = np.argsort(-probs, 1)
    rank = np.array([list(o).index(y) for o, y in zip(order, labels)])
    gaps = -np.diff(np.sort(probs, 1)[:, ::-1][:, :6], axis=1)
    assert gaps.min() > 1e-5, 'near-ties would make the counts depend on rounding'
    assert 0 < (rank < 5).sum() < len(paths) and len(set(order[:, 0])) > 2   # informative figures
    top1, top5 = (rank < 1).mean(), (rank < 5).mean()

    assert float(final.group(1)) == pytest.approx(100 * top1, abs=0.005)
    assert float(final.group(2)) == pytest.approx(100 * top5, abs=0.005)
    assert int(final.group(3)) == len(paths)
    r = json.loads(out.read_text())
    assert r['top1'] == top1 and r['topk'] == top5 and r['k'] == 5 and r['images'] == len(paths)
    assert r['checkpoint'] == run['prefix'] and r['crops'] == 'ten' and r['num_crops'] == 10
    assert r['split'] == 'test' and r['dataset'] == 'folder'


def test_centre_crop_and_random_crop_lines_and_split_override(run, capsys):
    assert test_script.main(['--train-dir', str(run['dir']), '--center', '--no-progress']) == 0
    final = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r'top-1 \d+\.\d\d% top-5 \d+\.\d\d% \(50 images, centre crop\)', final), final

    paths, labels = split_files(run['tree'])
    crops = np.stack([ten_crops(p, run['meta']['mean'])[4] for p in paths])
    probs = network_probabilities(run['prefix'], CLASSES, crops)
    assert final.startswith(f'top-1 {100 * (probs.argmax(1) == labels).mean():.2f}% ')

    assert test_script.main(['--checkpoint', run['prefix'], '--crops', '2', '--split', 'val', '--top-k', '3']) == 0
    final = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r'top-1 \d+\.\d\d% top-3 \d+\.\d\d% \(10 images, 2 random crops\)', final), final


def test_errors_are_one_line(run, tmp_path, capsys):
    assert test_script.main(['--train-dir', str(tmp_path / 'nothing')]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: no checkpoint in') and 'train.py -scratch' in err and err.count('\n') == 1

    synthetic = tmp_path / 'synthetic'
    synthetic.mkdir()
    for path in Path(run['prefix']).parent.glob(Path(run['prefix']).name + '.*'):
        shutil.copy(path, synthetic)
    meta = dict(run['meta'], dataset='synthetic', data_dir=None, class_names=[f'class_{i}' for i in range(CLASSES)])
    checkpoints.write_json_atomic(str(synthetic / Path(run['prefix']).name) + '.json', meta)
    assert test_script.main(['--train-dir', str(synthetic)]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error:') and '--dataset' in err and '--data-dir' in err and err.count('\n') == 1
    assert test_script.main(['--train-dir', str(synthetic), '--dataset', 'folder', '--data-dir', str(run['tree']),
                             '--center', '--no-progress']) == 0
    assert '(50 images, centre crop)' in capsys.readouterr().out

    assert test_script.main(['--train-dir', str(run['dir']), '--crops', '0']) == 2
    assert 'error: --crops must be at least 1' in capsys.readouterr().err
    assert test_script.main(['--train-dir', str(run['dir']), '--dataset', 'demo']) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: the demo dataset has 10 classes that are not the 10 classes the checkpoint')
