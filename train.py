"""Train AlexNet with the paper's recipe (Section 5).

    python train.py -scratch --dataset demo          # a few minutes, offline
    python train.py -scratch --data-dir ILSVRC2012   # the paper's run
    python train.py -resume                          # continue exactly where it stopped

SGD, batch 128, momentum 0.9, weight decay 0.0005, learning rate 0.01 divided
by 10 when the validation error stops improving. Checkpoints, TensorBoard logs
and the best model go into the run folder (--train-dir, default runs/alexnet).
"""
import argparse
import math
import os
import sys
import time

import quiet  # noqa: F401  (first: keeps TensorFlow's start-up lines out of the output)
import alexnet
import budget
import checkpoints
import cli
import cluster
import data
import datasets
import parallel
import preprocessing
import recipe
import trainer
from datasets import DataError
from trainer import DEFAULTS, Diverged

# --dataset demo (1,000 images of 32x32): the paper's settings would take most of an hour and stay at
# chance; these learn in minutes on a CPU (see README, Results). Flags given still win.
DEMO_DEFAULTS = dict(input_size=alexnet.MIN_INPUT_SIZE, batch_size=32, epochs=30, lr=0.01, init='he',
                     lr_schedule='onecycle', warmup_epochs=3)
# Fixed by the first run: changing them would change the data order or the graph.
FIXED_ON_RESUME = ('dataset', 'init', 'batch_size', 'input_size', 'resize_size', 'seed', 'synthetic',
                   'num_classes', 'val_size', 'time_budget')


class Parser(cli.Parser):
    """A bad flag value gets one line; only a missing -scratch/-resume gets the usage too."""
    def error(self, message):
        if '-scratch' in message:
            self.print_usage(sys.stderr)
        super().error(message)


def duration(text):
    """argparse's type for --time-budget: seconds."""
    try:
        return budget.parse_duration(text)
    except DataError as e:
        raise argparse.ArgumentTypeError(str(e).split(': ', 1)[-1]) from None


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
    p.add_argument('-b', '--batch-size', type=int, help=f'images per step (default {recipe.BATCH_SIZE})')
    p.add_argument('-e', '--epochs', type=int, help=f'epochs (default {recipe.EPOCHS})')
    p.add_argument('-i', '--input-size', type=int, help=f'square crop size (default {alexnet.INPUT_SIZE})')
    p.add_argument('--resize-size', type=int, help='shorter side before cropping (default input size x 256/227)')
    p.add_argument('--lr', type=float, help=f'learning rate (default {recipe.LEARNING_RATE}); on -resume, sets the current rate')
    p.add_argument('--momentum', type=float, help=f'momentum (default {recipe.MOMENTUM})')
    p.add_argument('--weight-decay', type=float, help=f'weight decay on the weights (default {recipe.WEIGHT_DECAY})')
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
                   help='start from another checkpoint\'s weights (layers of matching shape; e.g. the imported '
                        'runs/bvlc_alexnet); its LRN constants, channel order, resize mode and mean are kept')
    p.add_argument('--train-layers', help='fine-tuning: update only these layers, e.g. fc7,fc8 (default: all); '
                   'the others stay exactly as loaded')
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
    p.add_argument('--time-budget', type=duration, help='plan the run to end inside this wall-clock time, e.g. 55m '
                   'or 1.5h: the first epoch is measured, then the number of steps is fixed (kept by -resume) and '
                   'one-cycle ends there; --epochs is then only the first guess')
    cluster.add_flags(p)
    args = p.parse_args(argv)
    if not (args.scratch or args.resume) and args.job_name != 'ps':    # a parameter server needs neither
        p.error('one of the arguments -scratch -resume is required')
    return args


