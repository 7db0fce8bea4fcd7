"""What the command-line scripts share: one-line flag errors and the flags of every evaluating script.

train.py, test.py, classify.py, export.py and visualize.py all find a checkpoint with
--train-dir / --checkpoint (checkpoints.for_use), test.py and classify.py take the
same crop flags (Section 4.1's testing), and each exits with one `error:` line for a
user's mistake (a DataError), never a traceback. A number flag's range is its argparse
type (whole, number), refused at parse time; the paths a command reads are checked
before they are opened (input_file: a FIFO would block), and an output
never replaces an input or a file of another kind (files.check_output_file).
tests/test_misuse.py tries every command's flags with these mistakes.
"""
import argparse
import glob
import math
import os
import stat
import sys
import warnings

import checkpoints
import files
import parallel
from errors import DataError

RANDOM_CROPS = 5          # test.py and classify.py: 5 random crops with reflections, as the original implementation
MAX_CROPS = 1000          # --crops: each image's crops go through the network together, one batch
TOP_K = 5                 # the paper reports top-1 and top-5 error rates
MAX_WHOLE = 2 ** 31 - 1   # the largest count or seed any flag takes: TensorFlow's sizes and seeds are 32-bit


class Parser(argparse.ArgumentParser):
    """A bad flag value gets one line (no usage dump), naming --help; --verbose for quiet.py."""
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument('--verbose', action='store_true',
                          help='show TensorFlow\'s start-up messages (also ALEXNET_VERBOSE=1)')

    def error(self, message):
        self.exit(2, f'error: {message} (see --help)\n')


# --- argparse types: a number out of its range is refused at parse time, in one line, before any work -------
def whole(low=1, high=MAX_WHOLE):
    """argparse's type for a whole number from low to high."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r} is not a whole number: give one from {low} to {high}') \
                from None
        if value < low:
            raise argparse.ArgumentTypeError(f'must be at least {low}, got {value}')
        if value > high:
            raise argparse.ArgumentTypeError(f'must be at most {high}, got {value}')
        return value
    return parse


def number(low, high, low_included=True):
    """argparse's type for a finite number from low (or above low) to high."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        inside = low <= value <= high if low_included else low < value <= high
        if not inside:
            span = f'from {low:g}' if low_included else f'above {low:g}'
            raise argparse.ArgumentTypeError(f'must be a number {span} up to {high:g}, got {text}')
        return value
    return parse


def md5(text):
    """argparse's type for an MD5 digest: 32 hexadecimal digits."""
    if len(text) != 32 or any(c not in '0123456789abcdefABCDEF' for c in text):
        raise argparse.ArgumentTypeError(f'{text!r} is not an MD5 digest: give its 32 hexadecimal digits '
                                         f'(md5sum FILE prints them)')
    return text.lower()


# --- paths a command reads: checked before they are opened (a FIFO would block, a loop would never resolve) ---
def input_file(path, flag='', what='a file'):
    """A one-line DataError unless path is a regular file with something in it (flag: its flag, '' for an
    argument; what: the words for the file expected)."""
    kind, name = _kind(path, flag, what), _named(path, flag)
    if kind != 'a file':
        raise DataError(f'{name} is {kind}, not a file: give {what}')
    if os.path.getsize(path) == 0:
        raise DataError(f'{name} is an empty file: give {what}')
    return path


def _named(path, flag):
    return f'{flag} {path}' if flag else path


def _kind(path, flag, what):
    """'a file' (a regular one), 'a folder', 'a FIFO', 'a socket' or 'a device': what is at path; a DataError
    when nothing is there."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:        # missing, a symbolic link that loops or points nowhere, no permission
        raise DataError(f'{_named(path, flag)}: {(e.strerror or str(e)).lower()}: give {what}') from None
    if stat.S_ISREG(mode):
        return 'a file'
    if stat.S_ISDIR(mode):
        return 'a folder'
    return 'a FIFO' if stat.S_ISFIFO(mode) else 'a socket' if stat.S_ISSOCK(mode) else 'a device'


def checkpoint_files(prefix):
    """The files of a checkpoint (.index, .data-*, .json): inputs no output may replace."""
    return glob.glob(glob.escape(prefix) + '.*')


def add_checkpoint_flags(p):
    p.add_argument('--train-dir', help=f'run folder (default {checkpoints.DEFAULT_TRAIN_DIR}): its best/ '
                                       'checkpoint, else its latest')
    p.add_argument('--checkpoint', help='a checkpoint prefix (runs/alexnet/model.ckpt-1000) or folder')


def add_crop_flags(p):
    crops = p.add_mutually_exclusive_group()
    crops.add_argument('--crops', type=whole(1, MAX_CROPS), default=RANDOM_CROPS,
                       help=f'average K random crops with random reflections (default {RANDOM_CROPS})')
    crops.add_argument('--ten-crop', action='store_true',
                       help='the paper\'s 10 crops: four corners and centre, and their reflections')
    crops.add_argument('--center', action='store_true', help='one centre crop')


def add_top_k_flag(p, what='classes in the top-k'):
    p.add_argument('-k', '--top-k', type=whole(1), default=TOP_K, help=f'{what} (default {TOP_K})')


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
