"""train.py and the commands that read checkpoints, given the run folder's sub-folders, weights files and
fine-tuning mistakes: one line that says what to do, and nothing written."""
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

import checkpoints
import classify
import export
import test as test_script
from helpers import SMALL, make_learnable_tree, run_train, variables


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob('*'))


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """One epoch on 4 classes, with features/ and best/."""
    root = tmp_path_factory.mktemp('refusals')
    tree = make_learnable_tree(root / 'data')
    three = make_learnable_tree(root / 'three', classes=3)
    run_dir = root / 'run'
    assert run_train('-scratch', '--dataset', 'folder', '--data-dir', tree, '--train-dir', run_dir, '--epochs', 1,
                     '--save-features', *SMALL) == 0
    return dict(root=root, tree=tree, three=three, dir=run_dir, image=next((tree / 'val' / 'class0').glob('*.png')))


def one_error_line(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith('error:')]
    assert len(lines) == 1 and 'Traceback' not in err, err[-2000:]
    return lines[0]


@pytest.mark.slow
def test_a_features_checkpoint_is_refused_by_every_command_that_needs_the_whole_network(run, tmp_path, capsys):
    features = str(run['dir'] / 'features')
    for main, argv in ((test_script.main, ['--checkpoint', features, '--data-dir', run['tree']]),
                       (classify.main, ['--checkpoint', features, run['image']]),
                       (export.main, ['--checkpoint', features, '--out', tmp_path / 'export'])):
        assert main([str(a) for a in argv]) == 2
        assert 'holds only the convolutional layers' in one_error_line(capsys)
    assert not (tmp_path / 'export').exists()


@pytest.mark.slow
def test_resume_of_best_features_or_imported_weights_is_refused_before_anything_is_written(run, tmp_path, capsys):
    before = listing(run['dir'])
    for sub in ('best', 'features'):
        assert run_train('-resume', '--train-dir', run['dir'] / sub) == 2
        line = one_error_line(capsys)
        assert f'resume the run folder itself (python train.py -resume --train-dir {run["dir"]})' in line
    assert listing(run['dir']) == before                               # no best/best/, no lock, nothing
    weights_only = tmp_path / 'imported'
    shutil.copytree(run['dir'] / 'best', weights_only)
    assert run_train('-resume', '--train-dir', weights_only) == 2
    assert 'holds weights without the optimizer\'s state' in one_error_line(capsys)


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_says_how_to_go_on(run, tmp_path, capsys):
    killed = tmp_path / 'killed'
    shutil.copytree(run['dir'] / 'best', killed / 'best')                # best/ written, then kill -9
    common = ['--dataset', 'folder', '--data-dir', run['tree'], '--train-dir', killed, *SMALL]
    assert run_train('-resume', '--train-dir', killed) == 2
    assert 'start it again with -scratch --overwrite' in one_error_line(capsys)
    assert run_train('-scratch', *common) == 2
    assert 'start it again with -scratch --overwrite' in one_error_line(capsys)
    assert run_train('-scratch', '--overwrite', '--max-steps', 1, *common) == 0


@pytest.mark.slow
def test_weights_files_and_empty_layer_lists_are_one_line(run, tmp_path, capsys):
    npy = tmp_path / 'bvlc_alexnet.npy'
    np.save(npy, np.zeros(3))
    common = ['--dataset', 'folder', '--data-dir', run['tree'], '--train-dir', tmp_path / 'new', *SMALL]
    assert run_train('-scratch', '--model_path', npy, *common) == 2
    assert f'python import_weights.py {npy}' in one_error_line(capsys)
    assert run_train('-scratch', '--model_path', run['dir'], '--train-layers', '', *common) == 2
    assert '--train-layers names no layer' in one_error_line(capsys)
    assert not (tmp_path / 'new').exists()


@pytest.mark.slow
def test_fine_tuning_to_other_classes_draws_fc8_and_must_train_it(run, tmp_path, capsys):
    new = tmp_path / 'three'
    common = ['--dataset', 'folder', '--data-dir', run['three'], '--train-dir', new, *SMALL, '--model_path', run['dir']]
    assert run_train('-scratch', '--train-layers', 'fc7', *common) == 2
    assert '--train-layers leaves fc8 at its random start' in one_error_line(capsys)
    # 4 classes to 3: fc8_a keeps its shape (2 of them) but not its meaning; it is drawn anew
    assert run_train('-scratch', '--train-layers', 'fc7,fc8', '--max-steps', 1, *common) == 0
    assert 'kept fresh: fc8_a/biases, fc8_a/weights, fc8_b/biases, fc8_b/weights' in capsys.readouterr().out
    old, fresh = variables(checkpoints.latest(str(run['dir']))[0]), variables(checkpoints.latest(str(new))[0])
    assert not np.allclose(old['fc8_a/weights'], fresh['fc8_a/weights'])
    assert np.array_equal(old['conv1_a/weights'], fresh['conv1_a/weights'])       # frozen, loaded


