"""The training loop: the graph, the session, steps, epoch ends, checkpoints and logs of one run.

    Trainer(a, meta, ds).loop()      # a: train.py's settled flags; meta: the checkpoint resumed, or None

One step (Trainer.step) runs the update that recipe.build_train_op built on a batch
from preprocessing.train_dataset and fetches the step, loss and accuracy by name.
Each epoch ends with validation (evaluate.py), the learning-rate schedule (schedule.py)
and checkpoints (checkpoints.py): the latest, best/ and optionally features/. cluster.py
builds its ClusterTrainer on this class.
"""
import json
import os
import sys
import time

import numpy as np
import tensorflow as tf

import alexnet
import budget
import checkpoints
import evaluate
import parallel
import preprocessing
import progress
import recipe
import stopping
from datasets import DataError
from files import FolderLock, write_json_atomic
from schedule import LearningRate

SYNTHETIC_EPOCH_STEPS = 1000   # --synthetic has no dataset; an 'epoch' is this many steps
RECENT_STEPS = 50              # the progress bar shows the mean loss and top-1 of the last this many steps

# The settings a run records in every checkpoint (JSON 'args'), and their defaults: the paper's recipe.
DEFAULTS = dict(dataset='auto', data_dir=None, train_dir=checkpoints.DEFAULT_TRAIN_DIR,
                batch_size=recipe.BATCH_SIZE, epochs=recipe.EPOCHS, input_size=alexnet.INPUT_SIZE,
                resize_size=None, lr=recipe.LEARNING_RATE, momentum=recipe.MOMENTUM,
                weight_decay=recipe.WEIGHT_DECAY, lr_schedule='plateau', lr_steps='', patience=2,
                min_improvement=0.001, max_drops=3, devices=None, validate=None, max_steps=None, seed=0,
                synthetic=False, num_classes=alexnet.NUM_CLASSES, model_path=None,
                precision='fp32', init='paper', val_size=5000, md5=None, save_minutes=10.0, save_steps=0,
                keep=3, save_features=False, histograms=False, log_steps=20, replicas=None,
                dropout=alexnet.DROPOUT_RATE, warmup_epochs=0.0, label_smoothing=0.0,
                data_format=None, train_layers=None, time_budget=None,
                # what the network expects, inherited from --model_path (imported Caffe weights differ):
                lrn=None, channel_order='RGB', resize_mode='shorter', mean=None)


# The types of the settings whose default is None (the others take their default's type).
NONE_DEFAULT_TYPES = dict(data_dir=str, resize_size=int, devices=str, validate=bool, max_steps=int, model_path=str,
                          md5=str, replicas=int, data_format=str, train_layers=str, time_budget=float, lrn=list,
                          mean=list)


def recorded_args_problem(args):
    """What is wrong with the settings a checkpoint records (its JSON's 'args', a hand edit usually), or
    None: each must be of its default's type (None where the default is None)."""
    for key, value in args.items():
        if key not in DEFAULTS or value is None and DEFAULTS[key] is None:
            continue
        kind = NONE_DEFAULT_TYPES.get(key) or type(DEFAULTS[key])
        kinds = (int, float) if kind is float else (kind,)
        wrong = isinstance(value, bool) != (kind is bool) or not isinstance(value, kinds) or kind is list and \
            not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        if wrong:
            what = {float: 'a number', list: 'a list of numbers', str: 'a string', int: 'a whole number',
                    bool: 'true or false'}[kind]
            return f'"{key}" is {json.dumps(value)[:60]}, not {what}'
    return None


class Diverged(Exception):
    """The loss became NaN or infinite."""


def prepare_run_folder(a):
    """The run folder, made and locked (one trainer at a time). -scratch refuses one with checkpoints
    unless --overwrite: that run's files are deleted later, once the new run is ready (Trainer)."""
    if os.path.exists(a.train_dir) and not os.path.isdir(a.train_dir):
        raise DataError(f'--train-dir {a.train_dir} is a file: give a folder for the run')
    if a.scratch and checkpoints.has_checkpoints(a.train_dir) and not a.overwrite:
        raise DataError(f'{a.train_dir} already holds checkpoints: continue it with -resume, '
                        f'choose another --train-dir, or add --overwrite to delete them')
    os.makedirs(a.train_dir, exist_ok=True)
    return FolderLock(a.train_dir)


