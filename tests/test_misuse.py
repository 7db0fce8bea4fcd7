"""Every command's mistakes in one table (issue 42), generated from each command's own parser.

Every command module exposes `parser()`; the cases come from its actions:

- a flag with choices (and a command with sub-commands): a misspelt value;
- a number flag (its type turns '2' into a number): 0, -1, nan and a huge value, unless ACCEPTED says
  why that value is a valid one;
- a flag or argument that names a path, or takes free text, as PATHS declares it: an input file, folder or
  either, a run folder, a list of images, an output file or folder, or text (with a misspelt value where
  one can be refused); each kind has its mistakes (MISTAKES).

A flag in none of these fails test_every_flag_is_in_the_table, which says where to declare it, and a
command script missing from COMMANDS fails test_every_command_is_in_the_table: a new flag or command is
covered the day it lands.

Each case runs the command in this process and asserts: the exit status (2, or 1 where PATHS says a
failure is not a usage mistake), exactly one `error:` line naming the flag or the path, no traceback,
no hang (a FIFO given as input must be refused before it is opened; an alarm fails a case that waits),
and no change anywhere in the temporary tree the case runs in (every path; every file's bytes, files
over BIG_FILE bytes by size and modification time). A flag's value must be refused before the work: a
case that builds a TensorFlow graph fails, except where PATHS allows it (a list of images, whose
unreadable ones are reported among the others). Numbers and choices are refused at parse time, so those
cases take milliseconds, and they name the trained run before it is made: a mistaken value must be refused
before the run is read. The path and text cases of the commands that read a run use the trained run
(`trained`: helpers.make_run, once a module) and are in the slow tier.
"""
import argparse
import contextlib
import hashlib
import io
import os
import shutil
import signal
import stat
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
import tensorflow as tf

import alexnet
import bench
import checkpoints
import cifar10_utils
import classify
import curves
import export
import features
import imagenet_utils
import import_weights
import test as test_script
import train
import visualize
from conftest import REPO
from helpers import make_eval_tree, make_run

HUGE = {int: '1000000000000', float: '1e30'}
NUMBER_MISTAKES = ('0', '-1', 'nan')
BIG_FILE = 1 << 20          # bytes: larger files are compared by size and modification time
ALARM_SECONDS = 120         # a case still running then is a hang (a FIFO opened, a loop)
NOT_UTF8 = b'caf\xe9'       # a Latin-1 name: not UTF-8


@dataclass(frozen=True)
class Takes:
    """What a flag (or argument) takes. kind: in-file, in-folder, in-either (a file or a folder), run (a run
    folder), images (image files or folders of them), out-file, out-folder or text. ext: the file name's
    ending; onto: the input an output is pointed at (a key of inputs_of); bad: a misspelt text; status: the
    exit statuses of its path mistakes; skip: MISTAKES that are none for this flag (the reason beside it)."""
    kind: str
    ext: str = ''
    onto: str = None
    bad: str = None
    status: tuple = (2,)
    skip: tuple = ()


IN_FOLDER, IN_EITHER, RUN, TEXT = Takes('in-folder'), Takes('in-either'), Takes('run'), Takes('text')
CHECKPOINT = IN_EITHER      # a checkpoint prefix or a folder of checkpoints
IMAGES = Takes('images', '.png', status=(1, 2))   # an unreadable image among others is not a usage mistake
DEVICES = Takes('text', bad='gpu0')

