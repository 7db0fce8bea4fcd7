"""The training loop: build the graph, step, and hand each epoch's end to epochs.py.

    Trainer(a, meta, ds).loop()      # a: settings.py's settled flags; meta: the checkpoint resumed, or None

One step (Trainer.step_once) runs the update that recipe.build_train_op built on a
batch from preprocessing.train_dataset and fetches the step, loss and accuracy by
name. Each epoch's end (epochs.end) validates (evaluate.py), adjusts the learning
rate (schedule.py) and saves (checkpoints.py): the latest, best/ and optionally
features/; it returns what happened, and the run's best is kept from it. Where the
run stops is the budget's (budget.py): --epochs, --max-steps or a --time-budget plan,
made at epoch ends. Where the steps run is the Trainer's place: this process
(OneMachine, below) or one task of a cluster (cluster.Worker), behind the same few methods.
"""
import contextlib
import os
import sys
import time

import numpy as np
import tensorflow as tf

import alexnet
import budget
import checkpoints
import epochs
import evaluate
import parallel
import preprocessing
import progress
import recipe
import settings
import stopping
import whitening
from errors import DataError, Diverged
from schedule import LearningRate

SYNTHETIC_EPOCH_STEPS = 1000   # --synthetic has no dataset; an 'epoch' is this many steps

def build_inputs(a, ds, start_step):
    """Training batches from the pipeline on the CPU, prefetched to the model's device (or random ones)."""
    with tf.device('/cpu:0'):
        if a.synthetic:
            images = tf.random.uniform([a.batch_size, a.input_size, a.input_size, 3], -128, 128)
            labels = tf.random.uniform([a.batch_size], 0, a.num_classes, tf.int64)
            return images, labels
        data = preprocessing.train_dataset(ds.train, a.batch_size, a.input_size, ds.mean,
                                           a.resize_size, seed=a.seed, start_step=start_step, cutout=a.cutout,
                                           **preprocessing.model_input(vars(a)))
    return parallel.batches_on(data, parallel.input_device(a.devices))[0]


def run(a, meta, ds):
    """Train on one machine: the run folder, then the loop; the exit code."""
    lock = checkpoints.prepare_run_folder(a)
    try:
        if meta:
            checkpoints.repair_best(a.train_dir, meta)
        if a.validate is None:
            a.validate = ds.val is not None
        with tf.Graph().as_default():
            trainer = Trainer(a, meta, ds)
            try:
                return trainer.loop()
            finally:
                trainer.close()
    finally:
        lock.release()


class OneMachine:
    """Where a run's steps happen: in this process alone. The Trainer asks its place for these few things;
    cluster.Worker is the other place, one task of a cluster."""
    is_chief = True                  # saves, validates and logs

    def device_scope(self):
        return contextlib.nullcontext()

    def steps_per_epoch(self, a, ds):
        return SYNTHETIC_EPOCH_STEPS if a.synthetic else preprocessing.steps_per_epoch(ds.train, a.batch_size)

    def wrap_optimizer(self, optimizer):
        return optimizer

    def inputs(self, trainer, meta):
        return build_inputs(trainer.a, trainer.ds, meta['step'] if meta else 0)

    def session(self, trainer, meta):
        a = trainer.a
        sess = tf.compat.v1.Session(config=parallel.session_config(a.precision, a.devices.split(',')))
        trainer.restore_or_initialise(sess, meta)
        return sess

    def run(self, trainer, fetches, feed=None):
        """sess.run(fetches, feed), heard by Ctrl-C and SIGTERM while it waits (stopping.run_heard)."""
        return stopping.run_heard(trainer.sess, fetches, trainer.stop, None, self.blocked_message, feed)

    def blocked_message(self, seconds):
        return f'a step has waited {seconds:.0f} s'

    def epoch_ended(self, trainer, losses):
        """True where the epoch's end (validation, schedule, saves, the line) happens here."""
        return True

    def close(self, trainer):
        pass


