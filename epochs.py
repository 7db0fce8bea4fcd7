"""An epoch: what its steps measured (Epoch), and its end: validate, adjust the learning rate, log,
save the latest checkpoint, best/ and features/, and with --time-budget measure the epoch and plan.

    ended = epochs.end(t, epoch)    # t: trainer.py's Trainer, after the epoch's steps; prints the epoch's line

The functions below read the Trainer t (its session, step, best and writer) and save through it; the
schedule and the --time-budget plan (t.budget) change by their own methods. No field of t is set here:
end() returns what happened (EpochEnd) and the trainer takes the run's best from it.
"""
import warnings
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

import budget
import checkpoints
import evaluate
import learning
from files import write_json_atomic

RECENT_STEPS = 50              # the progress bar shows the mean loss and top-1 of the last this many steps


class Epoch:
    """What the steps of one epoch measured: losses, [top-1, top-k] hits, images/second, and when its steps
    started and ended (budget.now, the clock --time-budget reads)."""

    def __init__(self, index):
        self.index, self.started, self.steps_ended = index, budget.now(), None
        self.losses, self.hits, self.speed, self.step_seconds = [], [], None, []

    def add(self, loss, accuracy, images_per_second, seconds=None):
        self.losses.append(loss)
        self.hits.append(accuracy)
        s = images_per_second
        self.speed = s if self.speed is None else 0.9 * self.speed + 0.1 * s
        if seconds is not None:
            self.step_seconds.append(seconds)

    def recent(self, n=RECENT_STEPS):
        """(mean loss, mean [top-1, top-k]) of the last n steps."""
        return np.mean(self.losses[-n:]), np.mean(self.hits[-n:], 0)

    def scalars(self, n, k, rate):
        """TensorBoard's training scalars of the last n steps (top-k: k), with the learning rate `rate`."""
        loss, (top1, topk) = self.recent(n)
        return {'train/loss': loss, 'train/top1': top1, f'train/top{k}': topk, 'learning_rate': rate,
                'images_per_second': self.speed}

    def postfix(self, rate):
        """The progress bar's words: the recent loss and top-1, the learning rate `rate`, the speed."""
        loss, (top1, _) = self.recent()
        return f'loss {loss:.3f} top-1 {100 * top1:.1f}% lr {rate:.2g} {self.speed:.0f} img/s'


@dataclass(frozen=True)
class EpochEnd:
    """What an epoch's end found: its validation figures (evaluate.run's dict, and whole: on the whole split;
    None without validation), the run's best figures after it, and whether they are this end's (best/ saved)."""
    figures: dict | None
    best: dict | None
    improved: bool


def scalars(writer, step, values):
    """TensorBoard scalars {tag: value} at step."""
    summary = tf.compat.v1.Summary(value=[tf.compat.v1.Summary.Value(tag=k, simple_value=float(v))
                                          for k, v in values.items()])
    writer.add_summary(summary, step)


def end(t, epoch):
    """Validate, adjust the learning rate, log, save latest/best/features, and with --time-budget measure
    the epoch and plan; then one line (and once a run, a warning if training does not learn: learning.py).
    Returns what happened (EpochEnd)."""
    line, values = training_figures(t, epoch)
    v = validate(t)
    best = None                       # new best figures, when this end has them
    if v:
        line += validation_figures(v, values)
        best = better(t, v) if v['whole'] else None
    line += adjust_rate(t, v and v['top1'])
    scalars(t.writer, t.step, values)
    t.writer.flush()
    save(t, best)
    line += plan_budget(t, epoch)
    if v and not v['whole'] and t.step >= t.budget.last_step():
        v, best, words = validate_whole_at_the_end(t)
        line += words
    print(f'{line} | {(budget.now() - epoch.started) / 60:.1f} min', flush=True)
    check_learning(t, epoch)
    return EpochEnd(v, best or t.best, best is not None)


def training_figures(t, epoch):
    """The epoch line's start and the TensorBoard scalars of the epoch's steps (and skipped images)."""
    index = t.step // t.steps_per_epoch
    top1, topk = np.mean(epoch.hits, 0)
    shown = index if t.step % t.steps_per_epoch == 0 else f'{t.step / t.steps_per_epoch:.2f}'
    line = f'epoch {shown}/{t.budget.epochs_planned()}: loss {np.mean(epoch.losses):.4f} top-1 {100 * top1:.2f}%'
    values = {'train/epoch_loss': np.mean(epoch.losses), 'train/epoch_top1': top1,
              f'train/epoch_top{t.k}': topk}
    skipped = len(t.ds.train.skipped) if t.ds.train is not None else 0
    if skipped:
        line += f' | {skipped} unreadable image{"s" * (skipped > 1)} skipped'
        values['train/skipped_images'] = skipped
    return line, values