MISTAKES = {
    'in-file': ('missing', 'a folder', 'an empty file', 'a name not UTF-8', 'a symbolic link loop', 'a FIFO'),
    'in-folder': ('missing', 'a file', 'an empty folder', 'a name not UTF-8', 'a symbolic link loop', 'a FIFO'),
    'in-either': ('missing', 'an empty file', 'an empty folder', 'a name not UTF-8', 'a symbolic link loop',
                  'a FIFO'),
    'run': ('missing', 'a file', 'an empty folder', 'a name not UTF-8', 'a symbolic link loop', 'a FIFO'),
    'images': ('missing', 'an empty file', 'an empty folder', 'a name not UTF-8', 'a symbolic link loop', 'a FIFO',
               'a folder holding a name not UTF-8', 'a folder holding a symbolic link loop'),
    'out-file': ('in a missing folder', 'onto a folder', 'onto an input', 'onto a file of another kind'),
    'out-folder': ('onto a file', 'onto an input'),
    'text': (),
}

# What each command's paths and texts are (flags that take a value but neither choices nor a number).
PATHS = {
    'train': {'--data-dir': IN_FOLDER, '--train-dir': Takes('out-folder', onto='data'),
              '--model_path': CHECKPOINT, '--md5': TEXT, '--train-layers': Takes('text', bad='fc9'),
              '--lr-steps': TEXT, '--devices': DEVICES, '--ps-hosts': TEXT, '--worker-hosts': TEXT},
    'test': {'--train-dir': RUN, '--checkpoint': CHECKPOINT, '--data-dir': IN_FOLDER, '--devices': DEVICES,
             '--json': Takes('out-file', '.json', onto='checkpoint json')},
    'classify': {'images': IMAGES, '--train-dir': RUN, '--checkpoint': CHECKPOINT, '--devices': DEVICES,
                 '--csv': Takes('out-file', '.csv', onto='image'), '--plot': Takes('out-file', '.png', onto='image')},
    'features': {'images': IMAGES, '--train-dir': RUN, '--checkpoint': CHECKPOINT, '--devices': DEVICES,
                 '--out': Takes('out-file', '.npz', onto='image')},
    'visualize kernels': {'--train-dir': RUN, '--checkpoint': CHECKPOINT,
                          '--output': Takes('out-file', '.png', onto='checkpoint index')},
    'visualize neighbours': {'images': Takes('in-file', '.png'), '--train-dir': RUN, '--checkpoint': CHECKPOINT,
                             '--gallery': Takes('in-folder', bad='trian'), '--data-dir': IN_FOLDER,
                             '--cache': Takes('out-folder'),
                             '--output': Takes('out-file', '.png', onto='gallery image')},
    'export': {'--out': Takes('out-folder', onto='run'), '--train-dir': RUN, '--checkpoint': CHECKPOINT,
               '--tflite': Takes('out-file', '.tflite', onto='checkpoint index')},
    'import_weights': {'weights': Takes('in-file', '.caffemodel'), '--train-dir': Takes('out-folder'),
                       '--cache-dir': Takes('out-folder', skip=('onto a file',))},   # read by a download only
    'curves': {'train_dir': RUN, '--title': TEXT,
               '--output': Takes('out-file', '.png', onto='events', skip=('in a missing folder',))},  # made, as docs/
    'bench': {'--data-dir': IN_FOLDER, '--devices': DEVICES},
    'alexnet': {},
    'imagenet_utils': {'--data-dir': IN_FOLDER, '--prepare': Takes('out-folder', onto='imagenet')},
    # --data-dir: an empty or missing folder is where the archive is downloaded to
    'cifar10_utils': {'--data-dir': Takes('in-either', skip=('missing', 'an empty folder')),
                      '--md5': Takes('text', bad='c58f30108f718f92'), '--url': TEXT},
}

