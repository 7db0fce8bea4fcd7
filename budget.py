"""--time-budget: a run planned to end inside a wall-clock budget, whatever the machine.

    python train.py -scratch --dataset cifar10 --time-budget 55m ...

A recipe written in epochs cannot promise a time: the same command runs 1.5x
faster on one machine than another. With a budget, the first epoch is measured
(its steps, then the validation and the checkpoint writes of its end), and the
number of steps that fits in what is left of the budget is fixed once, recorded
in every checkpoint ('plan'), and kept by -resume, so the run stays deterministic
after the plan is made. The one-cycle schedule then ends exactly at the planned
step. The time spent so far, across -resume runs, is recorded too.
"""
import os
import re
import statistics
import time

from datasets import DataError

SAFETY = 0.9             # plan for 90% of what is left: steps ran 13% slower after the first epoch in a
                         # 25-minute CIFAR-10 run here (README), which then overran its budget by 7% at 0.97
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
    if not found or float(found.group(1)) <= 0:
        raise DataError(f'--time-budget {text}: give a duration such as 55m, 1.5h or 3300s')
    return float(found.group(1)) * UNITS[found.group(2) or 's']


def plan(budget_seconds, seconds_used, step_now, steps_per_epoch, step_seconds, epoch_end_seconds):
    """The plan: how many steps in all fit in the budget, given what one step and one epoch's end cost."""
    per_step = statistics.median(step_seconds) + epoch_end_seconds / steps_per_epoch
    left = max(0.0, budget_seconds - seconds_used) * SAFETY
    total = step_now + int(left / per_step)
    return dict(total_steps=max(step_now, total), budget_seconds=budget_seconds,
                seconds_per_step=round(statistics.median(step_seconds), 4),
                epoch_end_seconds=round(epoch_end_seconds, 2), planned_at_step=step_now,
                epochs=round(max(step_now, total) / steps_per_epoch, 2))


class Budget:
    """A run's --time-budget (seconds, or None) and its clock: the plan, fixed once and kept by -resume, and
    the wall-clock time used so far, the earlier -resume runs' included."""

    def __init__(self, seconds, started, meta=None):
        self.seconds, self.started = seconds, started
        self.plan = meta.get('plan') if meta else None
        self.seconds_before = meta.get('seconds_used', 0.0) if meta else 0.0

    def used(self):
        return self.seconds_before + time.time() - self.started

    def reached(self, step):
        """True once the plan's last step is done."""
        return bool(self.plan) and step >= self.plan['total_steps']

    def needs_plan(self):
        return bool(self.seconds) and not self.plan

    def make_plan(self, step, steps_per_epoch, step_seconds, epoch_end_seconds):
        self.plan = plan(self.seconds, self.used(), step, steps_per_epoch, step_seconds, epoch_end_seconds)
        return self.plan

    def minutes_left(self):
        return (self.plan['budget_seconds'] - self.used()) / 60


def describe(p, seconds_used):
    """One line: the plan and the time left."""
    return (f'plan {p["total_steps"]} steps ({p["epochs"]:g} epochs) in the {p["budget_seconds"] / 60:.0f} min '
            f'budget, {max(0.0, p["budget_seconds"] - seconds_used) / 60:.1f} min left')
