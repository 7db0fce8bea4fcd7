"""Train AlexNet with the paper's recipe (Section 5).

    python train.py -scratch --dataset demo          # a few minutes, offline
    python train.py -scratch --data-dir ILSVRC2012   # the paper's run
    python train.py -resume                          # continue exactly where it stopped

SGD, batch 128, momentum 0.9, weight decay 0.0005, learning rate 0.01 divided
by 10 when the validation error stops improving. Checkpoints, TensorBoard logs
and the best model go into the run folder (--train-dir, default runs/alexnet).
"""
import argparse
import os
import signal
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
import numpy as np
import tensorflow as tf
from tqdm import tqdm

import alexnet
import checkpoints
import data
import datasets
import evaluate
import parallel
import preprocessing
from datasets import DataError
from schedule import LearningRate

# --- the paper's recipe (Section 5) -----------------------------------------
BATCH_SIZE = 128          # "batch size of 128 examples"
EPOCHS = 90               # "roughly 90 cycles through the training set"
LEARNING_RATE = 0.01      # "initialized at 0.01"
MOMENTUM = 0.9            # "momentum of 0.9"
WEIGHT_DECAY = 0.0005     # "weight decay of 0.0005"
SYNTHETIC_EPOCH_STEPS = 1000   # --synthetic has no dataset; an 'epoch' is this many steps

DEFAULTS = dict(dataset='auto', data_dir=None, train_dir=checkpoints.DEFAULT_TRAIN_DIR,
                batch_size=BATCH_SIZE, epochs=EPOCHS, input_size=alexnet.INPUT_SIZE,
                resize_size=None, lr=LEARNING_RATE, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY,
                lr_schedule='plateau', lr_steps='', patience=2, min_improvement=0.001,
                max_drops=3, devices=None, validate=None, max_steps=None, seed=0,
                synthetic=False, num_classes=alexnet.NUM_CLASSES, model_path=None,
                precision='fp32', init='paper', val_size=5000, md5=None, save_minutes=10.0, save_steps=0,
                keep=3, save_features=False, histograms=False, log_steps=20, replicas=None,
                dropout=alexnet.DROPOUT_RATE, warmup_epochs=0, label_smoothing=0.0,
                data_format=None)
# --dataset demo (1,000 images of 32x32): the paper's settings would take most of an hour and stay at
# chance; these learn in minutes on a CPU (see README, Results). Flags given still win.
DEMO_DEFAULTS = dict(input_size=alexnet.MIN_INPUT_SIZE, batch_size=32, epochs=30, lr=0.01, init='he',
                     lr_schedule='onecycle', warmup_epochs=3)
# Fixed by the first run: changing them would change the data order or the graph.
FIXED_ON_RESUME = ('dataset', 'init', 'batch_size', 'input_size', 'resize_size', 'seed', 'synthetic',
                   'num_classes', 'val_size')


class Parser(argparse.ArgumentParser):
    """A bad flag value gets one line; only a missing -scratch/-resume gets the usage too."""
    def error(self, message):
        if '-scratch' in message:
            self.print_usage(sys.stderr)
        self.exit(2, f'error: {message} (see --help)\n')