# Number values that are valid, and why (every other 0, -1, nan and huge value must be refused).
SEED = {'0': 'the default seed'}
ACCEPTED = {
    ('train', '--seed'): SEED, ('test', '--seed'): SEED, ('classify', '--seed'): SEED,
    ('visualize neighbours', '--seed'): SEED, ('cifar10_utils', '--seed'): SEED,
    ('train', '--val-size'): {'0': 'no validation images held out'},
    ('cifar10_utils', '--val-size'): {'0': 'no validation images held out'},
    ('train', '--dropout'): {'0': 'dropout off'}, ('train', '--label-smoothing'): {'0': 'the paper\'s plain loss'},
    ('train', '--ema'): {'0': 'no average'}, ('train', '--cutout'): {'0': 'no cutout, the paper\'s'},
    ('train', '--momentum'): {'0': 'plain SGD'}, ('train', '--weight-decay'): {'0': 'no decay'},
    ('train', '--min-improvement'): {'0': 'any gain counts'}, ('train', '--max-drops'): {'0': 'the rate never drops'},
    ('train', '--warmup-epochs'): {'0': 'no warm-up'}, ('train', '--val-subset'): {'0': 'all held-out images'},
    ('train', '--save-steps'): {'0': 'no saves by steps'}, ('train', '--task-index'): {'0': 'the first task'},
    ('bench', '--warmup'): {'0': 'no untimed steps'},
    ('visualize neighbours', '--class-share'): {'0': 'no class share printed'},
    ('imagenet_utils', '--speed-seconds'): {'0': 'no speed measured'},
}

COMMANDS = {     # name -> (module, the arguments before the flags)
    'train': (train, []), 'test': (test_script, []), 'classify': (classify, []), 'features': (features, []),
    'visualize kernels': (visualize, ['kernels']), 'visualize neighbours': (visualize, ['neighbours']),
    'export': (export, []), 'import_weights': (import_weights, []), 'curves': (curves, []), 'bench': (bench, []),
    'alexnet': (alexnet, []), 'imagenet_utils': (imagenet_utils, []), 'cifar10_utils': (cifar10_utils, []),
}
READS_A_RUN = {'test', 'classify', 'features', 'visualize kernels', 'visualize neighbours', 'export', 'curves'}


def base_argv(ws):
    """Each command's valid arguments in the workspace, {flag or argument: value}: a case changes one."""
    run, image = ws / 'trained' / 'run', ws / 'photo.png'
    return {
        'train': {'-scratch': True, '--dataset': 'folder', '--data-dir': ws / 'data', '--train-dir': ws / 'new_run',
                  '--input-size': 67, '--batch-size': 16, '--max-steps': 1, '--no-validate': True},
        'test': {'--train-dir': run},
        'classify': {'--train-dir': run, 'images': image},
        'features': {'--train-dir': run, 'images': image, '--out': ws / 'features.npz'},
        'visualize kernels': {'--train-dir': run, '--output': ws / 'conv1.png'},
        'visualize neighbours': {'--train-dir': run, '--gallery': 'train', '--count': 1,
                                 '--output': ws / 'neighbours.png', '--cache': ws / 'cache'},
        'export': {'--train-dir': run, '--out': ws / 'export'},
        'import_weights': {'weights': ws / 'bvlc_alexnet.npy', '--train-dir': ws / 'imported',
                           '--cache-dir': ws / 'downloads'},
        'curves': {'train_dir': run, '--output': ws / 'curves.png'},
        'bench': {'--data-dir': ws / 'data' / 'test', '--input-size': 67, '--batch-size': 2, '--steps': 1,
                  '--warmup': 0, '--matmul-size': 8},
        'alexnet': {},
        'imagenet_utils': {'--data-dir': REPO / 'tests' / 'data' / 'imagenet', '--speed-seconds': 0},
        'cifar10_utils': {'--data-dir': ws / 'cifar10', '--url': 'http://127.0.0.1:9/cifar-10-python.tar.gz'},
    }


# ---------------------------------------------------------------- the table, from the parsers

def actions(command):
    """The actions of a command's parser (a sub-command's own, for `visualize kernels`)."""
    module, words = COMMANDS[command]
    p = module.parser()
    for word in words:
        p = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices[word]
    return [a for a in p._actions if a.nargs != 0 and not isinstance(a, argparse._SubParsersAction)]


def name_of(action):
    """A flag by its first long name (--data-dir), an argument by its name (images)."""
    return next((s for s in action.option_strings if s.startswith('--')), None) or \
        (action.option_strings[0] if action.option_strings else action.dest)


