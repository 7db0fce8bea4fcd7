"""budget.py: durations, and the plan that fits a budget."""
import warnings

import pytest

import budget
from errors import DataError


@pytest.mark.parametrize('text,seconds', [('55m', 3300), ('1.5h', 5400), ('3300s', 3300), ('90', 90), (' 2H ', 7200)])
def test_durations(text, seconds):
    assert budget.parse_duration(text) == seconds


@pytest.mark.parametrize('text', ['soon', '0m', '-5m', '5 minutes', ''])
def test_bad_durations_are_one_line(text):
    with pytest.raises(DataError, match='give a duration such as 55m'):
        budget.parse_duration(text)


def test_the_plan_fills_what_is_left_with_steps_and_epoch_ends():
    # 100 s used of 1000; a step costs 1 s and an epoch's end (10 steps) 10 s: 2 s a step in all. 98% of the
    # 900 s left is 882 s, less the last end's 10 s: 436 more steps
    p = budget.plan(1000, 100, step_now=10, steps_per_epoch=10, step_seconds=1.0, epoch_end_seconds=10)
    assert budget.SAFETY == 0.98 and p['total_steps'] == 10 + 436 and p['planned_at_step'] == 10
    assert p['epochs'] == pytest.approx(p['total_steps'] / 10, abs=0.01)
    over = budget.plan(100, 150, step_now=10, steps_per_epoch=10, step_seconds=1.0, epoch_end_seconds=1)
    assert over['total_steps'] == 10                       # already past the budget: stop where it is
    assert '(44.6 epochs) in the 16.7 min budget, 15.0 min left' in budget.describe(p, 100)
    assert 'in the 55 min budget' in budget.describe(dict(p, budget_seconds=3300), 100)


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_epochs_that_cost_more_than_planned_warn_and_shorten_the_plan(monkeypatch):
    """A fake clock: the first epoch (a 15 s warm-up step, 9 steps of 1 s, a 10 s end) plans the run; the
    next costs twice as much, which warns and plans again; -resume continues from the recorded plan."""
    clock = FakeClock()
    monkeypatch.setattr(budget, 'now', clock)
    b = budget.Budget(1000, started=clock())
    clock.t += 24 + 10                                     # epoch 1: its steps, then its end
    with warnings.catch_warnings():
        warnings.simplefilter('error')                     # no warning for a first epoch that fits
        assert b.end_epoch(10, 10, 10, steps_seconds=24, end_seconds=10, warmup_seconds=15) == ''
    first = b.plan
    # 34 s used: 98% of the 966 s left, less the last end's 10 s, at 2 s a step (1 s + 10 s / 10 steps): 468
    assert first['seconds_per_step'] == 1.0 and first['planned_at_step'] == 10 and first['history'] == [[10, 10 + 468]]
    clock.t += 40                                          # epoch 2: 20 s of steps, 20 s of end: 40 s, planned 20
    with pytest.warns(UserWarning, match=r'took 40 s, 100% more than the 20 s planned'):
        words = b.end_epoch(20, 10, 10, steps_seconds=20, end_seconds=20)
    assert words == ' | planned 20 s, took 40 s'
    assert b.plan['total_steps'] < first['total_steps'] and b.plan['seconds_per_step'] == 2.0
    assert b.plan['history'] == [[10, first['total_steps']], [20, b.plan['total_steps']]]
    resumed = budget.Budget(1000, started=clock(), meta=dict(plan=b.plan, seconds_used=b.used()))
    assert resumed.plan == b.plan and resumed.used() == pytest.approx(b.used())


