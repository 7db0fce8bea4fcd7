"""--time-budget: a run planned to end inside a wall-clock budget, whatever the machine.

    python train.py -scratch --dataset cifar10 --time-budget 55m ...

A recipe written in epochs cannot promise a time: the same command runs 5x faster
on one machine than another. With a budget, the first epoch is measured (its
steps, then the validation and checkpoint writes of its end) and the number of
steps that fits in what is left is planned; one-cycle then ends at the planned
step. Every later epoch is measured the same way, start to start, and the plan
is made again from it (and between epoch ends from the steps' cost, after every
5% of the budget), so an epoch that costs more than planned (other work on the
machine, slower saves) shortens the run instead of overrunning the budget.
Each plan is recorded in every checkpoint ('plan', with its 'history') and
-resume continues from the recorded one; the time used so far, across -resume
runs, is recorded too. A budget spent before the first epoch ends stops the run
there, with a checkpoint and a warning.
"""
import os
import re
import math
import time
import warnings

from datasets import DataError

SAFETY = 0.98            # plan for 98% of what is left: the plan is made again at every epoch's end, so what
                         # is kept in hand covers one epoch's variation and the process's exit
OVER_PLAN = 0.10         # an epoch that costs 10% more than planned is said in a warning
REPLAN_SHARE = 0.05      # between epoch ends, the plan is made again after every 5% of the budget
MAX_SECONDS = 366 * 86400   # a budget longer than a year is a typing mistake
UNITS = {'s': 1, 'm': 60, 'h': 3600}


def process_start():
    """When this process started (wall clock), so that a budget counts Python's and TensorFlow's start-up
    too; now where /proc cannot tell (not Linux)."""
    try:
        with open('/proc/self/stat') as f:
            started_ticks = int(f.read().rsplit(')', 1)[1].split()[19])
        with open('/proc/uptime') as f:
            uptime = float(f.read().split()[0])
        return time.time() - (uptime - started_ticks / os.sysconf('SC_CLK_TCK'))
    except (OSError, ValueError, IndexError):
        return time.time()


def parse_duration(text):
    """Seconds of '55m', '1.5h', '3300s' or '3300' (seconds); a DataError otherwise."""
    found = re.fullmatch(r'\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*', str(text).lower())
    seconds = float(found.group(1)) * UNITS[found.group(2) or 's'] if found else 0.0
    if not 0 < seconds <= MAX_SECONDS:
        raise DataError(f'--time-budget {text}: give a duration such as 55m, 1.5h or 3300s (at most a year)')
    return seconds


def _seconds(x):
    return f'{x:.0f} s' if x >= 10 else f'{x:.1f} s'


def now():
    """The clock every budget measure reads (the tests drive it)."""
    return time.time()


def plan(budget_seconds, seconds_used, step_now, steps_per_epoch, step_seconds, epoch_end_seconds):
    """The plan: how many steps in all fit in what is left of the budget, when a step costs step_seconds
    and every epoch's end (and the plan's last step, validated and saved) costs epoch_end_seconds."""
    left = max(0.0, budget_seconds - seconds_used) * SAFETY - epoch_end_seconds     # the last end in full
    per_step = step_seconds + epoch_end_seconds / steps_per_epoch
    total = step_now + max(0, math.floor(left / per_step))
    return dict(total_steps=total, budget_seconds=budget_seconds, seconds_per_step=round(step_seconds, 4),
                epoch_end_seconds=round(epoch_end_seconds, 2), planned_at_step=step_now,
                epochs=round(total / steps_per_epoch, 2))


