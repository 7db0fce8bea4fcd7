"""Every setting of a training run, declared once: its flag, default, type, check, help and -resume rule.

    python train.py --help        # this table, as argparse shows it

One `Setting` per line of SETTINGS below. Everything else is derived from it:
train.py's flags (their defaults shown in --help), each value's check, the type
check of the settings a checkpoint records (its JSON's "args", a hand edit
usually), which settings -resume may change, and the defaults themselves
(DEFAULTS). The demo's different defaults are one overlay (DEMO); the cluster's
settings are in the table, marked as not recorded in checkpoints.
"""
import argparse
import json
import math
import os
from dataclasses import dataclass

import alexnet
import budget
import checkpoints
import cifar10_utils
import data
import parallel
import preprocessing
import recipe
from errors import DataError

FREE, FIXED = 'may change', 'fixed'    # on -resume: a setting may change, or is fixed by the first run
NO_FP16_SWITCH = 'fp16'                # precision: fp16 adds the loss scale to the checkpoint (recipe.py)
AUTO = 'auto'                          # precision: this machine's fastest (parallel.auto_precision)
WAIT_SECONDS = 300.0   # how long a cluster worker waits for the parameter servers and the chief
STEP_TIMEOUT = 600.0   # how long a synchronous step may wait for the other workers before the run stops
MOST = 2 ** 31 - 1     # the largest number any setting takes (cli.MAX_WHOLE): a larger one is a typo
MAX_REPLICAS = 256     # copies of the model in one machine: more than any machine has devices


# --- the checks: each returns what is wrong with a value (after the flag's name), or None -------
def at_least(low, high=MOST):
    return lambda v: f'must be at least {low}, got {v}' if v < low else at_most(high)(v)


def at_most(high):
    return lambda v: None if v <= high else f'must be at most {high}, got {v}'


def not_negative(v):
    return f'must not be negative, got {v}' if v < 0 else at_most(MOST)(v)


def finite(v):
    return None if math.isfinite(v) else f'must be a finite number, got {v}'


def finite_and(rule, high=MOST):
    return lambda v: finite(v) or rule(v) or at_most(high)(v)


def positive(v):
    return None if v > 0 else f'must be positive, got {v}'


def fraction(v):
    return None if 0 <= v < 1 else f'must be in [0, 1), got {v}'


def is_train_layers(v):
    if not v.strip():
        return f'names no layer: leave it out to train every layer, or name some of {",".join(alexnet.LAYERS)}'
    try:
        recipe.layers_of(v)
    except DataError as e:
        return str(e).split(': ', 1)[-1]
    return None


def duration(text):
    """argparse's type for --time-budget: seconds."""
    try:
        return budget.parse_duration(text)
    except DataError as e:
        raise argparse.ArgumentTypeError(str(e).split(': ', 1)[-1]) from None


@dataclass(frozen=True)
class Setting:
    name: str                    # the attribute (a.batch_size) and the JSON key
    default: object
    help: str = ''
    flags: tuple = None          # None: --name-with-dashes; (): no flag (inherited from --model_path)
    kind: type = None            # the value's type; None: the default's
    check: object = None         # value -> what is wrong with it, or None
    choices: tuple = None
    parse: object = None         # argparse's type, when it is not `kind`
    action: str = None           # 'store_true', or argparse.BooleanOptionalAction
    resume: str = FREE           # FREE, FIXED or NO_FP16_SWITCH
    recorded: bool = True        # in every checkpoint's "args" (the cluster's settings are not)
    shown_default: str = None    # --help's words for a default that is None or derived

    @property
    def flag(self):
        """The name messages use: the first long flag (the setting's name where it has no flag)."""
        if self.flags is None:
            return f'--{self.name.replace("_", "-")}'
        return next((f for f in self.flags if f.startswith('--')), self.name)

    @property
    def type(self):
        return self.kind or type(self.default)


