"""train.py's resuming: exactly where it stopped, after Ctrl-C, SIGTERM or SIGKILL, in a moved folder,
with the checkpoint and the data checked; and --time-budget's plan across epochs and -resume."""
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import checkpoints
from conftest import REPO
from helpers import SMALL, run_train, variables


@pytest.mark.slow
def test_resume_continues_exactly(tree, tmp_path):
    common = ['--dataset', 'folder', '--data-dir', tree, *SMALL, '--epochs', '3']
    assert run_train('-scratch', '--train-dir', tmp_path / 'straight', '--max-steps', 12, *common) == 0
    assert run_train('-scratch', '--train-dir', tmp_path / 'stopped', '--max-steps', 5, *common) == 0
    _, meta = checkpoints.latest(str(tmp_path / 'stopped'))
    assert meta['step'] == 5
    assert run_train('-resume', '--train-dir', tmp_path / 'stopped', '--max-steps', 12) == 0
    a_prefix, a_meta = checkpoints.latest(str(tmp_path / 'straight'))
    b_prefix, b_meta = checkpoints.latest(str(tmp_path / 'stopped'))
    assert a_meta['step'] == b_meta['step'] == 12
    assert a_meta['epoch'] == b_meta['epoch'] == 1.5
    assert a_meta['learning_rate'] == b_meta['learning_rate']
    a, b = variables(a_prefix), variables(b_prefix)
    assert a.keys() == b.keys() and len(a) > 60        # weights, momentum slots, step, learning rate
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_scratch_refuses_to_overwrite_and_resume_needs_a_run(tree, tmp_path, capsys):
    run_dir = tmp_path / 'run'
    assert run_train('-scratch', '--synthetic', '--num-classes', 4, '--train-dir', run_dir,
                     '--max-steps', 1, *SMALL) == 0
    capsys.readouterr()
    assert run_train('-scratch', '--synthetic', '--num-classes', 4, '--train-dir', run_dir, *SMALL) == 2
    assert 'already holds checkpoints' in capsys.readouterr().err
    assert checkpoints.latest(str(run_dir))[1]['step'] == 1
    assert run_train('-scratch', '--synthetic', '--num-classes', 4, '--train-dir', run_dir, '--overwrite',
                     '--max-steps', 2, *SMALL) == 0
    assert checkpoints.latest(str(run_dir))[1]['step'] == 2
    assert run_train('-resume', '--train-dir', tmp_path / 'nothing') == 2
    assert 'nothing to resume' in capsys.readouterr().err
    assert run_train('-resume', '--train-dir', run_dir, '--batch-size', 32) == 2
    assert 'cannot change on -resume' in capsys.readouterr().err


