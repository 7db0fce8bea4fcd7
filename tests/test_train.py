"""train.py: learning, schedules, towers and devices, logs, warm starts, the run folder, errors
(resuming, signals and --time-budget: test_resume.py)."""
import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import alexnet
import checkpoints
import learning
import train
from helpers import SMALL, events, run_train, variables


@pytest.mark.slow
def test_learns_real_cifar10_images_and_logs_it(tmp_path, capsys, recwarn):
    """A couple of hundred steps on demo/ (real CIFAR-10 images) with its defaults: clearly above chance,
    so a change that stops the model learning fails CI. (8 epochs: on a 2-core CPU about 0.69 of the first
    epoch's loss at the end and 36% test top-1, well inside both bounds below; 12 took half as long again.)
    Nor does it get the warning for a run that does not learn (learning.py: checked at step 112)."""
    import json
    import test as test_script
    run_dir = tmp_path / 'run'
    assert run_train('-scratch', '--dataset', 'demo', '--train-dir', run_dir, '--epochs', '8',
                     '--log-steps', '7') == 0
    assert not [str(w.message) for w in recwarn if w.category is learning.NotLearning]
    out = capsys.readouterr().out
    assert 'input 67x67, batch 32, 8 epochs, lr 0.01 (onecycle)' in out and 'init he' in out   # the demo defaults
    prefix, meta = checkpoints.latest(str(run_dir))
    assert meta['step'] == 8 * 28 and meta['epoch'] == 8          # 900 training images, batch 32
    assert meta['class_names'][:3] == ['airplane', 'automobile', 'bird']
    tags = events(str(run_dir))
    losses = [v for _, v in tags['train/epoch_loss']]
    assert losses[-1] < 0.8 * losses[0], losses          # from about ln 10 = 2.3 (fc8 starts at zero)
    for tag in ('train/loss', 'train/top1', 'train/top5', 'train/epoch_top5', 'val/loss', 'val/top1', 'val/top5', 'learning_rate',
                'images_per_second', 'inputs/image/0'):
        assert tag in tags, tag
    assert checkpoints.latest(str(run_dir / 'best'))[1]['best'] == meta['best']
    result = tmp_path / 'result.json'
    assert test_script.main(['--train-dir', str(run_dir), '--center', '--json', str(result), '--no-progress']) == 0
    figures = json.loads(result.read_text())
    print(f"demo test top-1 {figures['top1']:.3f} top-5 {figures['topk']:.3f}")
    assert figures['images'] == 200 and figures['split'] == 'test'
    # chance is 10%; 17% of 200 images is more than 3 standard deviations above it
    assert figures['top1'] >= 0.17, figures


