"""learning.py: the one warning when training does not learn, on numbers (no graph), at an epoch's end
(epochs.check_learning with a stand-in trainer), and on small runs of train.py both sides."""
import math
import warnings
from types import SimpleNamespace

import pytest

import cli
import epochs
import learning
from helpers import SMALL, run_train

LN10 = math.log(10)


def test_the_check_is_due_once_at_the_epoch_end_that_reaches_min_steps(monkeypatch):
    monkeypatch.setattr(learning, 'MIN_STEPS', 50)
    assert [learning.due(start, start + 28, 28) for start in (0, 28, 56, 84)] == [False, True, False, False]
    assert learning.due(0, 10000, 10000)                      # a long epoch: its end, not step 50
    assert learning.due(48, 50, 2) and not learning.due(46, 48, 2) and not learning.due(50, 52, 2)
    assert learning.due(28, 56, 28)                           # resumed at step 55: its epoch began at 28
    assert not learning.due(28, 52, 28)                       # a run that stops mid-epoch before the boundary
    assert not learning.due(56, 84, 28)                       # resumed after the check: not again
    assert not learning.due(28, 56, 28, warmup_steps=84) and learning.due(56, 84, 28, warmup_steps=84)


@pytest.mark.parametrize('loss,top1,classes,stuck', [
    (LN10, 0.10, 10, True),                  # a uniform guess
    (0.985 * LN10, 0.14, 10, True),          # within the hair, top-1 just under 1.5 x chance
    (3.5, 0.10, 10, True),                   # the loss rose above ln C: not learning either
    (0.97 * LN10, 0.10, 10, False),          # below ln C by more than the hair: learning has begun
    (LN10, 0.16, 10, False),                 # top-1 above 1.5 x chance
    (math.log(4), 0.25, 4, True),
    (1.19, 0.59, 4, False),                  # the tests' tree after its first epoch with --init he
    (6.80, 0.001, 1000, True), (6.70, 0.001, 1000, False),
])
def test_stuck_means_loss_at_ln_c_and_top1_at_chance(loss, top1, classes, stuck):
    assert learning.stuck(loss, top1, classes) == stuck


def test_the_advice_says_what_was_seen_and_which_way_to_move_the_rate():
    line = learning.advice(2.3, 0.098, 10, 56, 0.01, 'paper', 'cifar10', 'data cache')
    assert '\n' not in line
    assert 'after 56 steps the loss is 2.300 (ln 10 = 2.303' in line and 'top-1 9.8% (chance 10.0%)' in line
    assert "--init he" in line and 'docs/departures.md' in line
    assert "`python cifar10_utils.py --data-dir 'data cache'`" in line
    assert 'a 10x lower --lr (0.001; too high a rate can leave dead ReLUs' in line   # flat at the paper's rate
    assert 'a 10x lower --lr (0.001; the loss is above ln 10)' in learning.advice(3.0, 0.1, 10, 56, 0.01)
    assert 'a 10x higher --lr (0.0001; at 1e-05 the weights barely move)' in learning.advice(3.0, 0.1, 10, 56, 1e-5)
    assert '--init he' not in learning.advice(2.3, 0.1, 10, 56, 0.01, 'he')
    assert '--init he' not in learning.advice(2.3, 0.1, 10, 56, 0.01, None)      # a warm start


@pytest.mark.parametrize('dataset,data_dir,words', [
    ('cifar10', None, '`python cifar10_utils.py` prints the images of each class'),
    ('imagenet', None, '`python imagenet_utils.py --data-dir ILSVRC2012 --verify`'),
    ('imagenet', '/d/in', '`python imagenet_utils.py --data-dir /d/in --verify`'),
    ('folder', 'pics', 'each folder of pics/train/ is one class'),
])
def test_the_advice_names_the_dataset_tool_that_checks_the_labels(dataset, data_dir, words):
    assert words in learning.advice(1.39, 0.25, 4, 56, 0.01, 'he', dataset, data_dir)