def start_training(run_dir, *extra):
    env = dict(os.environ, PYTHONUNBUFFERED='1', TF_CPP_MIN_LOG_LEVEL='2')
    return subprocess.Popen(
        [sys.executable, str(REPO / 'train.py'), '-scratch', '--synthetic', '--num-classes', '4',
         '--train-dir', str(run_dir), '--epochs', '1000', *SMALL, *extra],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(condition, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
@pytest.mark.parametrize('stop', [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_save_and_exit_zero(tmp_path, stop):
    run_dir = tmp_path / 'run'
    proc = start_training(run_dir)
    try:
        assert wait_for(lambda: glob.glob(str(run_dir / 'events.out.tfevents.*'))), 'training never started'
        time.sleep(3)
        proc.send_signal(stop)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert f'stopped by {stop.name}' in out and 'Traceback' not in out
    assert checkpoints.latest(str(run_dir))[1]['step'] >= 1


@pytest.mark.slow
def test_sigkill_mid_training_resumes_from_the_last_checkpoint(tmp_path):
    run_dir = tmp_path / 'run'
    proc = start_training(run_dir, '--save-steps', '1', '--keep', '2')
    try:
        assert wait_for(lambda: (checkpoints.latest(str(run_dir)) or (None, {'step': 0}))[1]['step'] >= 3), \
            'no checkpoints appeared'
        proc.kill()                                  # SIGKILL, possibly in the middle of a save
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    saved = checkpoints.latest(str(run_dir))[1]['step']
    assert run_train('-resume', '--train-dir', run_dir, '--max-steps', saved + 2) == 0
    assert checkpoints.latest(str(run_dir))[1]['step'] == saved + 2


@pytest.mark.slow
def test_resume_of_a_moved_run_uses_the_folder_it_is_in(tmp_path, monkeypatch):
    args = ['--synthetic', '--num-classes', 4, *SMALL]
    assert run_train('-scratch', '--train-dir', tmp_path / 'made_here', '--max-steps', 1, *args) == 0
    os.rename(tmp_path / 'made_here', tmp_path / 'moved')
    assert run_train('-resume', '--train-dir', tmp_path / 'moved', '--max-steps', 2) == 0
    assert checkpoints.latest(str(tmp_path / 'moved'))[1]['step'] == 2
    assert not (tmp_path / 'made_here').exists()
    monkeypatch.chdir(tmp_path)                          # no --train-dir: the default folder, found there
    os.makedirs('runs')
    os.rename(tmp_path / 'moved', tmp_path / 'runs' / 'alexnet')
    assert run_train('-resume', '--max-steps', 3) == 0
    assert checkpoints.latest('runs/alexnet')[1]['args']['train_dir'] == 'runs/alexnet'


@pytest.mark.slow
def test_resume_checks_the_checkpoint_and_the_data(tree, tmp_path, capsys):
    run_dir = tmp_path / 'run'
    data = tmp_path / 'data'
    shutil.copytree(tree, data)
    common = ['--dataset', 'folder', '--data-dir', data, '--train-dir', run_dir, *SMALL]
    assert run_train('-scratch', '--max-steps', 2, *common) == 0
    assert run_train('-resume', '--train-dir', run_dir, '--max-steps', 3) == 0
    newest = checkpoints.list_checkpoints(str(run_dir))[0]
    with open(newest + '.index', 'r+b') as f:                  # a kill -9 during the save of step 3
        f.truncate(10)
    capsys.readouterr()
    assert run_train('-resume', '--train-dir', run_dir, '--max-steps', 4) == 0
    err = capsys.readouterr().err
    assert 'skipped the damaged checkpoint' in err and 'model.ckpt-3' in err
    assert checkpoints.latest(str(run_dir), warn=False)[1]['step'] == 4
    meta = checkpoints.latest(str(run_dir))[1]
    assert run_train('-resume', '--train-dir', run_dir, '--precision', 'fp16') == 2
    assert 'cannot change to or from fp16' in capsys.readouterr().err
    os.rename(data / 'train' / 'class1', data / 'train' / 'renamed')
    os.rename(data / 'val' / 'class1', data / 'val' / 'renamed')
    assert run_train('-resume', '--train-dir', run_dir, '--max-steps', 5) == 2
    assert "other classes than the run" in capsys.readouterr().err
    edited = dict(meta)
    del edited['args']
    with open(checkpoints.latest(str(run_dir))[0] + '.json', 'w') as f:
        json.dump(edited, f)
    assert run_train('-resume', '--train-dir', run_dir) == 2
    err = capsys.readouterr().err
    assert 'lacks the run' in err and 'Traceback' not in err
    for edit, named in [(dict(lr='fast'), '"lr" is "fast", not a number'), (dict(mean=['a', 1, 2]), '"mean" is'),
                        (dict(validate='yes'), '"validate" is "yes", not true or false'),
                        (dict(batch_size=2.5), '"batch_size" is 2.5, not a whole number')]:
        with open(checkpoints.latest(str(run_dir), warn=False)[0] + '.json', 'w') as f:
            json.dump(dict(meta, args=dict(meta['args'], **edit)), f)
        assert run_train('-resume', '--train-dir', run_dir) == 2, edit
        err = capsys.readouterr().err
        assert err.count('error:') == 1 and named in err and 'edited by hand' in err and 'Traceback' not in err, err
    os.rename(data / 'train' / 'renamed', data / 'train' / 'class1')


@pytest.mark.slow
def test_time_budget_plans_at_epoch_ends_and_resume_continues_the_plan(tree, tmp_path, capsys):
    run_dir = tmp_path / 'run'
    common = ['--dataset', 'folder', '--data-dir', tree, '--train-dir', run_dir, *SMALL, '--lr-schedule', 'onecycle',
              '--epochs', 3]
    assert run_train('-scratch', '--time-budget', '45s', '--max-steps', 12, *common) == 0
    out = capsys.readouterr().out
    assert 'min budget' in out and 'min left' in out
    meta = checkpoints.latest(str(run_dir))[1]
    plan = meta['plan']
    assert plan['planned_at_step'] == 8 and plan['budget_seconds'] == 45 and plan['total_steps'] >= 8
    assert plan['history'] == [[8, plan['total_steps']]]
    assert 0 < meta['seconds_used'] < 45 + 60
    assert run_train('-resume', '--train-dir', run_dir, '--max-steps', 10 ** 6) == 0   # to the plan's end
    meta = checkpoints.latest(str(run_dir))[1]
    history = meta['plan']['history']
    assert history[0] == plan['history'][0] and meta['step'] == meta['plan']['total_steps'] == history[-1][1]
    assert all(later[0] > earlier[0] for earlier, later in zip(history, history[1:]))    # one plan an epoch end
    in_force = [total for step, total in history if step <= meta['step'] - 1][-1]          # at the last step
    assert meta['learning_rate'] == pytest.approx(0.01 * (in_force - meta['step'] + 1) / in_force)  # one-cycle
    assert run_train('-resume', '--train-dir', run_dir) == 0
    out = capsys.readouterr().out
    assert 'nothing to do' in out and f'-scratch --model_path {run_dir}' in out      # how to train further
    shown = [(float(i), int(n)) for i, n in re.findall(r'^epoch ([\d.]+)/(\d+):', out, re.M)]
    assert len(shown) >= 2 and all(i <= n for i, n in shown)          # out of the plan's epochs, not --epochs 3
    assert run_train('-resume', '--train-dir', run_dir, '--time-budget', '2h') == 2
    assert 'cannot change on -resume' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_train('-scratch', '--time-budget', 'soon', *common)
    assert 'give a duration such as 55m' in capsys.readouterr().err
