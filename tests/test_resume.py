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

import budget
import checkpoints
import evaluate
import trainer
from conftest import REPO
from helpers import SMALL, events, run_train, variables


class FakeClock:
    """budget.now for a whole run: fake seconds pass only where a test says what a part costs, so a plan
    is the same whatever the machine's load."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def costing(monkeypatch, owner, name, clock, seconds):
    """owner.name (a function or method) made to cost `seconds` of the fake clock each call."""
    real = getattr(owner, name)

    def timed(*args, **kwargs):
        clock.t += seconds
        return real(*args, **kwargs)
    monkeypatch.setattr(owner, name, timed)


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(budget, 'now', fake)
    return fake


def never_round_without_a_step(monkeypatch, most=5):
    """Trainer.run_epoch fails the test once called `most` times in a run: a loop that makes no progress
    ends the test instead of hanging it."""
    real, calls = trainer.Trainer.run_epoch, []

    def counted(self):
        calls.append(self.step)
        assert len(calls) < most, f'the epoch loop went round {len(calls)} times at step {self.step}'
        return real(self)
    monkeypatch.setattr(trainer.Trainer, 'run_epoch', counted)


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


def lines_until(proc, start):
    """What proc printed up to its first line that starts with `start` (all of it, if it ended before)."""
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(start):
            break
    return ''.join(lines)


@pytest.mark.slow
@pytest.mark.parametrize('stop', [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_save_and_exit_zero(tmp_path, stop):
    """The signal goes once the trainer listens (its first line, after its session), usually some steps
    in; wherever it lands under the machine's load, the run saves the step it stopped at and exits 0."""
    run_dir = tmp_path / 'run'
    proc = start_training(run_dir)
    try:
        assert wait_for(lambda: glob.glob(str(run_dir / 'events.out.tfevents.*'))), 'training never started'
        before = lines_until(proc, 'run folder:')
        time.sleep(3)
        proc.send_signal(stop)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    out = before + out
    assert proc.returncode == 0, out[-2000:]
    stopped = re.search(rf'stopped by {stop.name} at step (\d+): checkpoint saved', out)
    assert stopped and 'Traceback' not in out, out[-2000:]
    assert checkpoints.latest(str(run_dir))[1]['step'] == int(stopped.group(1))


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
def test_time_budget_plans_at_epoch_ends_and_resume_continues_the_plan(small_tree, tmp_path, capsys, monkeypatch,
                                                                        clock):
    """On the fake clock (a step costs 0.5 s, a validation 2 s: whatever the machine's load) a 20 s budget on
    2 steps an epoch: the first epoch (1 s of steps, its first a warm-up, and a 2 s end) leaves 17 s: 98% of
    it less the last end's 2 s, at 0.5 s + 2 s / 2 a step, is 9 more steps, 11 in all. -resume continues
    the plan, made again at each epoch's end, to its last step."""
    costing(monkeypatch, trainer.Trainer, 'step_once', clock, 0.5)
    costing(monkeypatch, evaluate, 'run', clock, 2)
    run_dir = tmp_path / 'run'
    common = ['--dataset', 'folder', '--data-dir', small_tree, '--train-dir', run_dir, *SMALL,
              '--lr-schedule', 'onecycle', '--epochs', 3]
    assert run_train('-scratch', '--time-budget', '20s', '--max-steps', 3, *common) == 0
    out = capsys.readouterr().out
    assert 'plan 11 steps (5.5 epochs) in the 20 s budget, 0.3 min left' in out
    meta = checkpoints.latest(str(run_dir))[1]
    plan = meta['plan']
    assert plan['planned_at_step'] == 2 and plan['budget_seconds'] == 20 and plan['total_steps'] == 11
    assert plan['history'] == [[2, 11]] and plan['seconds_per_step'] == 0.5 and plan['epoch_end_seconds'] == 2
    assert meta['step'] == 3 and meta['seconds_used'] == 3.5
    assert run_train('-resume', '--train-dir', run_dir, '--max-steps', 10 ** 6) == 0   # to the plan's end
    meta = checkpoints.latest(str(run_dir))[1]
    assert meta['step'] == meta['plan']['total_steps'] == 11
    assert meta['plan']['history'] == [[2, 11], [4, 11], [6, 11], [8, 11], [10, 11]]     # one plan an epoch end
    assert meta['seconds_used'] == 17.5                              # 3.5 s before, 8 steps and 5 ends since
    assert meta['learning_rate'] == pytest.approx(0.01 * (11 - 10) / 11)     # one-cycle's last step
    assert run_train('-resume', '--train-dir', run_dir) == 0
    out = capsys.readouterr().out
    assert 'nothing to do' in out and f'-scratch --model_path {run_dir}' in out      # how to train further
    shown = re.findall(r'^epoch ([\d.]+)/(\d+):', out, re.M)
    assert shown == [('2', '6'), ('3', '6'), ('4', '6'), ('5', '6'), ('5.50', '6')]   # the plan's, not --epochs 3
    assert run_train('-resume', '--train-dir', run_dir, '--time-budget', '2h') == 2
    assert 'cannot change on -resume' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_train('-scratch', '--time-budget', 'soon', *common)
    assert 'give a duration such as 55m' in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize('slow_part', ['session', 'describe'])