def test_a_budget_spent_in_the_first_epoch_stops_it_and_says_so(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(budget, 'now', clock)
    b = budget.Budget(60, started=clock())
    assert not b.spent_before_plan()
    clock.t += 70
    assert b.spent_before_plan()
    with pytest.warns(UserWarning, match='cannot be kept: the first epoch took 1.2 min'):
        b.end_epoch(3, 10, 3, steps_seconds=70, end_seconds=0)
    assert b.reached(3) and b.plan['total_steps'] == 3


@pytest.mark.parametrize('text', ['1' * 400, '9999999h'])
def test_absurd_budgets_are_one_line(text):
    with pytest.raises(DataError, match='at most a year'):
        budget.parse_duration(text)


def test_the_process_start_is_in_the_past():
    """Between the machine's boot (where /proc tells it) and now, however long the tests have run."""
    import time
    from pathlib import Path
    uptime = Path('/proc/uptime')
    booted = time.time() - float(uptime.read_text().split()[0]) if uptime.exists() else 0
    assert booted - 1 <= budget.process_start() <= time.time()


def test_between_epoch_ends_the_plan_follows_the_steps_cost(monkeypatch):
    """After each 5% of the budget the steps since the last mark re-plan: slower steps, fewer of them."""
    clock = FakeClock()
    monkeypatch.setattr(budget, 'now', clock)
    b = budget.Budget(1000, started=clock())
    clock.t += 20
    b.end_epoch(10, 100, 10, steps_seconds=10, end_seconds=10)             # 1 s a step, a 10 s end
    b.mark(10)
    planned = b.plan['total_steps']
    clock.t += 40
    assert not b.replan_if_due(30, 100)                                    # 40 s < 5% of 1000 s: not yet
    clock.t += 20
    assert b.replan_if_due(40, 100)                                        # 60 s for 30 steps: 2 s a step
    assert b.plan['seconds_per_step'] == 2.0 and b.plan['total_steps'] < planned
    assert b.plan['history'][-1] == [40, b.plan['total_steps']] and b.mark_step == 40
    clock.t += 120
    assert not b.replan_if_due(100, 100)              # due, but an epoch's last step: its end plans there, once


def test_a_budget_spent_before_the_first_step_is_one_line_saying_by_what(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(budget, 'now', clock)
    b = budget.Budget(600, started=clock())
    clock.t += 500
    assert b.spent_at_start('runs/x') is None
    clock.t += 100
    assert 'the start-up (TensorFlow, the data, the graph, the session) took 10 min of the 10 min ' \
           '--time-budget, so no step could be taken: give a larger --time-budget' in b.spent_at_start('runs/x')
    resumed = budget.Budget(600, started=clock(), meta=dict(plan=None, seconds_used=550))
    clock.t += 40
    words = resumed.spent_at_start('runs/x')
    assert 'earlier runs used 9.2 min and this start-up 40 s' in words and '--model_path runs/x' in words
    assert budget.Budget(None, started=0).spent_at_start('runs/x') is None


def test_a_budget_spent_by_the_processs_only_step_still_stops_the_run(monkeypatch):
    """-resume with no plan yet: the process's first step (a warm-up, not measured) spends the budget, and
    its epoch ends after it: that end plans the stop there all the same (no end without a plan, which
    would go round again without a step)."""
    clock = FakeClock()
    monkeypatch.setattr(budget, 'now', clock)
    b = budget.Budget(60, started=clock(), meta=dict(plan=None, seconds_used=50))
    clock.t += 5
    assert b.spent_at_start('runs/x') is None
    clock.t += 5                                           # the step
    b.mark(6)
    assert b.spent_before_plan() and b.spent_at_start('runs/x') is None    # a step was taken: not the start-up's
    with pytest.warns(UserWarning, match='cannot be kept'):
        b.end_epoch(6, 1000, 1, steps_seconds=5, end_seconds=0, warmup_seconds=5)
    assert b.plan['total_steps'] == 6 and b.reached(6) and not b.spent_before_plan()


def test_the_budget_says_where_the_run_stops_and_the_way_on_from_there():
    """--epochs, or the plan's steps, capped by --max-steps. At the plan's last step the way on is a new run
    from its weights (what -resume's "nothing to do" says), not a -resume that would have nothing to do."""
    b = budget.Budget(None, started=0, steps_per_epoch=10, epochs=3, max_steps=25)
    assert b.last_step() == 25 and b.epochs_planned() == 3 and b.total_steps is None
    assert b.nothing_to_do(24, 'runs/x') is None
    assert b.nothing_to_do(25, 'runs/x') == \
        'nothing to do: the run is at step 25 and stops at 25 (raise --epochs or --max-steps)'
    assert b.stopped(25, None, 'runs/x') == \
        'reached --max-steps at step 25: checkpoint saved; continue with: python train.py -resume --train-dir runs/x'
    planned = budget.Budget(600, started=0, meta=dict(plan=dict(total_steps=23, budget_seconds=600)),
                            steps_per_epoch=10, epochs=2)
    assert planned.last_step() == 23 and planned.epochs_planned() == 3 and planned.total_steps == 23
    way_on = ('to train further, start a new run from its weights: python train.py -scratch --model_path runs/x '
              '--train-dir NEW_FOLDER ...')
    assert planned.nothing_to_do(23, 'runs/x') == \
        f'nothing to do: the run is at step 23 and stops at 23 (its --time-budget plan ends there; {way_on})'
    assert planned.stopped(23, None, 'runs/x') == \
        f'reached the --time-budget plan\'s last step at step 23: checkpoint saved; {way_on}'
    assert planned.stopped(20, 'SIGINT', 'runs/x') == \
        'stopped by SIGINT at step 20: checkpoint saved; continue with: python train.py -resume --train-dir runs/x'