def settle_args(args):
    """Fill defaults (or the run's stored flags on -resume) and check values."""
    given = {k: v for k, v in vars(args).items() if v is not None and k not in ('scratch', 'resume', 'overwrite')}
    helper = args.job_name == 'worker' and (args.task_index or 0) > 0   # not the chief
    train_dir = given.get('train_dir', DEFAULTS['train_dir'])
    settled = dict(DEFAULTS, **cluster.DEFAULTS)    # cluster flags are not recorded in checkpoints
    if given.get('dataset') == 'demo':
        settled.update(DEMO_DEFAULTS)
    found = checkpoints.latest(train_dir) if args.resume else None
    if args.resume and not found and not helper:    # a worker elsewhere has its flags; the chief restores
        raise DataError(f'nothing to resume in {train_dir}: start a run with -scratch '
                        f'(or point --train-dir at an earlier run)')
    meta = found[1] if found else None
    if meta:
        if not isinstance(meta.get('args'), dict) or not isinstance(meta.get('schedule'), dict):
            raise DataError(f'{found[0]}.json lacks the run\'s settings ("args", "schedule"): it was not written '
                            f'by train.py, or was edited; restore it, or start a new run with -scratch')
        wrong = trainer.recorded_args_problem(meta['args'])
        if wrong:
            raise checkpoints.edited(found[0], f'its args\' {wrong}')
        settled.update(meta['args'])
        settled['train_dir'] = train_dir            # where the run is now, wherever it was made
        for key in FIXED_ON_RESUME:
            if key in given and given[key] != meta['args'].get(key):
                raise DataError(f'--{key.replace("_", "-")} cannot change on -resume (the run used '
                                f'{meta["args"].get(key)}); start a new run with -scratch instead')
        if 'fp16' in (given.get('precision'), meta['args'].get('precision')) and \
                given.get('precision', 'fp16') != meta['args'].get('precision'):
            raise DataError(f'--precision cannot change to or from fp16 on -resume (the run used '
                            f'{meta["args"].get("precision")}; fp16 adds the loss scale to the checkpoint); '
                            f'start a new run with -scratch instead')
    settled.update(given)
    if args.scratch and settled.get('model_path'):
        settled.update(inherited_from(settled['model_path']))
    a = argparse.Namespace(**settled, scratch=args.scratch, resume=args.resume, overwrite=args.overwrite,
                           explicit_lr=args.resume and 'lr' in given)
    for key in ('batch_size', 'epochs', 'keep', 'log_steps', 'num_classes', 'patience'):
        if getattr(a, key) < 1:
            raise DataError(f'--{key.replace("_", "-")} must be at least 1, got {getattr(a, key)}')
    if a.max_steps is not None and a.max_steps < 1:
        raise DataError(f'--max-steps must be at least 1, got {a.max_steps}')
    for key in ('lr', 'momentum', 'weight_decay', 'min_improvement', 'save_minutes', 'warmup_epochs',
                'label_smoothing', 'dropout'):
        if not math.isfinite(getattr(a, key)):
            raise DataError(f'--{key.replace("_", "-")} must be a finite number, got {getattr(a, key)}')
    if a.lr <= 0 or a.momentum < 0 or a.weight_decay < 0:
        raise DataError('--lr must be positive and --momentum, --weight-decay not negative')
    for key in ('seed', 'save_steps', 'val_size'):
        if getattr(a, key) < 0:
            raise DataError(f'--{key.replace("_", "-")} must not be negative, got {getattr(a, key)}')
    if a.save_minutes <= 0 or a.min_improvement < 0:
        raise DataError('--save-minutes must be positive and --min-improvement not negative')
    if os.path.exists(a.train_dir) and not os.path.isdir(a.train_dir):
        raise DataError(f'--train-dir {a.train_dir} is a file: give a folder for the run')
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
    recipe.layers_of(a.train_layers)          # a one-line error for an unknown layer
    if a.time_budget and a.job_name:
        raise DataError('--time-budget plans a run on one machine: leave it out of a cluster run (--job-name)')
    if a.resize_size is None:
        a.resize_size = preprocessing.resize_size_for(a.input_size)   # the paper's 256 for 227
    if a.resize_size < a.input_size:
        raise DataError(f'--resize-size {a.resize_size} is smaller than the crop {a.input_size}')
    return a, meta


INHERITED = ('lrn', 'channel_order', 'resize_mode')   # what a network expects of its input, kept by fine-tuning


def inherited_from(model_path):
    """What a new run keeps of the checkpoint it starts from (--model_path): the LRN constants, channel
    order and resize mode its network was trained with, and its mean when it was imported (Caffe's)."""
    try:
        meta = checkpoints.for_use(checkpoint=model_path)[1]
    except DataError:
        return {}                  # a bare TensorFlow checkpoint: nothing recorded (warm_start checks it)
    kept = {key: meta[key] for key in INHERITED if meta.get(key) is not None}
    mean = meta.get('args', {}).get('mean') or (meta.get('mean') if meta.get('source') else None)
    if mean:
        kept['mean'] = list(mean)
    return kept


def check_same_classes(ds, meta):
    """-resume: the dataset must have the checkpoint's classes, in its order (a renamed class folder
    would silently permute the labels)."""
    if list(ds.class_names) != list(meta['class_names']):
        changed = [f'{i}: {old!r} -> {new!r}' for i, (old, new) in
                   enumerate(zip(meta['class_names'], ds.class_names)) if old != new][:3]
        raise DataError(f'the {ds.name} data has other classes than the run ({len(ds.class_names)} now, '
                        f'{len(meta["class_names"])} in the checkpoint'
                        f'{"; " + ", ".join(changed) if changed else ""}): give the run\'s data, or start '
                        f'a new run with -scratch')


def load_data(a, meta=None):
    """The run's Dataset (on -resume, checked against the checkpoint's classes, with its mean)."""
    if a.synthetic:
        names = [f'class_{i}' for i in range(a.num_classes)]
        return datasets.Dataset('synthetic', names, mean=(0.0, 0.0, 0.0))
    ds = data.load_dataset(a.dataset, a.data_dir, val_size=a.val_size, seed=a.seed, md5=a.md5)
    if meta:
        check_same_classes(ds, meta)
        ds.mean = tuple(meta['mean'])     # measured once, by the first run: a resumed run sees the same pixels
    elif a.mean:
        ds.mean = tuple(a.mean)           # the pretrained network's (--model_path), not this data's
    if ds.num_classes < 2:
        raise DataError(f'the {ds.name} data has {ds.num_classes} class ({", ".join(ds.class_names)}): a '
                        f'classifier needs at least 2 class folders')
    if ds.train is None or len(ds.train) < a.batch_size:
        raise DataError(f'the {ds.name} training set has {len(ds.train) if ds.train else 0} images, '
                        f'fewer than one batch of {a.batch_size}: lower --batch-size')
    a.dataset, a.num_classes = ds.name, ds.num_classes
    return ds


def train(a, meta):
    """Load the data, then train here (trainer.py) or as one task of a cluster (cluster.py)."""
    ds = load_data(a, meta)
    if a.job_name:
        return cluster.run_worker(a, meta, ds)
    return trainer.run(a, meta, ds)


def main(argv=None):
    started = budget.process_start() if argv is None else time.time()    # what --time-budget counts from
    cli.one_line_warnings()
    try:
        args = parse_args(argv)
        if args.job_name == 'ps':
            return cluster.serve(args)
        a, meta = settle_args(args)
        a.started = started
        return train(a, meta)
    except DataError as e:
        return cli.fail(e)
    except Diverged as e:
        return cli.fail(e, code=1)


if __name__ == '__main__':
    sys.exit(main())