def test_a_budget_spent_by_the_start_up_stops_with_one_line(tmp_path, capsys, monkeypatch, clock, slow_part):
    """The start-up (here 15 fake seconds in the session, or just before the first step) takes the whole
    10 s budget: one error line naming the start-up's time, exit 2, no step and no checkpoint, instead of an
    epoch loop that goes round for ever at step 0. Caught at the session, the old run --overwrite names is
    still there (the new run failed to start)."""
    never_round_without_a_step(monkeypatch)
    owner = trainer.OneMachine if slow_part == 'session' else trainer.Trainer
    costing(monkeypatch, owner, slow_part, clock, 15)
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    old = [run_dir / f'model.ckpt-5{ext}' for ext in ('.index', '.json', '.data-00000-of-00001')]
    for path in old:
        path.write_text('an earlier run')
    code = run_train('-scratch', '--overwrite', '--synthetic', '--num-classes', 4, '--train-dir', run_dir, *SMALL,
                     '--time-budget', '10s', '--max-steps', 3)
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith('error:')]
    assert code == 2 and len(errors) == 1 and 'Traceback' not in err, err
    assert 'the start-up' in errors[0] and 'took 15 s of the 10 s --time-budget' in errors[0], errors[0]
    assert 'give a larger --time-budget' in errors[0]
    assert len(out.splitlines()) < 10 and 'epoch 1/' not in out, out[-2000:]
    if slow_part == 'session':
        assert all(path.read_text() == 'an earlier run' for path in old)
        assert not list(run_dir.glob('events.out.tfevents.*'))


@pytest.mark.slow
def test_resume_with_the_budget_spent_stops_with_one_line(tmp_path, capsys, monkeypatch, clock):
    """-resume of a run stopped before its first epoch's end (no plan yet) and 20 s into its 60 s budget.
    When its one step (a warm-up, not measured) spends the rest, that epoch's end still plans the stop there.
    When its start-up spends it: one line with the earlier runs' time and the start-up's, and the way on (the
    budget cannot change on -resume); the checkpoint is left as it was."""
    run_dir = tmp_path / 'run'
    common = ['--synthetic', '--num-classes', 4, '--train-dir', run_dir, *SMALL]
    costing(monkeypatch, trainer.Trainer, 'step_once', clock, 20)
    assert run_train('-scratch', '--time-budget', '1m', '--max-steps', 1, *common) == 0
    assert checkpoints.latest(str(run_dir))[1]['seconds_used'] == 20
    shutil.copytree(run_dir, tmp_path / 'copy', ignore=shutil.ignore_patterns('.lock'))
    never_round_without_a_step(monkeypatch)
    costing(monkeypatch, trainer.Trainer, 'step_once', clock, 20)          # 40 s a step now
    with pytest.warns(UserWarning, match='cannot be kept'):
        assert run_train('-resume', '--train-dir', tmp_path / 'copy', '--max-steps', 5) == 0
    assert 'reached the --time-budget plan\'s last step at step 2' in capsys.readouterr().out
    assert checkpoints.latest(str(tmp_path / 'copy'))[1]['plan']['total_steps'] == 2
    costing(monkeypatch, trainer.OneMachine, 'session', clock, 50)
    assert run_train('-resume', '--train-dir', run_dir, '--max-steps', 5) == 2
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and 'Traceback' not in err, err
    assert 'earlier runs used 20 s and this start-up 50 s' in errors[0], errors[0]
    assert f'-scratch --model_path {run_dir}' in errors[0] and len(out.splitlines()) < 10
    assert checkpoints.latest(str(run_dir))[1]['step'] == 1


