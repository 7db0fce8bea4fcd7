"""budget.py: durations, and the plan that fits a budget."""
import pytest

import budget
from datasets import DataError


@pytest.mark.parametrize('text,seconds', [('55m', 3300), ('1.5h', 5400), ('3300s', 3300), ('90', 90), (' 2H ', 7200)])
def test_durations(text, seconds):
    assert budget.parse_duration(text) == seconds


@pytest.mark.parametrize('text', ['soon', '0m', '-5m', '5 minutes', ''])
def test_bad_durations_are_one_line(text):
    with pytest.raises(DataError, match='give a duration such as 55m'):
        budget.parse_duration(text)


def test_the_plan_fills_what_is_left_with_steps_and_epoch_ends():
    # 100 s used of 1000; a step costs 1 s (median: the slow first step does not count), an epoch's end 10 s
    # for 10 steps: 2 s a step in all, so 90% of 900 s is 405 more steps
    p = budget.plan(1000, 100, step_now=10, steps_per_epoch=10, step_seconds=[1.0, 1.0, 9.0, 1.0],
                    epoch_end_seconds=10)
    assert budget.SAFETY == 0.9 and p['total_steps'] == 10 + 405 and p['planned_at_step'] == 10
    assert p['epochs'] == pytest.approx(p['total_steps'] / 10, abs=0.01)
    over = budget.plan(100, 150, step_now=10, steps_per_epoch=10, step_seconds=[1.0], epoch_end_seconds=1)
    assert over['total_steps'] == 10                       # already past the budget: stop where it is
    assert '41.5 epochs' in budget.describe(p, 100) and '15.0 min left' in budget.describe(p, 100)


def test_the_process_start_is_in_the_past():
    import time
    assert time.time() - 3600 < budget.process_start() <= time.time()