def number_type(action):
    """int or float when the flag takes a number, else None."""
    for text in ('2', '100', '1000'):
        try:
            value = action.type(text) if action.type else text
        except (argparse.ArgumentTypeError, TypeError, ValueError):
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return type(value)
    return None


def misspelt(word):
    return word[:-1] + ('y' if word[-1] in 'xX' else 'x')


@dataclass(frozen=True)
class Case:
    command: str
    flag: str
    value: str = None          # a flag value given as it is
    mistake: str = None        # a path mistake (MISTAKES)
    spec: Takes = None

    @property
    def id(self):
        return f'{self.command} {self.flag} {self.mistake or self.value}'

    @property
    def slow(self):
        """A path or a text is checked against the trained run; numbers and choices are refused by the parser."""
        return self.spec is not None and (self.command in READS_A_RUN or self.spec.kind == 'images')


def cases_of(command):
    out = []
    for action in actions(command):
        flag = name_of(action)
        spec = PATHS[command].get(flag)
        if action.choices is not None:
            out.append(Case(command, flag, misspelt(list(action.choices)[0])))
        elif number_type(action):
            accepted = ACCEPTED.get((command, flag), {})
            values = NUMBER_MISTAKES + (HUGE[number_type(action)],)
            out += [Case(command, flag, v) for v in values if v not in accepted]
        elif spec is not None:
            out += [Case(command, flag, mistake=m, spec=spec) for m in MISTAKES[spec.kind]
                    if m not in spec.skip and (m != 'onto an input' or spec.onto)]
            if spec.bad:
                out.append(Case(command, flag, spec.bad, spec=spec))
    return out


def every_case():
    top = [Case('visualize', 'command', misspelt('kernels'))]
    return top + [case for command in COMMANDS for case in cases_of(command)]


def params():
    return [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.slow else []) for c in every_case()]


def test_every_flag_is_in_the_table():
    """A flag that takes a value is a choice, a number or declared in PATHS; nothing declared is stale."""
    for command in COMMANDS:
        flags = {name_of(a): a for a in actions(command)}
        unknown = [f for f, a in flags.items() if a.choices is None and not number_type(a) and f not in PATHS[command]]
        assert not unknown, f'declare {unknown} of {command} in PATHS of tests/test_misuse.py (its kind: path or text)'
        stale = set(PATHS[command]) - set(flags) | {f for c, f in ACCEPTED if c == command} - set(flags)
        assert not stale, f'{command} has no {stale} any more: remove it from tests/test_misuse.py'


def test_every_command_is_in_the_table():
    scripts = {p.stem for p in REPO.glob('*.py') if "if __name__ == '__main__':" in p.read_text()}
    assert scripts == {module.__name__ for module, _ in COMMANDS.values()}


# ---------------------------------------------------------------- the workspace and one case's run

@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    """A folder with a small dataset, a photo, a weights file, a CIFAR-10 download folder (no network: the
    cases download from a closed port); the trained run is added by `trained`, for the cases that need it."""
    ws = tmp_path_factory.mktemp('misuse')
    make_eval_tree(ws / 'data')
    (ws / 'photo.png').write_bytes((ws / 'data' / 'test' / 'class0' / '0.png').read_bytes())
    (ws / 'bvlc_alexnet.npy').write_bytes(b'\x93NUMPY not really')
    (ws / 'cifar10').mkdir()
    return ws


@pytest.fixture(scope='module')
def trained(workspace):
    """The shared small run (helpers.make_run), in the workspace."""
    make_run(workspace / 'trained')
    return workspace


