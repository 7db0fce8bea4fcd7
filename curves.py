"""Training curves from a run's TensorBoard event files: loss and top-1, train and validation.

    python curves.py runs/cifar10 -o docs/cifar10_curves.png
    python curves.py runs/demo --title "demo dataset, 2-core CPU"

Reads the scalars train.py writes (train/epoch_loss, train/epoch_top1 at the end of
each epoch, val/loss, val/top1 (val_subset/... with --val-subset), and train/loss every
--log-steps steps) and draws
them against epochs. A resumed run has several event files: a step logged twice
(before a crash and again after the resume) keeps its last value.
"""
import glob
import os
import sys

import quiet  # noqa: F401  (first: keeps TensorFlow's start-up lines out of the output)
import tensorflow as tf

import checkpoints
import cli
from errors import DataError
from files import check_output_file, check_replaceable

EPOCH_TAGS = ('train/epoch_loss', 'train/epoch_top1', 'val/loss', 'val/top1',
              'val_subset/loss', 'val_subset/top1')        # the last two: train.py --val-subset's epochs
STEP_TAG = 'train/loss'
IMAGE_KINDS = {'.png': ('png',), '.jpg': ('jpeg',), '.jpeg': ('jpeg',), '.pdf': ('pdf',),   # -o: what it may replace
               '.svg': ('svg',)}


def read_scalars(train_dir):
    """{tag: {step: value}} from every event file of a run folder, oldest file first."""
    files = sorted(glob.glob(os.path.join(train_dir, 'events.out.tfevents.*')), key=os.path.getmtime)
    if not files:
        raise DataError(f'no TensorBoard event files in {train_dir}: point at a run folder '
                        f'written by train.py (its --train-dir)')
    scalars = {}
    for path in files:
        try:
            for event in tf.compat.v1.train.summary_iterator(path):
                for value in event.summary.value:
                    if value.HasField('simple_value'):
                        scalars.setdefault(value.tag, {})[event.step] = value.simple_value
        except tf.errors.DataLossError:   # a file cut short by a crash: keep what was read
            print(f'warning: {path} ends early (the run was killed while writing); using what it holds',
                  file=sys.stderr)
    return scalars


def steps_per_epoch(train_dir):
    """From the newest checkpoint's JSON (its weights are not needed here)."""
    for prefix in checkpoints.list_checkpoints(train_dir):
        try:
            return checkpoints.read_meta(prefix)['steps_per_epoch']
        except (OSError, ValueError, KeyError, TypeError):
            continue
    raise DataError(f'no checkpoint in {train_dir} to tell the steps per epoch: give --steps-per-epoch')


def curves(scalars, per_epoch):
    """{tag: ([epochs], [values])} sorted by step, for the tags that are present."""
    out = {}
    for tag in EPOCH_TAGS + (STEP_TAG,):
        points = sorted(scalars.get(tag, {}).items())
        if points:
            out[tag] = ([step / per_epoch for step, _ in points], [v for _, v in points])
    if not any(tag in out for tag in EPOCH_TAGS):
        raise DataError('the event files hold no epoch results yet: let the run finish an epoch')
    return out


def plot(lines, path, title):
    import matplotlib
    matplotlib.use('Agg')              # files only, no display needed
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    if STEP_TAG in lines:
        left.plot(*lines[STEP_TAG], color='tab:blue', alpha=0.25, linewidth=0.8, label='train (steps)')
    styles = {'train/epoch_loss': (left, 'tab:blue', 'train'), 'val/loss': (left, 'tab:orange', 'validation'),
              'train/epoch_top1': (right, 'tab:blue', 'train'), 'val/top1': (right, 'tab:orange', 'validation'),
              'val_subset/loss': (left, 'tab:green', 'validation subset'),
              'val_subset/top1': (right, 'tab:green', 'validation subset')}
    for tag, (axis, color, label) in styles.items():
        if tag in lines:
            epochs, values = lines[tag]
            if tag.endswith('top1'):
                values = [100 * v for v in values]
            axis.plot(epochs, values, 'o-', color=color, markersize=3, label=label)
    left.set(xlabel='epoch', ylabel='cross-entropy loss', title='loss')
    right.set(xlabel='epoch', ylabel='top-1 accuracy (%)', title='top-1')
    if 'val/top1' in lines:
        best = max(lines['val/top1'][1])
        right.axhline(100 * best, color='tab:orange', linestyle=':', linewidth=0.8)
        right.annotate(f'best validation {100 * best:.1f}%', (0.02, 0.95), xycoords='axes fraction', va='top')
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(loc='best')
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parser():
    p = cli.Parser(description='Plot loss and top-1 curves of a train.py run.')
    p.add_argument('train_dir', help='the run folder (train.py --train-dir)')
    p.add_argument('-o', '--output', help='image to write (default TRAIN_DIR/curves.png): .png, or another '
                                          'format matplotlib writes (.pdf, .svg, .jpg)')
    p.add_argument('--title', help='figure title (default: the run folder)')
    p.add_argument('--steps-per-epoch', type=cli.whole(1), help='default: read from the run\'s checkpoint')
    return p


def check_output(output, train_dir):
    """Before reading the logs: the picture can be written (its folder is made when missing, as for docs/), and
    replaces no log, no checkpoint, no file of another kind."""
    extension = os.path.splitext(output)[1].lower()
    if extension not in IMAGE_KINDS:
        raise DataError(f'-o {output}: give a picture\'s name ({", ".join(IMAGE_KINDS)})')
    inputs = glob.glob(os.path.join(glob.escape(train_dir), '*'))
    if os.path.isdir(os.path.dirname(os.path.abspath(output))):
        check_output_file(output, '-o', IMAGE_KINDS[extension], inputs)
    else:
        check_replaceable(output, '-o', IMAGE_KINDS[extension], inputs)


def make_folder(output):
    """The output's folder, made when missing (once the logs have been read)."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    except OSError as e:
        raise DataError(f'-o {output}: cannot make its folder ({e.strerror or e}): give a path in a folder') from None


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        if not os.path.isdir(args.train_dir):
            raise DataError(f'{args.train_dir} is not a folder: give a run folder (train.py --train-dir)')
        output = args.output or os.path.join(args.train_dir, 'curves.png')
        check_output(output, args.train_dir)
        per_epoch = args.steps_per_epoch or steps_per_epoch(args.train_dir)
        lines = curves(read_scalars(args.train_dir), per_epoch)
        make_folder(output)
    except DataError as e:
        return cli.fail(e)
    plot(lines, output, args.title or args.train_dir)
    for tag in EPOCH_TAGS:
        if tag in lines:
            epochs, values = lines[tag]
            print(f'{tag}: epoch {epochs[-1]:g} {values[-1]:.4f}' + (f' (best {max(values):.4f})' if 'top1' in tag else ''))
    print(f'wrote {output}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