def parse_args(argv):
    p = Parser(description='Train AlexNet (two towers) with the paper\'s recipe.', argument_default=None)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument('-scratch', action='store_true', help='start a new run')
    mode.add_argument('-resume', action='store_true', help='continue the run in --train-dir')
    p.add_argument('--overwrite', action='store_true', help='let -scratch delete an earlier run\'s checkpoints')
    p.add_argument('--dataset', choices=data.DATASET_CHOICES,
                   help='imagenet, cifar10, folder (DIR/train/<class>/*), demo (offline subset of '
                        'CIFAR-10 in the repo); default: ImageNet if --data-dir holds it, else CIFAR-10')
    p.add_argument('-p', '--data-dir', '--path_data', dest='data_dir', help='dataset folder')
    p.add_argument('--train-dir', help=f'run folder for checkpoints and logs (default {DEFAULTS["train_dir"]})')
    p.add_argument('-b', '--batch-size', type=int, help=f'images per step (default {BATCH_SIZE})')
    p.add_argument('-e', '--epochs', type=int, help=f'epochs (default {EPOCHS})')
    p.add_argument('-i', '--input-size', type=int, help=f'square crop size (default {alexnet.INPUT_SIZE})')
    p.add_argument('--resize-size', type=int, help='shorter side before cropping (default input size x 256/227)')
    p.add_argument('--lr', type=float, help=f'learning rate (default {LEARNING_RATE}); on -resume, sets the current rate')
    p.add_argument('--momentum', type=float, help=f'momentum (default {MOMENTUM})')
    p.add_argument('--weight-decay', type=float, help=f'weight decay on the weights (default {WEIGHT_DECAY})')
    p.add_argument('--lr-schedule', choices=('plateau', 'step', 'onecycle'), help='divide by 10 when validation '
                   'top-1 stalls (default), at fixed epochs (--lr-steps), or onecycle: a linear warm-up '
                   '(--warmup-epochs) to --lr, then a linear decay to 0 at the last epoch (a departure, see README)')
    p.add_argument('--warmup-epochs', type=float, help='onecycle: epochs of linear warm-up (default 0)')
    p.add_argument('--label-smoothing', type=float, help='share of each target spread over all classes '
                   '(default 0, the paper\'s plain cross-entropy; a departure, see README)')
    p.add_argument('--lr-steps', help='epochs at which a step schedule divides the rate by 10, e.g. 30,60,80')
    p.add_argument('--patience', type=int, help='plateau: epochs without improvement before a drop (default 2)')
    p.add_argument('--min-improvement', type=float, help='plateau: top-1 gain that counts (default 0.001)')
    p.add_argument('--max-drops', type=int, help='plateau: most drops (default 3, as in the paper)')
    p.add_argument('--devices', help='tower devices, e.g. /gpu:0,/gpu:1 (default: two GPUs, one GPU or the CPU); '
                   'two per replica: /gpu:0,/gpu:1,/gpu:2,/gpu:3 trains 2 replicas')
    p.add_argument('--replicas', type=int, help='copies of the two-tower model in this machine, each on its '
                   'own devices; the batch is split over them and their gradients averaged (default 1)')
    p.add_argument('--dropout', type=float, help=f'dropout rate of fc6 and fc7 (default {alexnet.DROPOUT_RATE}, '
                   'the paper\'s; 0 turns it off, e.g. for exact comparisons)')
    p.add_argument('-v', '--validate', action=argparse.BooleanOptionalAction,
                   help='validate every epoch (default: on when a validation set exists)')
    p.add_argument('--max-steps', type=int, help='stop (and save) when the global step reaches N')
    p.add_argument('--seed', type=int, help='seed for data order, augmentation, dropout and init (default 0)')
    p.add_argument('--synthetic', action='store_true', default=None, help='random images, no dataset: benchmarks, smoke tests')
    p.add_argument('--num-classes', type=int, help='classes for --synthetic (default 1000)')
    p.add_argument('-m', '--model_path', '--model-path', dest='model_path',
                   help='start from another checkpoint\'s weights (layers of matching shape)')
    p.add_argument('--data-format', type=str.upper, choices=alexnet.DATA_FORMATS,
                   help='activation layout inside the network: NHWC or NCHW (default: NCHW on GPUs, cuDNN\'s '
                        'own; NHWC on CPUs, about 2x faster there); checkpoints are the same either way')
    p.add_argument('--precision', choices=('fp32', 'bf16', 'fp16'),
                   help='fp32 (default); bf16: oneDNN mixed precision on CPUs with AMX/AVX-512; fp16: GPUs, with loss scaling')
    p.add_argument('--init', choices=alexnet.INITS,
                   help='weights from N(0, 0.01) as in the paper (default), or he: N(0, 2/fan_in), '
                        'which learns small datasets much sooner (a departure, see README)')
    p.add_argument('--val-size', type=int, help='CIFAR-10 training images held out for validation (default 5000)')
    p.add_argument('--md5', help='MD5 of your own CIFAR-10 archive, when it is not the official one')
    p.add_argument('--save-minutes', type=float, help='save the latest checkpoint every N minutes (default 10)')
    p.add_argument('--save-steps', type=int, help='also save every N steps (default 0: off)')
    p.add_argument('--keep', type=int, help='latest checkpoints to keep (default 3)')
    p.add_argument('--save-features', action='store_true', default=None, help='also save conv1..conv5 weights each epoch')
    p.add_argument('--histograms', action='store_true', default=None, help='weight histograms in TensorBoard each epoch')
    p.add_argument('--log-steps', type=int, help='TensorBoard training scalars every N steps (default 20)')
    import cluster
    cluster.add_flags(p)
    args = p.parse_args(argv)
    if not (args.scratch or args.resume) and args.job_name != 'ps':    # a parameter server needs neither
        p.error('one of the arguments -scratch -resume is required')
    return args


