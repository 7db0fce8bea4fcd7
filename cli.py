"""What the command-line scripts share: one-line flag errors and the flags of every evaluating script.

train.py, test.py, classify.py, export.py and visualize.py all find a checkpoint with
--train-dir / --checkpoint (checkpoints.for_use), test.py and classify.py take the
same crop flags (Section 4.1's testing), and each exits with one `error:` line for a
user's mistake (a DataError), never a traceback.
"""
import argparse
import sys
import warnings

import checkpoints
import parallel
from datasets import DataError

RANDOM_CROPS = 5          # test.py and classify.py: 5 random crops with reflections, as the original implementation
TOP_K = 5                 # the paper reports top-1 and top-5 error rates


class Parser(argparse.ArgumentParser):
    """A bad flag value gets one line (no usage dump), naming --help; --verbose for quiet.py."""
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument('--verbose', action='store_true',
                          help='show TensorFlow\'s start-up messages (also ALEXNET_VERBOSE=1)')

    def error(self, message):
        self.exit(2, f'error: {message} (see --help)\n')


def add_checkpoint_flags(p):
    p.add_argument('--train-dir', help=f'run folder (default {checkpoints.DEFAULT_TRAIN_DIR}): its best/ '
                                       'checkpoint, else its latest')
    p.add_argument('--checkpoint', help='a checkpoint prefix (runs/alexnet/model.ckpt-1000) or folder')


def add_crop_flags(p):
    crops = p.add_mutually_exclusive_group()
    crops.add_argument('--crops', type=int, default=RANDOM_CROPS,
                       help=f'average K random crops with random reflections (default {RANDOM_CROPS})')
    crops.add_argument('--ten-crop', action='store_true',
                       help='the paper\'s 10 crops: four corners and centre, and their reflections')
    crops.add_argument('--center', action='store_true', help='one centre crop')


def add_top_k_flag(p, what='classes in the top-k'):
    p.add_argument('-k', '--top-k', type=int, default=TOP_K, help=f'{what} (default {TOP_K})')


def add_devices_flag(p):
    p.add_argument('--devices', help='tower devices, e.g. /gpu:0,/gpu:1 (default: two GPUs, one GPU or the CPU)')


def crop_mode(a):
    """(preprocessing mode, number of crops, words for the final line) of the crop flags."""
    if a.ten_crop:
        return 'ten', 10, '10 crops'
    if a.center:
        return 'center', 1, 'centre crop'
    if a.crops < 1:
        raise DataError(f'--crops must be at least 1, got {a.crops}')
    return 'random', a.crops, f'{a.crops} random crop{"s" if a.crops > 1 else ""}'


def devices(text):
    """The two tower devices of --devices, or a DataError."""
    try:
        return parallel.tower_devices(text)
    except ValueError as e:
        raise DataError(str(e)) from None


def fail(error, code=2):
    """Print a user's mistake as one line; the exit code for main()."""
    print(f'error: {error}', file=sys.stderr, flush=True)
    return code


def show_warning(message, *args, **kwargs):
    """Warnings (a partial dataset, a missing split, a skipped image) as one `warning:` line each."""
    print(f'warning: {message}', file=sys.stderr, flush=True)


def format_warning(message, *args, **kwargs):
    return f'warning: {message}\n'


def one_line_warnings():
    """The commands' warnings as one `warning:` line each, not Python's two-line format (the format only:
    whoever records warnings, as pytest does, still gets them)."""
    warnings.formatwarning = format_warning