@pytest.mark.parametrize('argv,message', [
    (['--synthetic', '--batch-size', '0'], 'batch-size must be at least 1'),
    (['--dataset', 'folder', '--data-dir', '/no/such/folder'], 'does not exist'),
    (['--dataset', 'folder', '--data-dir', __file__], 'only CIFAR-10 takes an archive'),
    (['--synthetic', '--input-size', '40'], 'too small'),
    (['--synthetic', '--devices', 'gpu0'], 'bad device string'),
    (['--synthetic', '--lr-schedule', 'step'], 'needs --lr-steps'),
    (['--synthetic', '--lr', 'nan'], '--lr must be a finite number'),
    (['--synthetic', '--lr', 'inf'], '--lr must be a finite number'),
    (['--synthetic', '--lr', '-0.1'], '--lr must be positive'),
    (['--synthetic', '--momentum', 'nan'], '--momentum must be a finite number'),
    (['--synthetic', '--weight-decay', 'nan'], '--weight-decay must be a finite number'),
    (['--synthetic', '--min-improvement', 'nan'], '--min-improvement must be a finite number'),
    (['--synthetic', '--save-minutes', 'nan'], '--save-minutes must be a finite number'),
    (['--synthetic', '--save-minutes', '0'], '--save-minutes must be positive'),
    (['--synthetic', '--save-steps', '-5'], '--save-steps must not be negative'),
    (['--synthetic', '--seed', '-1'], '--seed must not be negative'),
    (['--synthetic', '--cutout', '8'], '--cutout hides part of each training image: leave it out of a --synthetic'),
])
def test_bad_values_get_one_line_errors(argv, message, tmp_path, capsys):
    assert run_train('-scratch', '--train-dir', tmp_path / 'run', *argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith('error:') and 'Traceback' not in err


def test_usage_without_mode_and_one_line_for_an_unknown_dataset(tmp_path, capsys):
    for argv, usage in (([], True), (['-scratch', '--dataset', 'mnist'], False)):
        with pytest.raises(SystemExit) as exit_info:
            train.main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert ('usage:' in err) == usage and err.strip().splitlines()[-1].startswith('error:')
        assert usage or (len(err.strip().splitlines()) == 1 and "invalid choice: 'mnist'" in err)


@pytest.mark.slow
def test_divergence_stops_with_the_step_and_keeps_the_last_checkpoint(tmp_path, capsys):
    run_dir = tmp_path / 'run'
    args = ['--synthetic', '--num-classes', 4, '--train-dir', run_dir, *SMALL]
    assert run_train('-scratch', '--max-steps', 2, *args) == 0
    code = run_train('-resume', '--train-dir', run_dir, '--lr', '1e9', '--max-steps', 40)
    err = capsys.readouterr().err
    assert code == 1 and 'training diverged' in err and 'at step' in err
    assert checkpoints.latest(str(run_dir))[1]['step'] == 2


@pytest.mark.slow
def test_plateau_lowers_the_rate_when_validation_stalls(small_tree, tmp_path):
    run_dir = tmp_path / 'run'
    assert run_train('-scratch', '--dataset', 'folder', '--data-dir', small_tree, '--train-dir', run_dir,
                     '--lr', '1e-9', '--patience', 1, '--epochs', 3, *SMALL) == 0
    meta = checkpoints.latest(str(run_dir))[1]
    assert meta['schedule']['drops'] >= 1 and meta['learning_rate'] < 1e-9
    rates = [v for _, v in events(str(run_dir))['learning_rate']]
    assert rates[0] == pytest.approx(1e-9) and rates[-1] < 1e-9


@pytest.mark.slow
def test_two_towers_on_two_logical_cpus_train_and_save_features(small_tree, tmp_path):
    run_dir = tmp_path / 'run'
    assert run_train('-scratch', '--dataset', 'folder', '--data-dir', small_tree, '--train-dir', run_dir, '--epochs', 1,
                     '--devices', '/cpu:0,/cpu:1', '--save-features', '--histograms', *SMALL) == 0
    meta = checkpoints.latest(str(run_dir))[1]
    assert meta['devices'] == '/cpu:0,/cpu:1' and meta['step'] == 2      # 32 images, batch 16
    features = checkpoints.latest(str(run_dir / 'features'))[0]
    saved = variables(features)
    assert {name.split('_')[0] for name in saved} - {'global'} == set(alexnet.FEATURE_LAYERS)
    weights = variables(checkpoints.latest(str(run_dir))[0])
    np.testing.assert_array_equal(saved['conv5_b/weights'], weights['conv5_b/weights'])
    tags = {}
    for path in glob.glob(str(run_dir / 'events.out.tfevents.*')):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update({value.tag: value.HasField('histo') for value in event.summary.value})
    assert tags.get('histograms/conv1_a/weights') and tags.get('histograms/fc8_b/biases')
    for folder in (run_dir, run_dir / 'best', run_dir / 'features'):      # TensorFlow's own tools find them
        assert tf.train.latest_checkpoint(str(folder)) == checkpoints.latest(str(folder))[0], folder


@pytest.mark.slow
def test_batches_prefetched_to_the_device_and_nchw_train_as_the_plain_run(tree, tmp_path):
    """--devices /cpu:1 (batches copied there by tf.data) with --data-format NCHW takes the same steps
    as the default run on /cpu:0 in NHWC: the same weights, up to float rounding. (A small rate: at 0.01
    the first steps' losses of 10+ amplify the layouts' different rounding into flipped ReLUs.)"""
    common = ['--dataset', 'folder', '--data-dir', tree, *SMALL, '--epochs', '1', '--max-steps', '4', '--lr', '0.001']
    assert run_train('-scratch', '--train-dir', tmp_path / 'plain', *common) == 0
    assert run_train('-scratch', '--train-dir', tmp_path / 'moved', '--devices', '/cpu:1',
                     '--data-format', 'NCHW', *common) == 0
    (a_prefix, a_meta), (b_prefix, b_meta) = (checkpoints.latest(str(tmp_path / d)) for d in ('plain', 'moved'))
    assert b_meta['devices'] == '/cpu:1,/cpu:1' and b_meta['args']['data_format'] == 'NCHW'
    a, b = variables(a_prefix), variables(b_prefix)
    assert a.keys() == b.keys() and a_meta['step'] == b_meta['step'] == 4
    for name in a:
        scale = max(np.abs(a[name]).max(), 1e-6)
        np.testing.assert_allclose(b[name], a[name], rtol=0, atol=1e-4 * scale, err_msg=name)


@pytest.mark.slow
def test_unreadable_images_are_skipped_and_counted(small_tree, tmp_path, capsys):
    import shutil
    data = tmp_path / 'data'
    shutil.copytree(small_tree, data)
    (data / 'train' / 'class0' / '0.png').write_bytes(b'not an image at all')     # every epoch visits all 32
    with pytest.warns(UserWarning, match='0.png: unreadable image, skipped'):
        assert run_train('-scratch', '--dataset', 'folder', '--data-dir', data, '--train-dir', tmp_path / 'run',
                         '--epochs', 1, *SMALL) == 0
    assert '| 1 unreadable image skipped' in capsys.readouterr().out


@pytest.mark.slow
def test_warm_start_from_another_run(tree, tmp_path, capsys):
    source = tmp_path / 'source'
    assert run_train('-scratch', '--synthetic', '--num-classes', 10, '--train-dir', source,
                     '--max-steps', 1, *SMALL) == 0
    capsys.readouterr()
    target = tmp_path / 'target'
    assert run_train('-scratch', '--dataset', 'folder', '--data-dir', tree, '--train-dir', target,
                     '--model_path', source, '--max-steps', 1, '--lr', '1e-12', *SMALL) == 0
    out = capsys.readouterr().out
    assert 'kept fresh: fc8_a/biases, fc8_a/weights, fc8_b/biases, fc8_b/weights' in out
    a = variables(checkpoints.latest(str(source))[0])
    b = variables(checkpoints.latest(str(target))[0])
    np.testing.assert_allclose(a['conv1_a/weights'], b['conv1_a/weights'], atol=1e-6)


def test_one_class_and_a_file_as_the_run_folder_are_one_line_errors(tmp_path, capsys):
    one = tmp_path / 'one' / 'train' / 'cats'
    one.mkdir(parents=True)
    for i in range(4):
        Image.new('RGB', (8, 8), (i, 0, 0)).save(one / f'{i}.png')
    assert run_train('-scratch', '--dataset', 'folder', '--data-dir', tmp_path / 'one', '--train-dir',
                     tmp_path / 'run', *SMALL) == 2
    assert 'needs at least 2 class folders' in capsys.readouterr().err
    (tmp_path / 'a_file').write_text('mine')
    assert run_train('-scratch', '--synthetic', '--train-dir', tmp_path / 'a_file', *SMALL) == 2
    err = capsys.readouterr().err
    assert 'is a file' in err and err.count('\n') == 1 and (tmp_path / 'a_file').read_text() == 'mine'


@pytest.mark.slow
def test_overwrite_deletes_only_the_runs_files_once_the_new_run_is_ready(tmp_path, capsys):
    run_dir = tmp_path / 'run'
    args = ['--synthetic', '--num-classes', 4, '--train-dir', run_dir, *SMALL]
    assert run_train('-scratch', '--max-steps', 2, *args) == 0
    (run_dir / 'notes.txt').write_text('mine')
    (run_dir / 'plots').mkdir()
    (run_dir / 'plots' / 'a.png').write_bytes(b'png')
    old = checkpoints.latest(str(run_dir))[0]
    # the old run's own checkpoint is read (warm start) before anything is deleted
    assert run_train('-scratch', '--overwrite', '--max-steps', 1, '--model_path', old, *args) == 0
    assert 'weights from' in capsys.readouterr().out
    assert (run_dir / 'notes.txt').read_text() == 'mine' and (run_dir / 'plots' / 'a.png').is_file()
    assert [os.path.basename(p) for p in checkpoints.list_checkpoints(str(run_dir))] == ['model.ckpt-1']
    assert len(glob.glob(str(run_dir / 'events.out.tfevents.*'))) == 1
    (run_dir / 'model.ckpt-1.index').unlink()             # a failing new run deletes nothing
    assert run_train('-scratch', '--overwrite', '--model_path', tmp_path / 'none', *args) == 2
    assert (run_dir / 'model.ckpt-1.json').is_file() and (run_dir / 'notes.txt').is_file()


@pytest.mark.slow
def test_a_second_trainer_on_the_same_folder_is_refused(tmp_path, capsys):
    from files import FolderLock
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    lock = FolderLock(str(run_dir))
    try:
        assert run_train('-scratch', '--synthetic', '--num-classes', 4, '--train-dir', run_dir, *SMALL) == 2
    finally:
        lock.release()
    err = capsys.readouterr().err
    assert f'is in use by process {os.getpid()}' in err and err.count('\n') == 1
    assert run_train('-scratch', '--synthetic', '--num-classes', 4, '--train-dir', run_dir, '--max-steps', 1,
                     *SMALL) == 0


@pytest.mark.slow
def test_no_readable_image_stops_with_one_line_instead_of_waiting(tmp_path, capsys, monkeypatch):
    """The data folder gone mid-run (or every file broken): the endless stream would wait for ever."""
    import preprocessing
    monkeypatch.setattr(preprocessing, 'image_mean', lambda files, seed=0: (0.0, 0.0, 0.0))
    for c in ('a', 'b'):
        (tmp_path / 'data' / 'train' / c).mkdir(parents=True)
        for i in range(20):
            (tmp_path / 'data' / 'train' / c / f'{i}.jpg').write_bytes(b'not a jpeg at all')
    code = run_train('-scratch', '--dataset', 'folder', '--data-dir', tmp_path / 'data', '--train-dir',
                     tmp_path / 'run', '--no-validate', *SMALL)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith('error:')]
    assert code == 2 and len(lines) == 1, err[-2000:]
    assert 'images in a row could not be read' in lines[0] and '.jpg' in lines[0] and 'Traceback' not in err