def settle_args(args):
    """Fill defaults (or the run's stored flags on -resume) and check values."""
    given = {k: v for k, v in vars(args).items() if v is not None and k not in ('scratch', 'resume', 'overwrite')}
    helper = getattr(args, 'job_name', None) == 'worker' and (args.task_index or 0) > 0   # not the chief
    train_dir = given.get('train_dir', DEFAULTS['train_dir'])
    settled = dict(DEFAULTS)
    if given.get('dataset') == 'demo':
        settled.update(DEMO_DEFAULTS)
    found = checkpoints.latest(train_dir) if args.resume else None
    if args.resume and not found and not helper:    # a worker elsewhere has its flags; the chief restores
        raise DataError(f'nothing to resume in {train_dir}: start a run with -scratch '
                        f'(or point --train-dir at an earlier run)')
    meta = found[1] if found else None
    if meta:
        settled.update(meta['args'])
        for key in FIXED_ON_RESUME:
            if key in given and given[key] != meta['args'].get(key):
                raise DataError(f'--{key.replace("_", "-")} cannot change on -resume (the run used '
                                f'{meta["args"].get(key)}); start a new run with -scratch instead')
    settled.update(given)
    a = argparse.Namespace(**settled, scratch=args.scratch, resume=args.resume, overwrite=args.overwrite,
                           explicit_lr=args.resume and 'lr' in given)
    for key in ('batch_size', 'epochs', 'keep', 'log_steps', 'num_classes', 'patience'):
        if getattr(a, key) < 1:
            raise DataError(f'--{key.replace("_", "-")} must be at least 1, got {getattr(a, key)}')
    if a.max_steps is not None and a.max_steps < 1:
        raise DataError(f'--max-steps must be at least 1, got {a.max_steps}')
    if a.lr <= 0 or a.momentum < 0 or a.weight_decay < 0:
        raise DataError('--lr must be positive and --momentum, --weight-decay not negative')
    if not 0 <= a.label_smoothing < 1:
        raise DataError(f'--label-smoothing must be in [0, 1), got {a.label_smoothing}')
    if not 0 <= a.dropout < 1:
        raise DataError(f'--dropout must be in [0, 1), got {a.dropout}')
    if a.data_dir and not os.path.exists(a.data_dir):
        raise DataError(f'--data-dir {a.data_dir} does not exist')
    if a.data_dir and not os.path.isdir(a.data_dir) and a.dataset not in ('cifar10', 'auto'):
        raise DataError(f'--data-dir {a.data_dir} is a file: only CIFAR-10 takes an archive '
                        f'(cifar-10-python.tar.gz); give the dataset\'s folder')
    try:
        alexnet.check_input_size(a.input_size)
    except ValueError as e:
        raise DataError(str(e)) from None
    a.devices = ','.join(parallel.parse_devices(a.devices, a.replicas))
    a.replicas = len(a.devices.split(',')) // 2
    if a.batch_size % a.replicas:
        raise DataError(f'--batch-size {a.batch_size} does not split evenly over {a.replicas} replicas')
    if a.resize_size is None:
        a.resize_size = round(a.input_size * 256 / alexnet.INPUT_SIZE)   # the paper's 256 for 224/227
    if a.resize_size < a.input_size:
        raise DataError(f'--resize-size {a.resize_size} is smaller than the crop {a.input_size}')
    return a, meta