S = Setting
SETTINGS = [
    # what and where
    S('dataset', 'auto', 'imagenet, cifar10, folder (DIR/train/<class>/*), demo (offline subset of CIFAR-10 in '
      'the repo)', choices=data.DATASET_CHOICES, resume=FIXED,
      shown_default='ImageNet if --data-dir holds it, else CIFAR-10'),
    S('data_dir', None, 'dataset folder', flags=('-p', '--data-dir', '--path_data'), kind=str),
    S('train_dir', checkpoints.DEFAULT_TRAIN_DIR, 'run folder for checkpoints and logs'),
    S('synthetic', False, 'random images, no dataset: benchmarks, smoke tests', action='store_true', resume=FIXED),
    S('num_classes', alexnet.NUM_CLASSES, 'classes for --synthetic', check=at_least(1, alexnet.MAX_CLASSES),
      resume=FIXED),
    S('val_size', cifar10_utils.VAL_SIZE, 'CIFAR-10 training images held out for validation', check=not_negative,
      resume=FIXED),
    S('md5', None, 'MD5 of your own CIFAR-10 archive, when it is not the official one', kind=str),
    # the model and its input
    S('input_size', alexnet.INPUT_SIZE, 'square crop size', flags=('-i', '--input-size'), resume=FIXED),
    S('resize_size', None, 'shorter side before cropping', kind=int, check=at_least(1, alexnet.MAX_RESIZE_SIZE),
      resume=FIXED, shown_default='input size x 256/227'),
    S('dropout', alexnet.DROPOUT_RATE, 'dropout rate of fc6 and fc7 (the paper\'s; 0 turns it off, e.g. for '
      'exact comparisons)', check=finite_and(fraction)),
    S('init', 'paper', 'weights from N(0, 0.01) as in the paper (paper), or he: N(0, 2/fan_in), which learns '
      'small datasets much sooner (a departure, see docs/departures.md)', choices=alexnet.INITS, resume=FIXED),
    S('model_path', None, 'start from another checkpoint\'s weights (layers of matching shape; e.g. the imported '
      'runs/bvlc_alexnet); its LRN constants, channel order, resize mode and mean are kept',
      flags=('-m', '--model_path', '--model-path'), kind=str),
    S('train_layers', None, 'fine-tuning: update only these layers, e.g. fc7,fc8; the others stay exactly as '
      'loaded', kind=str, check=is_train_layers, shown_default='all'),
    # the recipe (Section 5)
    S('batch_size', recipe.BATCH_SIZE, 'images per step', flags=('-b', '--batch-size'), check=at_least(1),
      resume=FIXED),
    S('epochs', recipe.EPOCHS, 'epochs', flags=('-e', '--epochs'), check=at_least(1)),
    S('lr', recipe.LEARNING_RATE, 'learning rate; on -resume, sets the current rate', check=finite_and(positive)),
    S('momentum', recipe.MOMENTUM, 'momentum', check=finite_and(not_negative)),
    S('weight_decay', recipe.WEIGHT_DECAY, 'weight decay on the weights', check=finite_and(not_negative)),
    S('lr_schedule', 'plateau', 'plateau: divide by 10 when validation top-1 stalls; step: at fixed epochs '
      '(--lr-steps); onecycle: a linear warm-up (--warmup-epochs) to --lr, then a linear decay to 0 at the last '
      'epoch (a departure, see docs/departures.md)', choices=('plateau', 'step', 'onecycle')),
    S('lr_steps', '', 'epochs at which a step schedule divides the rate by 10, e.g. 30,60,80', shown_default='none'),
    S('patience', 2, 'plateau: epochs without improvement before a drop', check=at_least(1)),
    S('min_improvement', 0.001, 'plateau: top-1 gain that counts', check=finite_and(not_negative)),
    S('max_drops', 3, 'plateau: most drops (as in the paper)', check=not_negative),
    S('warmup_epochs', 0.0, 'onecycle: epochs of linear warm-up', check=finite_and(not_negative)),
    S('label_smoothing', 0.0, 'share of each target spread over all classes (0: the paper\'s plain '
      'cross-entropy; a departure, see docs/departures.md)', check=finite_and(fraction)),
    S('ema', 0.0, 'decay of a moving average of the weights, kept beside them and used in their place by '
      'validation, best/ and every script that reads the run, e.g. 0.999 (0: off; a departure, see '
      'docs/departures.md)', check=finite_and(fraction), resume=FIXED),
    S('cutout', 0, 'side in pixels of a square set to the mean colour at a random place in each training crop, '
      'e.g. 32 at --input-size 99 (0: off, the paper\'s; a departure, see docs/departures.md)', check=not_negative),
    S('whiten_conv1', False, 'start conv1 as the whitening of the training images\' 11x11 patches: its 48 filters '
      'per tower the top principal directions, scaled to unit output, +/- in towers a/b (a departure, see '
      'docs/departures.md; best with --init he)', action='store_true', resume=FIXED),
    S('seed', 0, 'seed for data order, augmentation, dropout and init', check=not_negative, resume=FIXED),
    S('time_budget', None, 'plan the run to end inside this wall-clock time, e.g. 55m or 1.5h: the first epoch is '
      'measured, then the number of steps is fixed (kept by -resume) and one-cycle ends there; --epochs is then '
      'only the first guess', kind=float, parse=duration, resume=FIXED, shown_default='none'),
    S('max_steps', None, 'stop (and save) when the global step reaches N', kind=int, check=at_least(1),
      shown_default='none'),
    # where it runs
    S('devices', None, 'tower devices, e.g. /gpu:0,/gpu:1; two per replica: /gpu:0,/gpu:1,/gpu:2,/gpu:3 trains '
      '2 replicas', kind=str, shown_default='two GPUs, one GPU or the CPU'),
    S('replicas', None, 'copies of the two-tower model in this machine, each on its own devices; the batch is split '
      'over them and their gradients averaged', kind=int, check=at_least(1, MAX_REPLICAS), shown_default='1'),
    S('data_format', None, 'activation layout inside the network; checkpoints are the same either way', kind=str,
      parse=str.upper, choices=alexnet.DATA_FORMATS,
      shown_default='NCHW on GPUs, cuDNN\'s own; NHWC on CPUs, about 2x faster there'),
    S('precision', 'fp32', 'fp32; bf16: oneDNN mixed precision on CPUs with AMX/AVX-512; fp16: GPUs, with loss '
      'scaling; auto: fp16 on GPUs, bf16 where the CPU has bf16 instructions, else fp32 (the checkpoint records '
      'the one chosen)', choices=(*parallel.PRECISIONS, AUTO), resume=NO_FP16_SWITCH),
    # validation, checkpoints, logs
    S('validate', None, 'validate every epoch', flags=('-v', '--validate'), kind=bool,
      action=argparse.BooleanOptionalAction, shown_default='on when a validation set exists'),
    S('val_subset', 0, 'validate on this many held-out images, the same ones every epoch, and on all of them at '
      'the last epoch, which alone chooses best/ (0: all of them every epoch)', check=not_negative),
    S('save_minutes', 10.0, 'save the latest checkpoint every N minutes', check=finite_and(positive)),
    S('save_steps', 0, 'also save every N steps (0: off)', check=not_negative),
    S('keep', 3, 'latest checkpoints to keep', check=at_least(1)),
    S('save_features', False, 'also save conv1..conv5 weights each epoch', action='store_true'),
    S('histograms', False, 'weight histograms in TensorBoard each epoch', action='store_true'),
    S('log_steps', 20, 'TensorBoard training scalars every N steps', check=at_least(1)),
    # what the network expects of its input: no flag, inherited from --model_path (imported Caffe weights differ)
    S('lrn', None, flags=(), kind=list),
    S('lrn_across_towers', False, flags=()),
    S('channel_order', 'RGB', flags=()),
    S('resize_mode', 'shorter', flags=()),
    S('mean', None, flags=(), kind=list),
    # a cluster (cluster.py; flag names as in TensorFlow's benchmarks); not recorded in checkpoints
    S('job_name', None, 'this task\'s job: ps holds the variables, workers compute (worker 0 is the chief)',
      kind=str, choices=('ps', 'worker'), recorded=False),
    S('task_index', 0, 'this task\'s index in its job\'s host list', check=not_negative, recorded=False),
    S('ps_hosts', None, 'parameter servers, host:port,...', kind=str, recorded=False),
    S('worker_hosts', None, 'workers, host:port,... (the first is the chief)', kind=str, recorded=False),
    S('async_updates', False, 'each worker updates the variables on its own (default: synchronous steps)',
      flags=('--async',), action='store_true', recorded=False),
    S('wait_seconds', WAIT_SECONDS, 'how long a worker waits for the parameter servers and the chief',
      check=finite_and(positive), recorded=False),
    S('step_timeout', STEP_TIMEOUT, 'seconds a synchronous step may wait for the other workers; then the run saves and '
      'stops, naming the worker that does not answer', check=finite_and(positive), recorded=False),
]
BY_NAME = {s.name: s for s in SETTINGS}
DEFAULTS = {s.name: s.default for s in SETTINGS if s.recorded}     # what every checkpoint records ("args")