def learning_rate_schedule(a, state=None):
    """The LearningRate of the run's flags (and a checkpoint's schedule state)."""
    return LearningRate(kind=a.lr_schedule, base=a.lr, epochs=a.epochs, patience=a.patience,
                        min_improvement=a.min_improvement, max_drops=a.max_drops,
                        warmup_epochs=a.warmup_epochs, lr_steps=a.lr_steps, state=state)


def build_inputs(a, ds, start_step):
    """Training batches from the pipeline on the CPU, prefetched to the model's device (or random ones)."""
    with tf.device('/cpu:0'):
        if a.synthetic:
            images = tf.random.uniform([a.batch_size, a.input_size, a.input_size, 3], -128, 128)
            labels = tf.random.uniform([a.batch_size], 0, a.num_classes, tf.int64)
            return images, labels
        data = preprocessing.train_dataset(ds.train, a.batch_size, a.input_size, ds.mean,
                                           a.resize_size, seed=a.seed, start_step=start_step, **image_settings(a))
    return parallel.batches_on(data, parallel.input_device(a.devices))[0]


def image_settings(a):
    """The pipelines' keywords for what the network reads (warped, BGR for imported Caffe weights)."""
    return dict(resize_mode=a.resize_mode, bgr=a.channel_order == 'BGR')


def build_validation(a, ds):
    """Centre-crop validation on the held-out split, sharing the training weights."""
    if not a.validate or ds.val is None:
        return None
    with tf.device('/cpu:0'):
        data = preprocessing.eval_dataset(ds.val, a.batch_size, a.input_size, ds.mean, a.resize_size,
                                          mode='center', seed=a.seed, **image_settings(a))
    devices = a.devices.split(',')[:2]
    (crops, labels), init = parallel.batches_on(data, devices[0], initializable=True)
    with tf.compat.v1.variable_scope(tf.compat.v1.get_variable_scope(), reuse=True):
        probs = evaluate.crop_probabilities(crops, a.num_classes, devices, alexnet.LRN(*(a.lrn or alexnet.PAPER_LRN)))
    return dict(probs=probs, labels=labels, init=init, total=len(ds.val))


def scalars(writer, step, values):
    summary = tf.compat.v1.Summary(value=[tf.compat.v1.Summary.Value(tag=k, simple_value=float(v))
                                          for k, v in values.items()])
    writer.add_summary(summary, step)


def warm_start(sess, model_path):
    """Copy every model weight of matching name and shape from another checkpoint."""
    try:
        found = checkpoints.for_use(checkpoint=model_path)[0]
    except DataError:
        found = model_path
    try:
        available = dict(tf.train.list_variables(found))
    except (tf.errors.NotFoundError, ValueError):
        raise DataError(f'--model_path {model_path}: no checkpoint there') from None
    model_vars = [v for v in tf.compat.v1.trainable_variables()]
    take = {v.op.name: v for v in model_vars if available.get(v.op.name) == v.shape.as_list()}
    skipped = sorted(v.op.name for v in model_vars if v.op.name not in take)
    tf.compat.v1.train.Saver(take).restore(sess, found)
    print(f'weights from {found}: {len(take)} tensors' + (f', kept fresh: {", ".join(skipped)}' if skipped else ''))


def run(a, meta, ds):
    """Train on one machine: the run folder, then the loop; the exit code."""
    lock = prepare_run_folder(a)
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


class Epoch:
    """What the steps of one epoch measured: losses, [top-1, top-k] hits, images/second."""

    def __init__(self, index):
        self.index, self.started = index, time.time()
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