class Budget:
    """A run's --time-budget (seconds, or None) and its clock: the plan, made at the first epoch's end and
    again at each later one, and the wall-clock time used so far, the earlier -resume runs' included."""

    def __init__(self, seconds, started, meta=None):
        self.seconds, self.started = seconds, started
        self.plan = meta.get('plan') if meta else None
        self.seconds_before = meta.get('seconds_used', 0.0) if meta else 0.0
        self.mark_step = self.mark_time = None     # where the steps' cost is measured from (mark)

    def mark(self, step):
        """The steps' cost is measured from here (after the process's first step, and each epoch's end)."""
        self.mark_step, self.mark_time = step, now()

    def replan_if_due(self, step, steps_per_epoch):
        """Between epoch ends: plan again from the steps since the mark once REPLAN_SHARE of the budget has
        passed (a machine that slows or speeds up mid-epoch); True when it did."""
        if not self.plan or self.reached(step) or self.mark_time is None or step <= self.mark_step or \
                step % steps_per_epoch == 0 or now() - self.mark_time < self.seconds * REPLAN_SHARE:   # an end plans
            return False
        step_seconds = (now() - self.mark_time) / (step - self.mark_step)
        self._plan(step, steps_per_epoch, step_seconds, self.plan['epoch_end_seconds'])
        self.mark(step)
        return True

    def _plan(self, step, steps_per_epoch, step_seconds, epoch_end_seconds):
        history = (self.plan or {}).get('history', [])
        self.plan = plan(self.seconds, self.used(), step, steps_per_epoch, step_seconds, epoch_end_seconds)
        self.plan['history'] = history + [[step, self.plan['total_steps']]]

    def used(self):
        return self.seconds_before + now() - self.started

    def reached(self, step):
        """True once the plan's last step is done."""
        return bool(self.plan) and step >= self.plan['total_steps']

    def spent_before_plan(self):
        """True when the budget is spent before the first epoch could be measured: the run stops there."""
        return bool(self.seconds) and not self.plan and self.used() >= self.seconds * SAFETY

    def minutes_left(self):
        return (self.plan['budget_seconds'] - self.used()) / 60

    def end_epoch(self, step, steps_per_epoch, steps, steps_seconds, end_seconds, warmup_seconds=0.0):
        """Measure the epoch just ended (`steps` steps in steps_seconds, the first of them a warm-up of
        warmup_seconds, then its end in end_seconds) and plan again; the epoch line's words ('' without a
        budget). Warns when the epoch cost more than OVER_PLAN over its plan, or the budget cannot be kept."""
        if not self.seconds:
            return ''
        timed = steps - (1 if warmup_seconds else 0)
        if timed < 1 and not self.plan:
            return ''
        step_seconds = (steps_seconds - warmup_seconds) / timed if timed >= 1 else self.plan['seconds_per_step']
        took, words = steps_seconds - warmup_seconds + end_seconds, ''      # the process's first step aside
        if self.plan:
            planned = self.plan['seconds_per_step'] * timed + self.plan['epoch_end_seconds']
            words = f' | planned {_seconds(planned)}, took {_seconds(took)}'
            if took > planned * (1 + OVER_PLAN):
                warnings.warn(f'the epoch to step {step} took {_seconds(took)}, {100 * (took / planned - 1):.0f}% '
                              f'more than the {_seconds(planned)} planned: the --time-budget plan is made again '
                              f'from it')
        if self.reached(step) and not self.spent_before_plan():
            return words
        first = self.plan is None
        self._plan(step, steps_per_epoch, step_seconds, end_seconds)
        if first and self.plan['total_steps'] == step:
            warnings.warn(f'the --time-budget of {self.seconds / 60:.1f} min cannot be kept: the first epoch took '
                          f'{self.used() / 60:.1f} min of it; the run stops at step {step} (a checkpoint is '
                          f'saved): give a longer budget, or train without one')
        return words


def describe(p, seconds_used):
    """One line: the plan and the time left."""
    return (f'plan {p["total_steps"]} steps ({p["epochs"]:g} epochs) in the {p["budget_seconds"] / 60:.0f} min '
            f'budget, {max(0.0, p["budget_seconds"] - seconds_used) / 60:.1f} min left')