class Trainer:
    """The graph and the loop: steps, epoch ends (epochs.end: validate, adjust the rate, save), logs. `place`
    says where the steps run: this process (OneMachine) or one task of a cluster (cluster.Worker)."""

    def __init__(self, a, meta, ds, place=None):
        self.a, self.ds, self.place = a, ds, place or OneMachine()
        self.steps_per_epoch = self.place.steps_per_epoch(a, ds)
        self.schedule = LearningRate.of(a, meta['schedule'] if meta else None)
        self.budget = budget.Budget(a.time_budget, a.started, meta, self.steps_per_epoch, a.epochs,
                                    a.max_steps)     # where the run stops, --time-budget's plan, and the clock
        self.best = meta['best'] if meta else None   # the best validation figures, an epoch end's
        with self.place.device_scope():
            self.build(meta)
            self.sess = self.place.session(self, meta)
        self.step = int(self.sess.run(self.global_step))
        spent = self.budget.spent_at_start(a.train_dir)     # before anything is written or deleted
        if spent:
            self.sess.close()
            raise DataError(spent)
        if a.scratch and a.overwrite and self.place.is_chief:     # the new run is ready: now the old one goes
            checkpoints.delete_run(a.train_dir)
        self.writer = self.place.is_chief and \
            tf.compat.v1.summary.FileWriter(a.train_dir, None if meta else self.sess.graph)
        self.stop = stopping.StopRequest()
        self.last_save = time.time()

    # --- the graph and the session ---------------------------------------------------------
    def build(self, meta):
        """The training step, validation and summaries on this graph, and the savers."""
        a, ds = self.a, self.ds
        tf.compat.v1.set_random_seed(a.seed)
        self.global_step = tf.compat.v1.train.get_or_create_global_step()
        # The learning rate is the schedule's (self.schedule), fed with every step; the update reads it from
        # the variable it is assigned to in that step, which checkpoints keep (and a cluster's chief reads).
        rate = tf.compat.v1.get_variable('learning_rate', [], trainable=False, initializer=tf.constant_initializer(a.lr))
        self.new_rate = tf.compat.v1.placeholder_with_default(rate.read_value(), [], name='new_rate')
        step_rate = tf.compat.v1.assign(rate, self.new_rate)
        images, labels = self.place.inputs(self, meta)
        self.train_op, self.loss, self.accuracy = recipe.build_train_op(     # accuracy: [top-1, top-k]
            recipe.Recipe.of(a), images, labels, self.global_step, step_rate, self.place.wrap_optimizer)
        self.k = min(5, a.num_classes)
        with tf.control_dependencies([self.train_op]):
            self.step_after = tf.identity(self.global_step.read_value())   # other workers may add steps
        averages = recipe.averages()            # --ema's: validation and best/ use them in the weights' place
        self.validation = evaluate.validation(a, ds, averages=averages)
        subset = ds.val.subset(a.val_subset, a.seed) if ds.val is not None else None
        self.quick_validation = subset is not ds.val and evaluate.validation(a, ds, subset, averages)
        self.epoch_summary = self.summaries(images, ds.mean)
        weights = {v.op.name: averages.get(v.op.name, v) for v in tf.compat.v1.trainable_variables()}
        self.saver = tf.compat.v1.train.Saver(max_to_keep=None)
        self.best_saver = tf.compat.v1.train.Saver(dict(weights, global_step=self.global_step), max_to_keep=None)
        self.feature_saver = tf.compat.v1.train.Saver(
            {k: v for k, v in weights.items() if k.split('_')[0] in alexnet.FEATURE_LAYERS}, max_to_keep=None)

    def summaries(self, images, mean):
        """The first step of each epoch logs 4 input images (and, with --histograms, every weight's)."""
        shown = tf.cast(tf.clip_by_value(images[:4] + tf.constant(mean, tf.float32), 0, 255), tf.uint8)
        summaries = [tf.compat.v1.summary.image('inputs', shown, max_outputs=4)]
        if self.a.histograms:
            with tf.name_scope('histograms/'):      # tags histograms/conv1_a/weights, not conv1_a/weights_1
                summaries += [tf.compat.v1.summary.histogram(v.op.name, v) for v in tf.compat.v1.trainable_variables()]
        return tf.compat.v1.summary.merge(summaries)

    def restore_or_initialise(self, sess, meta):
        """The variables restored (-resume), or initialised (and warm-started from --model_path)."""
        a = self.a
        self.sess = sess
        if meta:                                      # its checkpoint checked by train.py
            checkpoints.restore(sess, checkpoints.prefix_of(a.train_dir, meta['step']), self.saver, recipe.averages(),
                                a.train_dir)
            if a.explicit_lr:
                self.schedule.rate = a.lr        # an explicit --lr on -resume sets the current rate
        else:
            sess.run(tf.compat.v1.global_variables_initializer())
            if a.whiten_conv1:
                self.whiten_conv1()
            if a.model_path:
                checkpoints.warm_start(sess, a.model_path, self.ds.class_names, recipe.layers_of(a.train_layers))

    def whiten_conv1(self):
        """--whiten-conv1: conv1 starts as the whitening of the training images' patches (whitening.py)."""
        start = time.time()
        moment, patches = whitening.patch_moments(self.ds, self.a)
        whitening.assign_conv1(self.sess, whitening.whitened_filters(moment))
        print(f'conv1 whitened: the top {alexnet.CONV1_FILTERS} directions of {patches} patches of '
              f'{min(whitening.WHITEN_IMAGES, len(self.ds.train))} training images ({time.time() - start:.1f} s)')

    # --- the loop --------------------------------------------------------------------------
    def describe(self):
        """The run's first lines: its folder, data, steps per epoch, devices and recipe."""
        a = self.a
        if a.precision == 'bf16' and not parallel.cpu_has_bf16() and \
                not any('GPU' in d.upper() for d in a.devices.split(',')):
            print(parallel.BF16_EMULATED_NOTE, file=sys.stderr, flush=True)
        print(f'run folder: {a.train_dir}  (TensorBoard: tensorboard --logdir {os.path.dirname(a.train_dir) or a.train_dir})')
        print(f'{self.ds.name}: {len(self.ds.train) if self.ds.train else "random"} training images, '
              f'{a.num_classes} classes, {self.steps_per_epoch} steps per epoch, towers on {a.devices}, {a.precision}')
        print(f'input {a.input_size}x{a.input_size}, batch {a.batch_size}, {a.epochs} epochs, lr {self.schedule.rate:g} '
              f'({a.lr_schedule}), momentum {a.momentum:g}, weight decay {a.weight_decay:g}, init {a.init}')

    def loop(self):
        """Epochs until the budget's last step (--epochs, --max-steps or a --time-budget plan), or a signal
        (then a save); the exit code."""
        a = self.a
        self.describe()
        nothing = self.budget.nothing_to_do(self.step, a.train_dir)
        if nothing:
            print(nothing)
            return 0
        self.last_save = time.time()
        try:
            while self.step < self.budget.last_step() and not self.stop.signal:
                before = self.step
                self.run_epoch()
                if self.step == before and not self.stop.signal:      # never round again without a step
                    raise DataError(self.budget.spent_at_start(a.train_dir) or
                                    f'no training step could be taken at step {self.step}: the run stops '
                                    f'rather than go round again; continue it with -resume')
        except stopping.StepBlocked as e:
            stopping.abandon(e, self.save_for_exit, self.writer)
        if (self.stop.signal or self.step % self.steps_per_epoch) and self.place.is_chief:
            self.save()
            print(self.budget.stopped(self.step, self.stop.signal, a.train_dir))
        return 0

    def run_epoch(self):
        """Steps until the epoch ends, the last step is reached (a --time-budget plan may move it during the
        epoch) or a signal asks to stop; then the epoch's end, whose best figures the run keeps."""
        a, spe = self.a, self.steps_per_epoch
        epoch = epochs.Epoch(self.step // spe)
        bar = progress.bar(total=spe, initial=self.step % spe, unit='step',
                           desc=f'epoch {epoch.index + 1}/{self.budget.epochs_planned()}')
        try:
            while self.step < self.budget.last_step() and not self.stop.signal and not self.budget.spent_before_plan():
                tic, budget_tic, before = time.time(), budget.now(), self.step     # budget.now: the budget's clock
                out = self.step_once(with_summary=not epoch.losses and self.place.is_chief)
                seconds = budget.now() - budget_tic
                epoch.add(out['loss'], out['accuracy'], a.batch_size / (time.time() - tic), seconds)
                bar.set_postfix_str(epoch.postfix(self.schedule.rate), refresh=False)
                bar.update(self.step - before)
                if self.step % a.log_steps == 0 and self.writer:        # TensorBoard's, every --log-steps
                    epochs.scalars(self.writer, self.step, epoch.scalars(a.log_steps, self.k, self.schedule.rate))
                self.budget.step_done(self.step, first_of_epoch=len(epoch.losses) == 1)
                if self.step // spe > epoch.index:
                    break
                if self.save_due():
                    self.save()
                    self.last_save = time.time()
        finally:
            bar.close()
        epoch.steps_ended = budget.now()
        ended = self.step // spe > epoch.index or self.budget.ends_epoch(self.step)     # mid-epoch too: best/
        if ended and epoch.losses and self.place.epoch_ended(self, epoch.losses):
            self.best = epochs.end(self, epoch).best
            self.last_save = time.time()

    def step_once(self, with_summary=False):
        """One training step. Returns the fetches by name: step (after it), loss, accuracy [top-1, top-k]."""
        self.schedule.total_steps = self.budget.total_steps     # one-cycle ends where a --time-budget plan does
        rate = self.schedule.at_step(self.step, self.steps_per_epoch) if self.schedule.per_step else self.schedule.rate
        fetches = dict(step=self.step_after, loss=self.loss, accuracy=self.accuracy)
        if with_summary:
            fetches['summary'] = self.epoch_summary
        try:
            out = self.run(fetches, {self.new_rate: rate})
        except tf.errors.OutOfRangeError:
            raise DataError(stopping.stalled(self.ds.train, self.step)) from None
        if with_summary:
            self.writer.add_summary(out['summary'], self.step)
        self.step = int(out['step'])
        if not np.isfinite(out['loss']):
            kept = checkpoints.latest(self.a.train_dir)
            raise Diverged(f'the loss became {out["loss"]} at step {self.step}: training diverged; lower '
                           f'--lr (now {self.schedule.rate:g}); the last good checkpoint is '
                           f'{kept[0] if kept else "none (nothing was saved yet)"}')
        return out

    def run(self, fetches, feed=None):
        """sess.run(fetches, feed) where the place runs it, heard by Ctrl-C and SIGTERM while it waits."""
        return self.place.run(self, fetches, feed)

    # --- checkpoints, and the end ----------------------------------------------------------
    def meta(self, best=None):
        """The checkpoint's JSON (checkpoints.run_record), with `best` (an epoch end's new figures) or the run's."""
        return checkpoints.run_record(self.a, settings.DEFAULTS, self.ds, self.step, self.steps_per_epoch,
                                      self.schedule, best or self.best, self.budget)

    def save(self, folder='', saver=None, keep=None, best=None):
        """The latest checkpoint (or best/, features/); only the chief saves."""
        if self.place.is_chief:
            checkpoints.save(self.sess, saver or self.saver, os.path.join(self.a.train_dir, folder), self.step,
                             self.meta(best), keep or self.a.keep)

    def save_due(self):
        a = self.a
        return (a.save_steps and self.step % a.save_steps == 0) or time.time() - self.last_save > 60 * a.save_minutes

    def save_for_exit(self):
        """The latest checkpoint before a stuck step ends the process (stopping.abandon); the line's words."""
        if not self.place.is_chief:
            return ''
        self.save()
        return f'; checkpoint saved at step {self.step}, {self.budget.way_on(self.step, self.a.train_dir)}'

    def close(self):
        self.place.close(self)
        self.stop.restore()
        if self.writer:
            self.writer.close()
        self.sess.close()