def load_data(a):
    if a.synthetic:
        names = [f'class_{i}' for i in range(a.num_classes)]
        return datasets.Dataset('synthetic', names, mean=(0.0, 0.0, 0.0), resize_size=a.resize_size)
    ds = data.load_dataset(a.dataset, a.data_dir, val_size=a.val_size, seed=a.seed, md5=a.md5)
    if ds.train is None or len(ds.train) < a.batch_size:
        raise DataError(f'the {ds.name} training set has {len(ds.train) if ds.train else 0} images, '
                        f'fewer than one batch of {a.batch_size}: lower --batch-size')
    a.dataset, a.num_classes = ds.name, ds.num_classes
    return ds


def build_inputs(a, ds, start_step):
    """Training batches from the pipeline on the CPU, prefetched to the model's device (or random ones)."""
    with tf.device('/cpu:0'):
        if a.synthetic:
            images = tf.random.uniform([a.batch_size, a.input_size, a.input_size, 3], -128, 128)
            labels = tf.random.uniform([a.batch_size], 0, a.num_classes, tf.int64)
            return images, labels
        data = preprocessing.train_dataset(ds.train, a.batch_size, a.input_size, ds.mean,
                                           a.resize_size, seed=a.seed, start_step=start_step)
    return parallel.batches_on(data, parallel.input_device(a.devices))[0]


def build_train_op(a, images, labels, global_step, learning_rate, wrap_optimizer=None):
    """Loss, top-1, and the momentum update with weight decay (Section 5), averaged over the
    in-machine replicas (--replicas, parallel.py); wrap_optimizer serves the cluster (cluster.py)."""
    return parallel.build_train_op(a, images, labels, global_step, learning_rate, wrap_optimizer)


def build_validation(a, ds):
    """Centre-crop validation on the held-out split, sharing the training weights."""
    if not a.validate or ds.val is None:
        return None
    with tf.device('/cpu:0'):
        data = preprocessing.eval_dataset(ds.val, a.batch_size, a.input_size, ds.mean, a.resize_size,
                                          mode='center', seed=a.seed)
    devices = a.devices.split(',')[:2]
    (crops, labels), init = parallel.batches_on(data, devices[0], initializable=True)
    with tf.compat.v1.variable_scope(tf.compat.v1.get_variable_scope(), reuse=True):
        probs = evaluate.crop_probabilities(crops, a.num_classes, devices)
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


class Diverged(Exception):
    """The loss became NaN or infinite."""


