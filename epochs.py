"""An epoch: what its steps measured (Epoch), and its end: validate, adjust the learning rate, log,
save the latest checkpoint, best/ and features/, and with --time-budget measure the epoch and plan.

    epochs.end(t, epoch)      # t: trainer.py's Trainer, after the epoch's steps; prints the epoch's line

The functions below read and update the Trainer t (its session, schedule, budget, best and writer);
trainer.py runs the steps and calls end() once the epoch's steps are done.
"""
import numpy as np
import tensorflow as tf

import budget
import checkpoints
import evaluate
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


def scalars(writer, step, values):
    """TensorBoard scalars {tag: value} at step."""
    summary = tf.compat.v1.Summary(value=[tf.compat.v1.Summary.Value(tag=k, simple_value=float(v))
                                          for k, v in values.items()])
    writer.add_summary(summary, step)


def end(t, epoch):
    """Validate, adjust the learning rate, log, save latest/best/features, and with --time-budget measure
    the epoch and plan; then one line."""
    line, values = training_figures(t, epoch)
    v = validate(t)
    improved = False
    if v:
        line += validation_figures(v, values)
        improved = v['whole'] and track_best(t, v)
    line += adjust_rate(t, v and v['top1'])
    scalars(t.writer, t.step, values)
    t.writer.flush()
    save(t, improved)
    line += plan_budget(t, epoch)
    if v and not v['whole'] and t.step >= t.last_step():
        line += validate_whole_at_the_end(t)
    print(f'{line} | {(budget.now() - epoch.started) / 60:.1f} min', flush=True)


def training_figures(t, epoch):
    """The epoch line's start and the TensorBoard scalars of the epoch's steps (and skipped images)."""
    index = t.step // t.steps_per_epoch
    top1, topk = np.mean(epoch.hits, 0)
    shown = index if t.step % t.steps_per_epoch == 0 else f'{t.step / t.steps_per_epoch:.2f}'
    line = f'epoch {shown}/{t.epochs_planned()}: loss {np.mean(epoch.losses):.4f} top-1 {100 * top1:.2f}%'
    values = {'train/epoch_loss': np.mean(epoch.losses), 'train/epoch_top1': top1,
              f'train/epoch_top{t.k}': topk}
    skipped = len(t.ds.train.skipped) if t.ds.train is not None else 0
    if skipped:
        line += f' | {skipped} unreadable image{"s" * (skipped > 1)} skipped'
        values['train/skipped_images'] = skipped
    return line, values


def validate(t):
    """Validation figures (evaluate.run's dict, and whole: on the whole split), or None without a
    validation split. With --val-subset, on the subset but at the run's last step."""
    whole = not t.quick_validation or t.step >= t.last_step()
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


def track_best(t, v):
    """True (and t.best updated) when this validation top-1 is the run's best."""
    if t.best is not None and v['top1'] <= t.best['top1']:
        return False
    t.best = dict(top1=v['top1'], topk=v['topk'], step=t.step, epoch=t.step // t.steps_per_epoch)
    return True


def adjust_rate(t, val_top1):
    """The schedule's epoch end (the paper's divide by 10 on a plateau); the line's words for a change."""
    old = t.schedule.rate
    t.schedule.end_epoch(t.step // t.steps_per_epoch, val_top1)
    if t.schedule.rate == old:
        return ''
    return f' | lr {old:g} -> {t.schedule.rate:g}'


def save(t, improved):
    """best/ first (a kill between the two saves leaves no best the JSON does not have), the latest, and
    features/ with --save-features."""
    if improved:
        t.save(checkpoints.BEST_DIR, t.best_saver, 1)
    t.save()
    if t.a.save_features:
        t.save(checkpoints.FEATURES_DIR, t.feature_saver, 1)


def plan_budget(t, epoch):
    """--time-budget: measure the epoch, start to start, and plan again (budget.py); the plan goes into
    the latest checkpoint too. The epoch line's words."""
    before = t.budget.plan
    warmup = 0.0 if t.warmed_up or not epoch.step_seconds else epoch.step_seconds[0]
    t.warmed_up = True
    words = t.budget.end_epoch(t.step, t.steps_per_epoch, len(epoch.losses),
                               epoch.steps_ended - epoch.started, budget.now() - epoch.steps_ended, warmup)
    t.budget.mark(t.step)
    if not t.budget.plan:
        return words
    if t.budget.plan is not before:
        t.schedule.total_steps = t.budget.plan['total_steps']
        update_latest_record(t, plan=t.budget.plan, seconds_used=t.budget.used())
    scalars(t.writer, t.step, {'budget/minutes_left': t.budget.minutes_left()})
    return ' | ' + budget.describe(t.budget.plan, t.budget.used()) + words


def validate_whole_at_the_end(t):
    """The whole split's figures and best/ (and the latest checkpoint's record of it), when the
    --time-budget plan made at this epoch's end stops the run here after a --val-subset validation."""
    values = {}
    v = validate(t)
    words = ' | the plan ends here:' + validation_figures(v, values)
    scalars(t.writer, t.step, values)
    t.writer.flush()
    if track_best(t, v) and t.place.is_chief:
        t.save(checkpoints.BEST_DIR, t.best_saver, 1)
        update_latest_record(t, best=t.best)
    return words


def update_latest_record(t, **fields):
    """fields into the JSON of the latest checkpoint when it is this step's (saved just now; a step's
    weights are never rewritten)."""
    latest = checkpoints.latest(t.a.train_dir, warn=False)
    if latest and latest[1]['step'] == t.step:
        write_json_atomic(latest[0] + '.json', dict(latest[1], **fields))