@pytest.mark.slow
def test_resume_may_train_more_layers_and_ignores_switches_in_the_json(run, tmp_path, capsys):
    tuned = tmp_path / 'tuned'
    assert run_train('-scratch', '--dataset', 'folder', '--data-dir', run['tree'], '--train-dir', tuned, *SMALL,
                     '--model_path', run['dir'], '--train-layers', 'fc8', '--max-steps', 2) == 0
    prefix = checkpoints.latest(str(tuned))[0]
    meta = json.loads(open(prefix + '.json').read())
    meta['args']['scratch'] = True                           # a hand edit: a command-line switch among the settings
    open(prefix + '.json', 'w').write(json.dumps(meta))
    capsys.readouterr()
    assert run_train('-resume', '--train-dir', tuned, '--train-layers', 'fc7,fc8', '--max-steps', 4) == 0
    assert 'momentum of the layers now trained starts at zero: fc7_a/' in capsys.readouterr().out
    assert checkpoints.latest(str(tuned))[1]['step'] == 4


@pytest.mark.slow
def test_resume_may_train_more_layers_with_ema_their_averages_start_at_their_weights(run, tmp_path, capsys):
    """--ema with --train-layers fc8, then -resume --train-layers fc7,fc8: fc7's averages, not in the
    checkpoint, start at fc7's weights (as a new average does); everything else is restored as it was.
    fc7's weights are moved off their initial values first, so that a start from the initialiser shows."""
    AVERAGE = checkpoints.AVERAGE_SUFFIX
    tuned = tmp_path / 'tuned'
    assert run_train('-scratch', '--dataset', 'folder', '--data-dir', run['tree'], '--train-dir', tuned, *SMALL,
                     '--ema', 0.9, '--train-layers', 'fc8', '--max-steps', 2) == 0
    prefix = checkpoints.latest(str(tuned))[0]
    saved = variables(prefix)
    assert 'fc8_a/weights' + AVERAGE in saved and 'fc7_a/weights' + AVERAGE not in saved
    saved['fc7_a/weights'] = saved['fc7_a/weights'] + 0.01
    names = sorted(saved)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[''] * len(names),
                      tensors=[saved[n] for n in names])
    capsys.readouterr()
    assert run_train('-resume', '--train-dir', tuned, '--train-layers', 'fc7,fc8', '--max-steps', 3,
                     '--lr', 1e-12) == 0                       # a step that leaves the weights as they are
    assert 'fc7_a/weights' + AVERAGE in capsys.readouterr().out
    after = variables(checkpoints.latest(str(tuned))[0])
    d = min(0.9, (1 + 3) / (10 + 3))                           # the average's decay at step 3
    for name in ('fc7_a/weights', 'fc7_b/biases'):             # new: started at the weights
        np.testing.assert_allclose(after[name + AVERAGE], saved[name], atol=1e-6, err_msg=name)
    for name in ('fc8_a/weights', 'fc8_b/biases'):             # restored, then averaged one step further
        expected = d * saved[name + AVERAGE] + (1 - d) * after[name]
        np.testing.assert_allclose(after[name + AVERAGE], expected, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(after['conv1_a/weights'], saved['conv1_a/weights'])      # frozen, restored


@pytest.mark.slow
def test_a_json_whose_resize_is_smaller_than_its_crop_is_named(run, tmp_path, capsys):
    copy = tmp_path / 'edited'
    shutil.copytree(run['dir'], copy, ignore=shutil.ignore_patterns('best', 'features', '.lock'))
    prefix = checkpoints.latest(str(copy))[0]
    meta = json.loads(open(prefix + '.json').read())
    open(prefix + '.json', 'w').write(json.dumps(dict(meta, resize_size=60)))
    assert classify.main(['--checkpoint', prefix, str(run['image'])]) == 2
    assert '"resize_size" 60 is smaller than its "input_size" 67' in one_error_line(capsys)