def check_learning(t, epoch):
    """Once a run, at the epoch end learning.due names: a warning when the loss of the epoch's last steps is
    still at ln C and top-1 at chance (learning.py). --synthetic's labels are random: not checked."""
    spe = t.steps_per_epoch
    warmup = t.schedule.warmup_epochs * spe if t.schedule.kind == 'onecycle' else 0
    if t.a.synthetic or not learning.due(epoch.index * spe, t.step, spe, warmup):
        return
    loss, (top1, _) = epoch.recent()
    if learning.stuck(loss, top1, t.a.num_classes):
        warnings.warn(learning.advice(loss, top1, t.a.num_classes, t.step, t.a.lr,
                                      None if t.a.model_path else t.a.init, t.a.dataset, t.a.data_dir),
                      learning.NotLearning)


def validate(t):
    """Validation figures (evaluate.run's dict, and whole: on the whole split), or None without a
    validation split. With --val-subset, on the subset but at the run's last step."""
    whole = not t.quick_validation or t.step >= t.budget.last_step()
    v = t.validation if whole else t.quick_validation
    if not v:
        return None
    figures = evaluate.run(t.sess, v['probs'], v['labels'], v['init'], total=v['total'], desc='validation')
    return dict(figures, whole=whole)


def validation_figures(v, values):
    """The epoch line's words for validation figures v; their TensorBoard scalars into values."""
    tag = 'val' if v['whole'] else 'val_subset'
    values.update({f'{tag}/loss': v['loss'], f'{tag}/top1': v['top1'], f'{tag}/top{v["k"]}': v['topk']})
    words = ' | val' if v['whole'] else f' | val ({v["count"]} images)'
    return words + f' loss {v["loss"]:.4f} top-1 {100 * v["top1"]:.2f}% top-{v["k"]} {100 * v["topk"]:.2f}%'


def better(t, v):
    """The run's new best figures when validation v's top-1 beats t.best, else None."""
    if t.best is not None and v['top1'] <= t.best['top1']:
        return None
    return dict(top1=v['top1'], topk=v['topk'], step=t.step, epoch=t.step // t.steps_per_epoch)


def adjust_rate(t, val_top1):
    """The schedule's epoch end (the paper's divide by 10 on a plateau); the line's words for a change."""
    old = t.schedule.rate
    t.schedule.end_epoch(t.step // t.steps_per_epoch, val_top1)
    if t.schedule.rate == old:
        return ''
    return f' | lr {old:g} -> {t.schedule.rate:g}'


def save(t, best):
    """best/ first when this end has new best figures (a kill between the two saves leaves no best the JSON
    does not have), the latest, and features/ with --save-features; their JSON names the best."""
    if best:
        t.save(checkpoints.BEST_DIR, t.best_saver, 1, best)
    t.save(best=best)
    if t.a.save_features:
        t.save(checkpoints.FEATURES_DIR, t.feature_saver, 1, best)


def plan_budget(t, epoch):
    """--time-budget: measure the epoch, start to start, and plan again (budget.py); a new plan goes into
    the latest checkpoint too. The epoch line's words."""
    b, first_step = t.budget, (epoch.step_seconds or [0.0])[0]
    words, new_plan = b.measure_epoch(t.step, len(epoch.losses), epoch.steps_ended - epoch.started,
                                      budget.now() - epoch.steps_ended, first_step)
    if not b.plan:
        return words
    if new_plan:
        update_latest_record(t, plan=b.plan, seconds_used=b.used())
    scalars(t.writer, t.step, {'budget/minutes_left': b.minutes_left()})
    return ' | ' + budget.describe(b.plan, b.used()) + words


def validate_whole_at_the_end(t):
    """The whole split's figures and best/ (and the latest checkpoint's record of it), when the
    --time-budget plan made at this epoch's end stops the run here after a --val-subset validation:
    (figures, new best figures or None, the epoch line's words)."""
    values = {}
    v = validate(t)
    words = ' | the plan ends here:' + validation_figures(v, values)
    scalars(t.writer, t.step, values)
    t.writer.flush()
    best = better(t, v)
    if best and t.place.is_chief:
        t.save(checkpoints.BEST_DIR, t.best_saver, 1, best)
        update_latest_record(t, best=best)
    return v, best, words


def update_latest_record(t, **fields):
    """fields into the JSON of the latest checkpoint when it is this step's (saved just now; a step's
    weights are never rewritten)."""
    latest = checkpoints.latest(t.a.train_dir, warn=False)
    if latest and latest[1]['step'] == t.step:
        write_json_atomic(latest[0] + '.json', dict(latest[1], **fields))