class StopRequest:
    """SIGINT / SIGTERM: finish the step, save a checkpoint, exit 0."""
    def __init__(self):
        self.signal = None
        self.previous = {sig: signal.signal(sig, self.handle) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handle(self, signum, frame):
        self.signal = signal.Signals(signum).name

    def restore(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def prepare_run_folder(a):
    if a.scratch and checkpoints.has_checkpoints(a.train_dir):
        if not a.overwrite:
            raise DataError(f'{a.train_dir} already holds checkpoints: continue it with -resume, '
                            f'choose another --train-dir, or add --overwrite to delete them')
        import shutil
        shutil.rmtree(a.train_dir)
    os.makedirs(a.train_dir, exist_ok=True)


def train(a, meta):
    ds = load_data(a)
    if getattr(a, 'job_name', None):
        import cluster
        return cluster.run_worker(a, meta, ds)
    prepare_run_folder(a)
    if a.validate is None:
        a.validate = ds.val is not None
    with tf.Graph().as_default():
        trainer = Trainer(a, meta, ds)
        try:
            return trainer.loop()
        finally:
            trainer.close()


class Trainer:
    """The graph, the session and the loop: steps, epoch ends, checkpoints, logs."""

    def __init__(self, a, meta, ds):
        self.a, self.ds = a, ds
        self.steps_per_epoch = SYNTHETIC_EPOCH_STEPS if a.synthetic else \
            preprocessing.steps_per_epoch(ds.train, a.batch_size)
        self.schedule = LearningRate(a, meta['schedule'] if meta else None)
        self.best = meta['best'] if meta else None
        tf.compat.v1.set_random_seed(a.seed)
        self.global_step = tf.compat.v1.train.get_or_create_global_step()
        self.rate = tf.compat.v1.get_variable('learning_rate', [], trainable=False,
                                              initializer=tf.constant_initializer(a.lr))
        self.new_rate = tf.compat.v1.placeholder(tf.float32, [])
        self.set_rate = tf.compat.v1.assign(self.rate, self.new_rate)
        images, labels = self.inputs(meta)
        self.train_op, self.loss, self.accuracy = build_train_op(a, images, labels, self.global_step, self.rate,
                                                                 self.wrap_optimizer)   # [top-1, top-k]
        self.k = min(5, a.num_classes)
        with tf.control_dependencies([self.train_op]):
            self.step_after = tf.identity(self.global_step.read_value())   # other workers may add steps
        self.validation = build_validation(a, ds)
        shown = tf.cast(tf.clip_by_value(images[:4] + tf.constant(ds.mean, tf.float32), 0, 255), tf.uint8)
        summaries = [tf.compat.v1.summary.image('inputs', shown, max_outputs=4)]
        if a.histograms:
            with tf.name_scope('histograms/'):      # tags histograms/conv1_a/weights, not conv1_a/weights_1
                summaries += [tf.compat.v1.summary.histogram(v.op.name, v) for v in tf.compat.v1.trainable_variables()]
        self.epoch_summary = tf.compat.v1.summary.merge(summaries)
        weights = tf.compat.v1.trainable_variables()
        self.saver = tf.compat.v1.train.Saver(max_to_keep=None)
        self.best_saver = tf.compat.v1.train.Saver(weights + [self.global_step], max_to_keep=None)
        self.feature_saver = tf.compat.v1.train.Saver(
            [v for v in weights if v.op.name.split('_')[0] in alexnet.FEATURE_LAYERS], max_to_keep=None)

        self.sess = self.session(meta)
        self.step = int(self.sess.run(self.global_step))
        self.writer = self.is_chief and tf.compat.v1.summary.FileWriter(a.train_dir, None if meta else self.sess.graph)
        self.stop = StopRequest()

    is_chief = True                  # cluster.py: only worker 0 saves, validates and logs
    wrap_optimizer = None

    def inputs(self, meta):
        return build_inputs(self.a, self.ds, meta['step'] if meta else 0)

    def session(self, meta, sess=None):
        """A session with the variables restored (-resume), or initialised (and warm-started)."""
        a = self.a
        self.sess = sess or tf.compat.v1.Session(config=alexnet.session_config(a.precision, a.devices.split(',')))
        if meta:
            self.saver.restore(self.sess, checkpoints.latest(a.train_dir)[0])
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
                    precision=a.precision, devices=a.devices)

    def save(self, folder='', saver=None, keep=None):
        directory = os.path.join(self.a.train_dir, folder)
        checkpoints.save(self.sess, saver or self.saver, directory, self.step, self.meta(), keep or self.a.keep)

    def loop(self):
        a, spe = self.a, self.steps_per_epoch
        total = a.epochs * spe
        last_step = min(total, a.max_steps or total)
        print(f'run folder: {a.train_dir}  (TensorBoard: tensorboard --logdir {os.path.dirname(a.train_dir) or a.train_dir})')
        print(f'{self.ds.name}: {len(self.ds.train) if self.ds.train else "random"} training images, '
              f'{a.num_classes} classes, {spe} steps per epoch, towers on {a.devices}, {a.precision}')
        print(f'input {a.input_size}x{a.input_size}, batch {a.batch_size}, {a.epochs} epochs, lr {self.schedule.rate:g} '
              f'({a.lr_schedule}), momentum {a.momentum:g}, weight decay {a.weight_decay:g}, init {a.init}')
        if self.step >= last_step:
            print(f'nothing to do: the run is at step {self.step} and stops at {last_step} '
                  f'(raise --epochs or --max-steps)')
            return 0
        last_save = time.time()
        while self.step < last_step and not self.stop.signal:
            epoch = self.step // spe
            bar = tqdm(total=spe, initial=self.step % spe, unit='step', desc=f'epoch {epoch + 1}/{a.epochs}',
                       dynamic_ncols=True)
            losses, hits, started, speed = [], [], time.time(), None
            while self.step < last_step and not self.stop.signal:
                if self.schedule.per_step:
                    self.sess.run(self.set_rate, {self.new_rate: self.schedule.at_step(self.step, spe)})
                tic = time.time()
                out = self.sess.run([self.step_after, self.loss, self.accuracy] +
                                    ([self.epoch_summary] if not losses and self.is_chief else []))
                rate = a.batch_size / (time.time() - tic)
                speed = rate if speed is None else 0.9 * speed + 0.1 * rate
                if len(out) == 4:
                    self.writer.add_summary(out[3], self.step)
                done, self.step = self.step, int(out[0])
                if not np.isfinite(out[1]):
                    bar.close()
                    kept = checkpoints.latest(a.train_dir)
                    raise Diverged(f'the loss became {out[1]} at step {self.step}: training diverged; lower '
                                   f'--lr (now {self.schedule.rate:g}); the last good checkpoint is '
                                   f'{kept[0] if kept else "none (nothing was saved yet)"}')
                losses.append(out[1])
                hits.append(out[2])
                bar.update(self.step - done)
                bar.set_postfix_str(f'loss {np.mean(losses[-50:]):.3f} top-1 {100 * np.mean(hits[-50:], 0)[0]:.1f}% '
                                    f'lr {self.schedule.rate:.2g} {speed:.0f} img/s')
                if self.step % a.log_steps == 0 and self.writer:
                    top1, topk = np.mean(hits[-a.log_steps:], 0)
                    scalars(self.writer, self.step, {
                        'train/loss': np.mean(losses[-a.log_steps:]), 'train/top1': top1, f'train/top{self.k}': topk,
                        'learning_rate': self.schedule.rate, 'images_per_second': speed})
                if self.step // spe > epoch:
                    break
                if (a.save_steps and self.step % a.save_steps == 0) or time.time() - last_save > 60 * a.save_minutes:
                    self.save()
                    last_save = time.time()
            bar.close()
            if self.step // spe > epoch and losses:
                self.end_epoch(losses, hits, time.time() - started)
                last_save = time.time()
        if (self.stop.signal or self.step % spe) and self.is_chief:
            self.save()
            why = f'stopped by {self.stop.signal}' if self.stop.signal else 'reached --max-steps'
            print(f'{why} at step {self.step}: checkpoint saved; continue with: '
                  f'python train.py -resume --train-dir {a.train_dir}')
        return 0

    def end_epoch(self, losses, hits, seconds):
        """Validate, adjust the learning rate, save latest/best/features, log one line."""
        a, epoch = self.a, self.step // self.steps_per_epoch
        top1, topk = np.mean(hits, 0)
        line = f'epoch {epoch}/{a.epochs}: loss {np.mean(losses):.4f} top-1 {100 * top1:.2f}%'
        values = {'train/epoch_loss': np.mean(losses), 'train/epoch_top1': top1, f'train/epoch_top{self.k}': topk}
        improved = False
        if self.validation:
            v = evaluate.run(self.sess, self.validation['probs'], self.validation['labels'],
                             self.validation['init'], total=self.validation['total'], desc='validation')
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
        self.save()
        if improved:
            self.save(checkpoints.BEST_DIR, self.best_saver, 1)
        if a.save_features:
            self.save(checkpoints.FEATURES_DIR, self.feature_saver, 1)
        print(f'{line} | {seconds / 60:.1f} min', flush=True)


def main(argv=None):
    try:
        args = parse_args(argv)
        if args.job_name == 'ps':
            import cluster
            return cluster.serve(args)
        a, meta = settle_args(args)
        return train(a, meta)
    except DataError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    except Diverged as e:
        print(f'error: {e}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