# --dataset demo (1,000 images of 32x32): the paper's settings would take most of an hour and stay at
# chance; these learn in minutes on a CPU (docs/results.md). Flags given still win.
DEMO = dict(input_size=alexnet.MIN_INPUT_SIZE, batch_size=32, epochs=30, lr=0.01, init='he',
            lr_schedule='onecycle', warmup_epochs=3)

# Named recipes: `train.py -scratch --preset NAME` is NAME's flags written out, then the flags given (which
# win). A checkpoint records the settings they make, so -resume needs no --preset.
PRESETS = {
    'demo': dict(dataset='demo', **DEMO),
    # CIFAR-10 in an hour on any CPU (docs/results.md): input 99 from the paper's 256:227 resize ratio (112),
    # one-cycle to 0.045 over a --time-budget plan, label smoothing, less dropout, a validation subset.
    'cifar10-hour': dict(dataset='cifar10', input_size=99, resize_size=112, init='he', lr=0.045,
                         lr_schedule='onecycle', warmup_epochs=0.5, epochs=12, label_smoothing=0.1, dropout=0.25,
                         val_subset=1000, precision=AUTO, time_budget=3600.0),
}


def preset_flags(name):
    """The flags a preset stands for, as one would type them (--help and the docs show them)."""
    words = []
    for key, value in PRESETS[name].items():
        s = BY_NAME[key]
        shown = f'{value / 60:g}m' if key == 'time_budget' else f'{value:g}' if isinstance(value, float) else value
        words += [s.flag] if value is True else [s.flag, str(shown)]
    return ' '.join(words)