@pytest.mark.slow
def test_a_plan_that_stops_at_an_epoch_end_validates_all_held_out_images_there(small_tree, tmp_path, capsys,
                                                                                  monkeypatch, clock):
    """--time-budget with --val-subset: when the plan made again at an epoch's end puts the last step there
    (the epoch's validation already ran on the subset), that end validates the whole split too, and best/
    comes from it. (The fake clock: a step costs 1 s.)"""
    costing(monkeypatch, trainer.Trainer, 'step_once', clock, 1)
    real = budget.plan

    def stops_at_step_4(budget_seconds, seconds_used, step_now, steps_per_epoch, *rest):
        total = step_now if step_now >= 4 else step_now + 100
        return dict(real(budget_seconds, seconds_used, step_now, steps_per_epoch, *rest), total_steps=total,
                    epochs=round(total / steps_per_epoch, 2))

    monkeypatch.setattr(budget, 'plan', stops_at_step_4)
    run_dir = tmp_path / 'run'
    assert run_train('-scratch', '--dataset', 'folder', '--data-dir', small_tree, '--train-dir', run_dir,
                     '--epochs', 3, '--time-budget', '1h', '--val-subset', 6, *SMALL) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith('epoch ')]
    assert len(lines) == 2 and 'val (6 images)' in lines[-1] and '| val loss' in lines[-1], out
    tags = events(str(run_dir))
    assert [s for s, _ in tags['val/top1']] == [4]
    best_meta = checkpoints.latest(str(run_dir / 'best'))[1]
    assert best_meta['step'] == 4 and best_meta['best']['top1'] == tags['val/top1'][0][1]
    assert checkpoints.latest(str(run_dir))[1]['best'] == best_meta['best']


@pytest.mark.slow
def test_a_run_stopped_at_its_plans_last_step_says_the_way_on_that_resume_would(small_tree, tmp_path, capsys,
                                                                                 monkeypatch, clock):
    """A plan that ends mid-epoch (fake clock: a step costs 1 s, a validation 2 s; 2 steps an epoch; a 10 s
    budget: the first epoch uses 4 s and plans 1 more step, 3 in all) stops there with a checkpoint. Its last
    line gives the way on that -resume would give ("nothing to do": the plan ends there, start a new run from
    its weights), not a -resume that does nothing."""
    costing(monkeypatch, trainer.Trainer, 'step_once', clock, 1)
    costing(monkeypatch, evaluate, 'run', clock, 2)
    run_dir = tmp_path / 'run'
    assert run_train('-scratch', '--dataset', 'folder', '--data-dir', small_tree, '--train-dir', run_dir, *SMALL,
                     '--epochs', 3, '--time-budget', '10s') == 0
    out = capsys.readouterr().out
    stopped = re.search(r"^reached the --time-budget plan's last step at step 3: checkpoint saved; (.+)$", out, re.M)
    assert stopped and checkpoints.latest(str(run_dir))[1]['step'] == 3, out[-2000:]
    assert run_train('-resume', '--train-dir', run_dir) == 0
    out = capsys.readouterr().out
    nothing = re.search(r'^nothing to do: the run is at step 3 and stops at 3 \(its --time-budget plan ends there; '
                        r'(.+)\)$', out, re.M)
    assert nothing, out[-2000:]
    assert stopped.group(1) == nothing.group(1) and f'-scratch --model_path {run_dir}' in stopped.group(1)
    assert 'continue with' not in stopped.group(1)