def test_the_demo_has_no_labels_to_check():
    assert 'label' not in learning.advice(2.3, 0.1, 10, 56, 0.01, 'he', 'demo')


def trainer(step, steps_per_epoch=28, schedule=SimpleNamespace(kind='plateau', warmup_epochs=0), **a):
    """What epochs.check_learning reads of a Trainer."""
    settings = dict(dict(synthetic=False, num_classes=10, lr=0.01, init='paper', model_path=None, dataset='demo',
                         data_dir=None), **a)
    return SimpleNamespace(a=SimpleNamespace(**settings), step=step, steps_per_epoch=steps_per_epoch, schedule=schedule)


def epoch_of(index, loss, top1, steps=28):
    epoch = epochs.Epoch(index)
    for _ in range(steps):
        epoch.add(loss, [top1, 5 * top1], 100.0)
    return epoch


def warned(t, epoch):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        epochs.check_learning(t, epoch)
    return [w for w in caught if w.category is learning.NotLearning]


def test_an_epoch_end_warns_once_when_due_and_stuck(monkeypatch):
    monkeypatch.setattr(learning, 'MIN_STEPS', 50)
    ends = [warned(trainer(28 * (i + 1)), epoch_of(i, LN10, 0.1)) for i in range(4)]
    assert [len(w) for w in ends] == [0, 1, 0, 0]
    line = cli.format_warning(ends[1][0].message)
    assert line.startswith('warning: training is not learning: after 56 steps') and line.count('\n') == 1
    assert not warned(trainer(56), epoch_of(1, 0.8 * LN10, 0.3))                 # learning: no word
    assert not warned(trainer(56, synthetic=True), epoch_of(1, LN10, 0.1))       # random labels by design


def test_a_one_cycle_warm_up_is_waited_for(monkeypatch):
    """Its rate is not yet --lr: the demo's 3 epochs of warm-up put the check at the end of the third."""
    monkeypatch.setattr(learning, 'MIN_STEPS', 50)
    warm_up = SimpleNamespace(kind='onecycle', warmup_epochs=3)
    ends = [warned(trainer(28 * (i + 1), schedule=warm_up), epoch_of(i, LN10, 0.1)) for i in range(4)]
    assert [len(w) for w in ends] == [0, 0, 1, 0]


@pytest.mark.slow
def test_a_run_that_does_not_move_warns_once(small_tree, tmp_path, monkeypatch):
    """--lr 1e-9: nothing moves, the loss stays at ln 4, top-1 at chance: one warning, at step 4 (the
    check moved from MIN_STEPS to the end of epoch 2 of 2 steps), none at epoch 3's end."""
    monkeypatch.setattr(learning, 'MIN_STEPS', 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert run_train('-scratch', '--dataset', 'folder', '--data-dir', small_tree, '--train-dir', tmp_path / 'run',
                         '--lr', '1e-9', '--epochs', 3, '--no-validate', *SMALL) == 0
    words = [str(w.message) for w in caught if w.category is learning.NotLearning]
    assert len(words) == 1 and 'after 4 steps' in words[0], words
    assert 'a 10x higher --lr (1e-08' in words[0] and '--init he' in words[0]
    assert f'each folder of {small_tree}/train/ is one class' in words[0]


@pytest.mark.slow
def test_a_run_that_learns_does_not_warn(tree, tmp_path, monkeypatch):
    """The learnable tree with --init he leaves ln 4 in its first epoch (8 steps): no warning there."""
    monkeypatch.setattr(learning, 'MIN_STEPS', 8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert run_train('-scratch', '--dataset', 'folder', '--data-dir', tree, '--train-dir', tmp_path / 'run',
                         '--init', 'he', '--epochs', 1, '--no-validate', *SMALL) == 0
    assert not [w for w in caught if w.category is learning.NotLearning]