class Trainer:
    """The graph, the session and the loop: steps, epoch ends, checkpoints, logs."""

    is_chief = True                  # cluster.py: only worker 0 saves, validates and logs
    wrap_optimizer = None

    def __init__(self, a, meta, ds):
        self.a, self.ds = a, ds
        self.steps_per_epoch = SYNTHETIC_EPOCH_STEPS if a.synthetic else \
            preprocessing.steps_per_epoch(ds.train, a.batch_size)
        self.schedule = learning_rate_schedule(a, meta['schedule'] if meta else None)
        self.plan = meta.get('plan') if meta else None        # --time-budget: fixed once, kept by -resume
        self.seconds_before = meta.get('seconds_used', 0.0) if meta else 0.0
        if self.plan:
            self.schedule.total_steps = self.plan['total_steps']
        self.best = meta['best'] if meta else None
        tf.compat.v1.set_random_seed(a.seed)
        self.global_step = tf.compat.v1.train.get_or_create_global_step()
        self.rate = tf.compat.v1.get_variable('learning_rate', [], trainable=False,
                                              initializer=tf.constant_initializer(a.lr))
        self.new_rate = tf.compat.v1.placeholder(tf.float32, [])
        self.set_rate = tf.compat.v1.assign(self.rate, self.new_rate)
        images, labels = self.inputs(meta)
        self.train_op, self.loss, self.accuracy = recipe.build_train_op(
            recipe.Recipe.of(a), images, labels, self.global_step, self.rate, self.wrap_optimizer)  # [top-1, top-k]
        self.k = min(5, a.num_classes)
        with tf.control_dependencies([self.train_op]):
            self.step_after = tf.identity(self.global_step.read_value())   # other workers may add steps
        self.validation = build_validation(a, ds)
        self.epoch_summary = self.summaries(images, ds.mean)
        weights = tf.compat.v1.trainable_variables()
        self.saver = tf.compat.v1.train.Saver(max_to_keep=None)
        self.best_saver = tf.compat.v1.train.Saver(weights + [self.global_step], max_to_keep=None)
        self.feature_saver = tf.compat.v1.train.Saver(
            [v for v in weights if v.op.name.split('_')[0] in alexnet.FEATURE_LAYERS], max_to_keep=None)

        self.sess = self.session(meta)
        self.step = int(self.sess.run(self.global_step))
        if a.scratch and a.overwrite and self.is_chief:     # the new run is ready: now the old one goes
            checkpoints.delete_run(a.train_dir)
        self.writer = self.is_chief and tf.compat.v1.summary.FileWriter(a.train_dir, None if meta else self.sess.graph)
        self.stop = stopping.StopRequest()
        self.last_save = time.time()

    def summaries(self, images, mean):
        """The first step of each epoch logs 4 input images (and, with --histograms, every weight's)."""
        shown = tf.cast(tf.clip_by_value(images[:4] + tf.constant(mean, tf.float32), 0, 255), tf.uint8)
        summaries = [tf.compat.v1.summary.image('inputs', shown, max_outputs=4)]
        if self.a.histograms:
            with tf.name_scope('histograms/'):      # tags histograms/conv1_a/weights, not conv1_a/weights_1
                summaries += [tf.compat.v1.summary.histogram(v.op.name, v) for v in tf.compat.v1.trainable_variables()]
        return tf.compat.v1.summary.merge(summaries)

    def inputs(self, meta):
        return build_inputs(self.a, self.ds, meta['step'] if meta else 0)

    def session(self, meta, sess=None):
        """A session with the variables restored (-resume), or initialised (and warm-started)."""
        a = self.a
        self.sess = sess or tf.compat.v1.Session(config=alexnet.session_config(a.precision, a.devices.split(',')))
        if meta:
            self.saver.restore(self.sess, checkpoints.prefix_of(a.train_dir, meta['step']))   # checked by train.py
            if a.explicit_lr:
                self.schedule.rate = a.lr        # an explicit --lr on -resume sets the current rate
        else:
            self.sess.run(tf.compat.v1.global_variables_initializer())
            if a.model_path:
                warm_start(self.sess, a.model_path)
        self.sess.run(self.set_rate, {self.new_rate: self.schedule.rate})
        return self.sess

    def close(self):
        self.stop.restore()
        if self.writer:
            self.writer.close()
        self.sess.close()

    def meta(self):
        a, ds = self.a, self.ds
        return dict(args={k: getattr(a, k) for k in DEFAULTS}, dataset=ds.name, data_dir=a.data_dir,
                    class_names=list(ds.class_names), class_ids=ds.class_ids, num_classes=a.num_classes,
                    input_size=a.input_size, resize_size=a.resize_size, mean=[float(m) for m in ds.mean],
                    epoch=self.step / self.steps_per_epoch, steps_per_epoch=self.steps_per_epoch,
                    learning_rate=self.schedule.rate, schedule=self.schedule.state(), best=self.best,
                    precision=a.precision, devices=a.devices, lrn=list(a.lrn or alexnet.PAPER_LRN),
                    channel_order=a.channel_order, resize_mode=a.resize_mode, plan=self.plan,
                    seconds_used=round(self.seconds_used(), 1))

    def save(self, folder='', saver=None, keep=None):
        directory = os.path.join(self.a.train_dir, folder)
        checkpoints.save(self.sess, saver or self.saver, directory, self.step, self.meta(), keep or self.a.keep)

    def describe(self):
        a = self.a
        if a.precision == 'bf16' and not alexnet.cpu_has_bf16() and not any('GPU' in d.upper() for d in
                                                                            a.devices.split(',')):
            print(alexnet.BF16_EMULATED_NOTE, file=sys.stderr, flush=True)
        print(f'run folder: {a.train_dir}  (TensorBoard: tensorboard --logdir {os.path.dirname(a.train_dir) or a.train_dir})')
        print(f'{self.ds.name}: {len(self.ds.train) if self.ds.train else "random"} training images, '
              f'{a.num_classes} classes, {self.steps_per_epoch} steps per epoch, towers on {a.devices}, {a.precision}')
        print(f'input {a.input_size}x{a.input_size}, batch {a.batch_size}, {a.epochs} epochs, lr {self.schedule.rate:g} '
              f'({a.lr_schedule}), momentum {a.momentum:g}, weight decay {a.weight_decay:g}, init {a.init}')

    def step_once(self, with_summary=False):
        """One training step. Returns the fetches by name: step (after it), loss, accuracy [top-1, top-k]."""
        if self.schedule.per_step:
            self.sess.run(self.set_rate, {self.new_rate: self.schedule.at_step(self.step, self.steps_per_epoch)})
        fetches = dict(step=self.step_after, loss=self.loss, accuracy=self.accuracy)
        if with_summary:
            fetches['summary'] = self.epoch_summary
        try:
            out = self.run(fetches)
        except tf.errors.OutOfRangeError:
            raise DataError(self.stalled_message()) from None
        if with_summary:
            self.writer.add_summary(out['summary'], self.step)
        self.step = int(out['step'])
        if not np.isfinite(out['loss']):
            kept = checkpoints.latest(self.a.train_dir)
            raise Diverged(f'the loss became {out["loss"]} at step {self.step}: training diverged; lower '
                           f'--lr (now {self.schedule.rate:g}); the last good checkpoint is '
                           f'{kept[0] if kept else "none (nothing was saved yet)"}')
        return out

    step_timeout = None              # cluster.py: seconds a synchronous step may wait for the other workers

    def run(self, fetches):
        """sess.run(fetches), heard by Ctrl-C and SIGTERM while it waits (stopping.run_heard)."""
        return stopping.run_heard(self.sess, fetches, self.stop, self.step_timeout, self.blocked_message)

    def blocked_message(self, seconds):
        return f'a step has waited {seconds:.0f} s'

    def abandon(self, blocked):
        """A step is stuck in the session: save what the variables hold, say so, and end the process at
        once (the stuck step cannot be joined, and closing its session would wait for it)."""
        why, code = str(blocked), 0 if blocked.by_signal else 1
        try:
            if self.is_chief:
                self.save()
                why += f'; checkpoint saved at step {self.step}, continue with: python train.py -resume ' \
                       f'--train-dir {self.a.train_dir}'
        except Exception as e:          # the reason it is stuck may stop the save too: say both
            why += f'; no checkpoint could be saved ({str(e).splitlines()[0][:120]})'
            code = 1
        if self.writer:
            self.writer.flush()
        print(f'{"error: " if code else ""}{why}', file=sys.stderr if code else sys.stdout, flush=True)
        os._exit(code)

    def stalled_message(self):
        """Why the (endless) training stream ended: no image could be read for a long run."""
        split = self.ds.train
        few = ', '.join(map(str, (split.stalled or split.skipped or ['?'])[:3])) if split is not None else '?'
        return (f'training stopped at step {self.step}: more than {preprocessing.UNREADABLE_IN_A_ROW} images in a '
                f'row could not be read (first: {few}): is the data folder still there (unmounted, moved)? '
                f'Fix it and continue with -resume')

    def log_steps(self, epoch):
        """TensorBoard's training scalars every --log-steps steps."""
        a = self.a
        if self.step % a.log_steps == 0 and self.writer:
            loss, (top1, topk) = epoch.recent(a.log_steps)
            scalars(self.writer, self.step, {
                'train/loss': loss, 'train/top1': top1, f'train/top{self.k}': topk,
                'learning_rate': self.schedule.rate, 'images_per_second': epoch.speed})

    def save_due(self):
        a = self.a
        return (a.save_steps and self.step % a.save_steps == 0) or time.time() - self.last_save > 60 * a.save_minutes

    def run_epoch(self, last_step):
        """Steps until the epoch ends, last_step is reached or a signal asks to stop; then the epoch's end."""
        a, spe = self.a, self.steps_per_epoch
        epoch = Epoch(self.step // spe)
        bar = progress.bar(total=spe, initial=self.step % spe, unit='step', desc=f'epoch {epoch.index + 1}/{a.epochs}')
        try:
            while self.step < last_step and not self.stop.signal:
                tic, before = time.time(), self.step
                out = self.step_once(with_summary=not epoch.losses and self.is_chief)
                spent = time.time() - tic
                epoch.add(out['loss'], out['accuracy'], a.batch_size / spent, spent)
                loss, (top1, _) = epoch.recent()
                bar.set_postfix_str(f'loss {loss:.3f} top-1 {100 * top1:.1f}% lr {self.schedule.rate:.2g} '
                                    f'{epoch.speed:.0f} img/s', refresh=False)
                bar.update(self.step - before)
                self.log_steps(epoch)
                if self.step // spe > epoch.index:
                    break
                if self.save_due():
                    self.save()
                    self.last_save = time.time()
        finally:
            bar.close()
        if (self.step // spe > epoch.index or self.reached_plan()) and epoch.losses:   # mid-epoch too: best/
            self.end_epoch(epoch.losses, epoch.hits, time.time() - epoch.started, epoch.step_seconds)
            self.last_save = time.time()

    def last_step(self):
        """Where the run stops: --epochs (or the --time-budget plan), or --max-steps if sooner."""
        total = self.plan['total_steps'] if self.plan else self.a.epochs * self.steps_per_epoch
        return min(total, self.a.max_steps or total)

    def reached_plan(self):
        """True once the --time-budget plan's last step is done."""
        return bool(self.plan) and self.step >= self.plan['total_steps']

    def seconds_used(self):
        """Wall-clock seconds of this run so far, its earlier -resume runs included."""
        return self.seconds_before + time.time() - self.a.started

    def loop(self):
        """Epochs until --epochs or --max-steps, or a signal (then a save); the exit code."""
        a, spe = self.a, self.steps_per_epoch
        self.describe()
        if self.step >= self.last_step():
            print(f'nothing to do: the run is at step {self.step} and stops at {self.last_step()} '
                  f'(raise --epochs or --max-steps)')
            return 0
        self.last_save = time.time()
        try:
            while self.step < self.last_step() and not self.stop.signal:
                self.run_epoch(self.last_step())
        except stopping.StepBlocked as e:
            self.abandon(e)
        if (self.stop.signal or self.step % spe) and self.is_chief:
            self.save()
            why = f'stopped by {self.stop.signal}' if self.stop.signal else \
                'reached the --time-budget plan\'s last step' if self.reached_plan() else 'reached --max-steps'
            print(f'{why} at step {self.step}: checkpoint saved; continue with: '
                  f'python train.py -resume --train-dir {a.train_dir}')
        return 0

    def validate(self):
        """Validation figures (evaluate.run's dict), or None without a validation split."""
        if not self.validation:
            return None
        v = self.validation
        return evaluate.run(self.sess, v['probs'], v['labels'], v['init'], total=v['total'], desc='validation')

    def end_epoch(self, losses, hits, seconds, step_seconds=()):
        """Validate, adjust the learning rate, save latest/best/features, log one line; with --time-budget,
        the first epoch's end fixes the plan."""
        a, epoch = self.a, self.step // self.steps_per_epoch
        ended = time.time()
        top1, topk = np.mean(hits, 0)
        shown = epoch if self.step % self.steps_per_epoch == 0 else f'{self.step / self.steps_per_epoch:.2f}'
        line = f'epoch {shown}/{a.epochs}: loss {np.mean(losses):.4f} top-1 {100 * top1:.2f}%'
        values = {'train/epoch_loss': np.mean(losses), 'train/epoch_top1': top1, f'train/epoch_top{self.k}': topk}
        improved = False
        v = self.validate()
        if v:
            values.update({'val/loss': v['loss'], 'val/top1': v['top1'], f'val/top{v["k"]}': v['topk']})
            line += f' | val loss {v["loss"]:.4f} top-1 {100 * v["top1"]:.2f}% top-{v["k"]} {100 * v["topk"]:.2f}%'
            improved = self.best is None or v['top1'] > self.best['top1']
            if improved:
                self.best = dict(top1=v['top1'], topk=v['topk'], step=self.step, epoch=epoch)
        skipped = len(self.ds.train.skipped) if self.ds.train is not None else 0
        if skipped:
            line += f' | {skipped} unreadable image{"s" * (skipped > 1)} skipped'
            values['train/skipped_images'] = skipped
        old_rate = self.schedule.rate
        self.schedule.end_epoch(epoch, values.get('val/top1'))
        if self.schedule.rate != old_rate:
            self.sess.run(self.set_rate, {self.new_rate: self.schedule.rate})
            line += f' | lr {old_rate:g} -> {self.schedule.rate:g}'
        scalars(self.writer, self.step, values)
        self.writer.flush()
        if improved:       # best/ first: a kill between the two saves leaves no best the JSON does not have
            self.save(checkpoints.BEST_DIR, self.best_saver, 1)
        self.save()
        if a.save_features:
            self.save(checkpoints.FEATURES_DIR, self.feature_saver, 1)
        if a.time_budget and not self.plan and len(step_seconds) > 1:
            self.make_plan(step_seconds[1:], time.time() - ended)     # the first step builds and warms up
        if self.plan:
            line += ' | ' + budget.describe(self.plan, self.seconds_used())
            scalars(self.writer, self.step, {'budget/minutes_left': (self.plan['budget_seconds'] -
                                                                     self.seconds_used()) / 60})
        print(f'{line} | {seconds / 60:.1f} min', flush=True)

    def make_plan(self, step_seconds, epoch_end_seconds):
        """Fix the --time-budget plan once, from the measured costs, and record it in the latest checkpoint."""
        a = self.a
        self.plan = budget.plan(a.time_budget, self.seconds_used(), self.step, self.steps_per_epoch,
                                step_seconds, epoch_end_seconds)
        self.schedule.total_steps = self.plan['total_steps']
        latest = checkpoints.latest(a.train_dir, warn=False)
        if latest and latest[1]['step'] == self.step:            # saved just now: it carries the plan too
            write_json_atomic(latest[0] + '.json', dict(latest[1], plan=self.plan, seconds_used=self.seconds_used()))