def inputs_of(ws):
    """The files a command reads that an output can be pointed at (PATHS' onto)."""
    run = ws / 'trained' / 'run'
    prefix = checkpoints.for_use(str(run))[0] if run.exists() else str(run / 'model.ckpt-1')
    events = sorted(run.glob('events.out.tfevents.*'))
    return {'image': ws / 'photo.png', 'data': ws / 'data', 'run': run, 'checkpoint json': prefix + '.json',
            'checkpoint index': prefix + '.index', 'events': events[0] if events else run / 'events',
            'gallery image': run_data(ws) / 'train' / 'class0' / '0.png',
            'imagenet': REPO / 'tests' / 'data' / 'imagenet'}


def run_data(ws):
    """The dataset the trained run names (helpers.make_run's first tree: maybe another test module's)."""
    run = ws / 'trained' / 'run'
    return Path(checkpoints.for_use(str(run))[1]['data_dir']) if run.exists() else ws / 'data'


def make_mistake(case, ws, folder):
    """The path the case gives: made in `folder` as the mistake says."""
    ext, m = case.spec.ext, case.mistake
    if m == 'onto an input':
        return inputs_of(ws)[case.spec.onto]
    path = folder / f'given{ext}'
    if m in ('a folder', 'an empty folder', 'onto a folder'):
        path.mkdir()
    elif m in ('a file', 'onto a file'):
        path.write_text('some notes, not what was asked for\n')
    elif m == 'an empty file':
        path.write_bytes(b'')
    elif m == 'a name not UTF-8':
        path = Path(os.fsdecode(bytes(folder) + b'/' + NOT_UTF8 + ext.encode()))
        path.mkdir() if case.spec.kind in ('in-folder', 'run') else path.write_bytes(b'')
    elif m == 'a symbolic link loop':
        path.symlink_to(path.name)
    elif m == 'a FIFO':
        os.mkfifo(path)
    elif m.startswith('a folder holding'):
        path.mkdir()
        inside = Path(os.fsdecode(bytes(path) + b'/' + NOT_UTF8 + b'.png'))
        inside.write_bytes(b'') if 'UTF-8' in m else inside.symlink_to(inside.name)
    elif m == 'in a missing folder':
        path = folder / 'missing' / f'given{ext}'
    elif m == 'onto a file of another kind':
        other = ('.png', (ws / 'photo.png').read_bytes()) if ext != '.png' else ('.json', b'{"mine": 1}\n')
        path = folder / f'mine{other[0]}'
        path.write_bytes(other[1])
    elif m != 'missing':
        raise ValueError(m)
    return path


def argv_of(case, ws, folder):
    """(argv, what the case gives) of a case: the command's valid arguments, one of them changed."""
    args, given = dict(base_argv(ws).get(case.command, {})), case.value
    if case.flag != 'command':
        given = make_mistake(case, ws, folder) if case.mistake else case.value
        args[case.flag] = given
    argv = list(COMMANDS[case.command][1] if case.command in COMMANDS else [case.value])
    for key, value in args.items():
        if key.startswith('-'):
            argv += [key] if value is True else [f'{key}={value}']
        else:
            argv.append(str(value))
    return argv, given


class Hung(Exception):
    pass


@contextlib.contextmanager
def fifo_watch(path):
    """Yields a list that gets True when something opens the FIFO at path to read: its write end is then opened
    and closed at once, so the reader sees an empty file instead of waiting for ever (an alarm cannot stop a
    read blocked in one of TensorFlow's threads)."""
    opened, stop = [], threading.Event()

    def watch():
        while not stop.wait(0.02):
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))     # ENXIO while nothing reads
            except OSError:
                continue
            opened.append(True)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield opened
    finally:
        stop.set()
        watcher.join()


class BuiltAGraph(Exception):
    pass


def no_graph(*args, **kwargs):
    raise BuiltAGraph('the command went on to build a TensorFlow graph: refuse this mistake before the work')