@pytest.mark.slow
def test_ema_and_val_subset(small_tree, tmp_path, capsys, monkeypatch):
    """--val-subset: the same few images each epoch, all of them at the last, which alone makes best/;
    --ema: validation, best/ and the scripts use the weights' averages (kept in the latest checkpoint)."""
    import evaluate
    seen, run = [], evaluate.run

    def recording(sess, probs, labels, init_op=None, **kw):
        sess.run(init_op)
        got = []
        while True:
            try:
                got += list(sess.run(labels))
            except tf.errors.OutOfRangeError:
                break
        seen.append(got)
        return run(sess, probs, labels, init_op, **kw)

    monkeypatch.setattr(evaluate, 'run', recording)
    run_dir = tmp_path / 'run'
    assert run_train('-scratch', '--dataset', 'folder', '--data-dir', small_tree, '--train-dir', run_dir,
                     '--epochs', 3, '--ema', 0.9, '--val-subset', 6, *SMALL) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith('epoch ')]
    assert ['val (6 images)' in line for line in lines] == [True, True, False] and '| val loss' in lines[2]
    assert len(seen) == 3 and seen[0] == seen[1] and len(seen[0]) == 6 and len(seen[2]) == 16
    tags = events(str(run_dir))
    assert [s for s, _ in tags['val_subset/top1']] == [2, 4] and [s for s, _ in tags['val/top1']] == [6]
    best_prefix, best_meta = checkpoints.latest(str(run_dir / 'best'))
    assert best_meta['step'] == 6 and best_meta['best']['top1'] == tags['val/top1'][0][1]
    latest_prefix = checkpoints.latest(str(run_dir))[0]
    latest, best = variables(latest_prefix), variables(best_prefix)
    for name in ('conv1_a/weights', 'fc8_b/biases'):
        np.testing.assert_array_equal(best[name], latest[name + checkpoints.AVERAGE_SUFFIX])
        assert not np.allclose(best[name], latest[name])
    with tf.Graph().as_default():
        weights = [tf.compat.v1.get_variable('fc8_b/biases', [2])]
        assert list(checkpoints.saved_weights(latest_prefix, weights)) == ['fc8_b/biases' + checkpoints.AVERAGE_SUFFIX]