def presets_help():
    return 'a named recipe, as if its flags were given first (flags given still win): ' + \
        '; '.join(f'{name}: {preset_flags(name)}' for name in PRESETS)


def with_preset(name, given_now):
    """The settings given, over the preset's (none: as given)."""
    return {**PRESETS[name], **given_now} if name else given_now


def _help(s):
    """The setting's help with its default (and the demo's, where it differs), as --help shows them."""
    shown = s.shown_default if s.shown_default is not None else s.default
    if s.action == 'store_true' or shown is None:
        return s.help
    demo = f'; --dataset demo: {DEMO[s.name]}' if DEMO.get(s.name, s.default) != s.default else ''
    return f'{s.help} (default {shown}{demo})'


def add_flags(parser):
    """Every setting's flag, with argument_default None: a flag not given is None, so that -resume can tell
    what was given from the run's recorded settings."""
    group = parser
    for s in SETTINGS:
        if s.flags == ():
            continue
        if s.name == 'job_name':     # the rest are the cluster's
            group = parser.add_argument_group('cluster (TensorFlow gRPC runtime; flag names as in TensorFlow\'s '
                                              'benchmarks; without them, TF_CONFIG\'s cluster and task: '
                                              'docs/scaling.md)')
        kwargs = dict(dest=s.name, help=_help(s), default=None)
        if s.action:
            kwargs['action'] = s.action
        else:
            kwargs['type'] = s.parse or (s.type if s.type in (int, float) else None)
            if s.choices:
                kwargs['choices'] = s.choices
        group.add_argument(*(s.flags or (f'--{s.name.replace("_", "-")}',)), **kwargs)


def given(args):
    """The settings given on the command line (argparse's Namespace, flags not given are None)."""
    return {s.name: getattr(args, s.name) for s in SETTINGS if getattr(args, s.name, None) is not None}


def recorded_problem(args):
    """What is wrong with the settings a checkpoint records (its JSON's "args", a hand edit usually), or
    None: each must be of its setting's type (or None where the default is None)."""
    for key, value in args.items():
        s = BY_NAME.get(key)
        if s is None or not s.recorded or value is None and s.default is None:
            continue
        kind = s.type
        kinds = (int, float) if kind is float else (kind,)
        wrong = isinstance(value, bool) != (kind is bool) or not isinstance(value, kinds) or kind is list and \
            not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        if wrong:
            what = {float: 'a number', list: 'a list of numbers', str: 'a string', int: 'a whole number',
                    bool: 'true or false'}[kind]
            return f'"{key}" is {json.dumps(value)[:60]}, not {what}'
    return None