def run(module, argv):
    """(exit status, stdout, stderr, traceback or None) of module.main(argv), as a process would print them:
    stdout strict UTF-8, stderr with backslash escapes (Python's own settings)."""
    out, err = io.BytesIO(), io.BytesIO()
    stdout = io.TextIOWrapper(out, 'utf-8', errors='strict', write_through=True)
    stderr = io.TextIOWrapper(err, 'utf-8', errors='backslashreplace', write_through=True)
    status, trace = None, None

    def hang(*_):
        raise Hung(f'still running after {ALARM_SECONDS} s')
    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(ALARM_SECONDS)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            status = module.main(argv)
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 1
    except BaseException:        # noqa: B036  (a traceback is what the case must not show)
        trace = traceback.format_exc()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return status, out.getvalue().decode('utf-8', 'replace'), err.getvalue().decode('utf-8', 'replace'), trace


def snapshot(roots):
    """{path: what is there} under each root: every file's bytes (large ones by size and time), links, folders,
    FIFOs."""
    state = {}
    for folder, folders, files in (step for root in roots for step in os.walk(root)):
        for name in folders + files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode) and info.st_size <= BIG_FILE:
                with open(path, 'rb') as f:
                    state[path] = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISREG(info.st_mode):
                state[path] = (info.st_size, info.st_mtime_ns)
            elif stat.S_ISLNK(info.st_mode):
                state[path] = ('link', os.readlink(path))
            else:
                state[path] = stat.S_IFMT(info.st_mode)
    return state


def names_it(line, case, given):
    """Whether the error line names the flag (or argument), or the path or value given."""
    words = line.lower().replace('-', ' ').replace('_', ' ')
    named = case.flag.lstrip('-').lower().replace('-', ' ').replace('_', ' ') in words
    if case.mistake:
        shown = {str(given).encode('utf-8', 'backslashreplace').decode(),      # as stderr escapes it
                 os.fsencode(str(given)).decode('utf-8', 'backslashreplace')}  # as files.printable does
        return named or any(s in line or os.path.basename(s) in line for s in shown)
    return named or (case.value is not None and case.value in line and case.value not in NUMBER_MISTAKES)


@pytest.mark.parametrize('case', params())
def test_a_mistake_gets_one_line_and_changes_nothing(case, workspace, request, monkeypatch):
    ws = request.getfixturevalue('trained') if case.slow else workspace
    folder = ws / 'case'
    folder.mkdir()
    try:
        argv, given = argv_of(case, ws, folder)
        module = COMMANDS.get(case.command, (visualize,))[0]
        monkeypatch.chdir(ws)                 # defaults such as runs/alexnet land in the workspace
        if not (case.spec and case.spec.kind == 'images'):
            monkeypatch.setattr(tf, 'Graph', no_graph)
        roots = {ws, run_data(ws)}            # the trained run's data may be outside the workspace
        before = snapshot(roots)
        with fifo_watch(given) if case.mistake == 'a FIFO' else contextlib.nullcontext([]) as opened:
            status, out, err, trace = run(module, argv)
        after = snapshot(roots)
    finally:
        shutil.rmtree(folder)
    shown = (f'{case.id}: python {module.__name__}.py {" ".join(argv)}\n--- stdout\n{out[-1500:]}\n'
             f'--- stderr\n{err[-1500:]}')
    assert not opened, f'the FIFO was opened, where a read waits for ever: refuse it before opening it\n{shown}'
    assert trace is None, f'{shown}\n--- raised\n{trace[-3000:]}'
    assert 'Traceback' not in out + err, shown
    errors = [line for line in err.splitlines() if line.startswith('error:')]
    assert len(errors) == 1, f'{len(errors)} error: lines, not one\n{shown}'
    expected = case.spec.status if case.mistake else (2,)
    assert status in expected, f'exit status {status}, not {expected}\n{shown}'
    assert names_it(errors[0], case, given), f'the error line names neither {case.flag} nor what was given\n{shown}'
    changed = sorted({path for path, _ in set(before.items()) ^ set(after.items())})
    assert not changed, f'changed: {changed}\n{shown}'
