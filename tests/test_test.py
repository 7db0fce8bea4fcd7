"""test.py: crops, exact top-1/top-5 against an independent NumPy evaluation, output, errors."""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import checkpoints
import test as test_script
from helpers import (EVAL_CLASSES as CLASSES, INPUT_SIZE, RESIZE_SIZE, make_run, network_probabilities, split_files,
                     square, ten_crops)

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


@pytest.mark.slow
def test_ten_crops_are_the_corners_the_centre_and_their_reflections(run):
    split, crops, labels = first_batch(run, '--ten-crop', '--batch-size', '4')
    assert crops.shape == (4, 10, INPUT_SIZE, INPUT_SIZE, 3)
    for path, label, got in zip(split.files, labels, crops):
        assert label == int(Path(path).parent.name[len('class'):])
        np.testing.assert_allclose(got, ten_crops(path, run['meta']['mean']), atol=1e-4)
        flat = got.reshape(10, -1)
        assert all(not np.allclose(flat[i], flat[j]) for i in range(10) for j in range(i))


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_errors_are_one_line(run, tmp_path, capsys):
    assert test_script.main(['--train-dir', str(tmp_path / 'nothing')]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: no checkpoint in') and 'train.py -scratch' in err and err.count('\n') == 1
    for json_path, message in ((tmp_path / 'nowhere' / 'result.json', f'there is no folder {tmp_path / "nowhere"}'),
                               (tmp_path, f'--json {tmp_path} is a folder')):    # refused before the evaluation
        assert test_script.main(['--train-dir', str(run['dir']), '--center', '--json', str(json_path)]) == 2
        captured = capsys.readouterr()
        assert captured.err.startswith('error:') and message in captured.err and captured.err.count('\n') == 1
        assert 'images' not in captured.out, captured.out

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

    with pytest.raises(SystemExit):                # refused by the parser, before the run is read
        test_script.main(['--train-dir', str(run['dir']), '--crops', '0'])
    assert 'error: argument --crops: must be at least 1, got 0' in capsys.readouterr().err
    assert test_script.main(['--train-dir', str(run['dir']), '--dataset', 'demo']) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: the demo dataset has 10 classes that are not the 10 classes the checkpoint')