def resolve_auto(given_now, recorded=None):
    """--precision auto becomes the precision this machine runs fastest, on the devices the run will use
    (given now, else the run's recorded ones), before -resume's rules see it."""
    if given_now.get('precision') == AUTO:
        either = {**(recorded or {}), **given_now}
        devices = parallel.parse_devices(either.get('devices'), either.get('replicas'))
        given_now['precision'] = parallel.auto_precision(devices)
    return given_now


def resume_problem(given_now, recorded):
    """What -resume may not change of the run's recorded settings (one phrase), or None."""
    for s in SETTINGS:
        new, old = given_now.get(s.name), recorded.get(s.name)
        if s.name not in given_now:
            continue
        if s.resume == FIXED and new != old:
            return f'{s.flag} cannot change on -resume (the run used {old}); start a new run with -scratch instead'
        if s.resume == NO_FP16_SWITCH and 'fp16' in (new, old) and new != old:
            return (f'{s.flag} cannot change to or from fp16 on -resume (the run used {old}; fp16 adds the loss '
                    f'scale to the checkpoint); start a new run with -scratch instead')
    return None


def settled(given_now, recorded=None):
    """The run's settings: the table's defaults, the demo's overlay, the recorded ones (-resume), then those
    given (argparse.Namespace)."""
    values = {s.name: s.default for s in SETTINGS}
    if given_now.get('dataset') == 'demo':
        values.update(DEMO)
    values.update({k: v for k, v in (recorded or {}).items() if k in BY_NAME})
    values.update(given_now)
    return argparse.Namespace(**values)


def of_run(meta):
    """The settings of the run that wrote a checkpoint's JSON: those it recorded ("args"), the table's defaults
    for any it did not (imported weights record none)."""
    recorded = meta.get('args') if isinstance(meta.get('args'), dict) else {}
    return settled({k: v for k, v in recorded.items() if k in DEFAULTS})


def run_dataset(meta, data_dir=None, name=None):
    """The Dataset a checkpoint was trained on, as its run split it (its validation size, seed and MD5): from
    data_dir, else where the run read it; `name` in place of the run's dataset."""
    a = of_run(meta)
    return data.load_dataset(name or meta['dataset'], data_dir or meta.get('data_dir'), val_size=a.val_size,
                             seed=a.seed, md5=a.md5)


def check(a):
    """A one-line DataError for the first value that fails its setting's check, or for settings that do not
    fit together; fills the defaults derived from others (devices, replicas, resize size)."""
    for s in SETTINGS:
        value = getattr(a, s.name)
        problem = value is not None and s.check and s.check(value)
        if problem:
            raise DataError(f'{s.flag} {problem}')
    checkpoints.check_train_dir(a.train_dir)
    if a.data_dir and not os.path.exists(a.data_dir):
        raise DataError(f'--data-dir {a.data_dir} does not exist')
    if a.data_dir and os.path.realpath(a.data_dir) == os.path.realpath(a.train_dir):
        raise DataError(f'--train-dir {a.train_dir} is the data folder (--data-dir): give the run a folder of its '
                        f'own, e.g. runs/NAME')
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
    if a.ema and a.job_name:
        raise DataError('--ema averages the weights of a run on one machine: leave it out of a cluster run '
                        '(--job-name)')
    if a.whiten_conv1 and a.synthetic:
        raise DataError('--whiten-conv1 measures the training images: leave it out of a --synthetic run')
    if a.cutout and a.synthetic:
        raise DataError('--cutout hides part of each training image: leave it out of a --synthetic run '
                        '(or give --cutout 0)')
    if a.time_budget and a.job_name:
        raise DataError('--time-budget plans a run on one machine: leave it out of a cluster run (--job-name)')
    if a.resize_size is None:
        a.resize_size = preprocessing.resize_size_for(a.input_size)   # the paper's 256 for 227
    if a.cutout >= a.input_size:
        raise DataError(f'--cutout {a.cutout} must be smaller than the crop (--input-size {a.input_size})')
    if a.resize_size < a.input_size:
        raise DataError(f'--resize-size {a.resize_size} is smaller than the crop {a.input_size}')
    return a
