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
there, with a checkpoint and a warning; one spent before the process's first step
(a start-up longer than the budget) stops it at once with one error line.

Budget also says where every run stops (last_step: --epochs or the plan, and
--max-steps), with or without a budget, and the words for a run at its end.
"""
import os
import re
import math
import time
import warnings

from errors import DataError

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


def _span(x):
    return _seconds(x) if x < 120 else f'{round(x / 60, 1):g} min'


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


def new_run(train_dir):
    """The way on from a run whose --time-budget plan has ended (-resume keeps the budget)."""
    return (f'to train further, start a new run from its weights: python train.py -scratch --model_path {train_dir} '
            f'--train-dir NEW_FOLDER ...')


class Budget:
    """Where a run stops, and its --time-budget (seconds, or None) with its clock: the plan, made at the first
    epoch's end and again at each later one, and the wall-clock time used so far, the earlier -resume runs'
    included. Without a budget the run stops at --epochs (epochs of steps_per_epoch), or --max-steps."""

    def __init__(self, seconds, started, meta=None, steps_per_epoch=1, epochs=None, max_steps=None):
        self.seconds, self.started, self.resumed = seconds, started, meta is not None
        self.steps_per_epoch, self.epochs, self.max_steps = steps_per_epoch, epochs, max_steps
        self.plan = meta.get('plan') if meta else None
        self.seconds_before = meta.get('seconds_used', 0.0) if meta else 0.0
        self.mark_step = self.mark_time = None     # where the steps' cost is measured from (mark)
        self.warmed_up = False           # the process's first step builds and warms up: not a step's cost

    # --- where the run stops -----------------------------------------------------------------
    @property
    def total_steps(self):
        """The plan's steps in all (where one-cycle ends), or None without a plan."""
        return self.plan['total_steps'] if self.plan else None

    def last_step(self):
        """Where the run stops: --epochs (or the --time-budget plan), or --max-steps if sooner."""
        total = self.total_steps or self.epochs * self.steps_per_epoch
        return min(total, self.max_steps or total)

    def epochs_planned(self):
        """The epochs after an epoch's slash: --epochs, or the --time-budget plan's, rounded up."""
        return -(-self.total_steps // self.steps_per_epoch) if self.plan else self.epochs

    def ends_epoch(self, step):
        """True when the run stops at `step` by the budget (the plan's last step, or the budget spent before
        a plan), mid-epoch too: that epoch ends there (validation, best/)."""
        return self.reached(step) or self.spent_before_plan()

    def nothing_to_do(self, step, train_dir):
        """The line for a run already at its last step, or None."""
        if step < self.last_step():
            return None
        more = f'its --time-budget plan ends there; {new_run(train_dir)}' if self.reached(step) else \
            'raise --epochs or --max-steps'
        return f'nothing to do: the run is at step {step} and stops at {self.last_step()} ({more})'

    def way_on(self, step, train_dir):
        """How a run saved at `step` goes on: -resume, or a new run once its plan has ended."""
        return new_run(train_dir) if self.reached(step) else \
            f'continue with: python train.py -resume --train-dir {train_dir}'

    def stopped(self, step, signal, train_dir):
        """The line for a run that stopped before an epoch's end and saved there."""
        why = f'stopped by {signal}' if signal else \
            'reached the --time-budget plan\'s last step' if self.reached(step) else 'reached --max-steps'
        return f'{why} at step {step}: checkpoint saved; {self.way_on(step, train_dir)}'

    # --- the clock and the plan ----------------------------------------------------------------
    def mark(self, step):
        """The steps' cost is measured from here (after the process's first step, and each epoch's end)."""
        self.mark_step, self.mark_time = step, now()

    def step_done(self, step, first_of_epoch):
        """After each step: the process's first one (a warm-up) starts the measure; later ones may plan again
        (replan_if_due)."""
        if not self.warmed_up and first_of_epoch:
            self.mark(step)
        else:
            self.replan_if_due(step, self.steps_per_epoch)

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

    def spent_at_start(self, train_dir):
        """Before the process's first step: why no step can be taken (one line), when the start-up (Python,
        TensorFlow, the data, the graph, the session) has spent what was left of the budget; None otherwise."""
        if not self.seconds or self.mark_time is not None or self.used() < self.seconds * SAFETY:
            return None
        start_up, budget = _span(now() - self.started), f'{_span(self.seconds)} --time-budget'
        if not self.resumed:
            return (f'the start-up (TensorFlow, the data, the graph, the session) took {start_up} of the {budget}, '
                    f'so no step could be taken: give a larger --time-budget (the start-up counts), or train '
                    f'without one')
        return (f'the {budget} is spent: earlier runs used {_span(self.seconds_before)} and this start-up '
                f'{start_up}, so no step could be taken; -resume keeps the budget: {new_run(train_dir)}')

    def minutes_left(self):
        return (self.plan['budget_seconds'] - self.used()) / 60

    def measure_epoch(self, step, steps, steps_seconds, end_seconds, first_step_seconds):
        """An epoch's end: measure the epoch (end_epoch; the process's first step, which took
        first_step_seconds, is a warm-up) and measure on from here. The epoch line's words, and True when the
        plan is a new one."""
        before = self.plan
        warmup = 0.0 if self.warmed_up else first_step_seconds
        self.warmed_up = True
        words = self.end_epoch(step, self.steps_per_epoch, steps, steps_seconds, end_seconds, warmup)
        self.mark(step)
        return words, self.plan is not before

    def end_epoch(self, step, steps_per_epoch, steps, steps_seconds, end_seconds, warmup_seconds=0.0):
        """Measure the epoch just ended (`steps` steps in steps_seconds, the first of them a warm-up of
        warmup_seconds, then its end in end_seconds) and plan again; the epoch line's words ('' without a
        budget). Warns when the epoch cost more than OVER_PLAN over its plan, or the budget cannot be kept."""
        if not self.seconds:
            return ''
        timed = steps - (1 if warmup_seconds else 0)
        if timed < 1 and not self.plan:
            if not self.spent_before_plan():
                return ''                      # only a warm-up to measure: the next epoch's end plans
            timed, warmup_seconds = steps, 0.0         # the budget is spent: the warm-up stands for a step, and
                                                       # the plan stops the run here
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
    return (f'plan {p["total_steps"]} steps ({p["epochs"]:g} epochs) in the {_span(p["budget_seconds"])} '
            f'budget, {max(0.0, p["budget_seconds"] - seconds_used) / 60:.1f} min left')
