"""Files that are never half-written: a reader sees the old version or the new one, whole.

Every JSON the project writes (checkpoint metadata, results, shard indexes) goes
through write_json_atomic: a temporary file beside the target, flushed to disk,
then renamed over it, then the folder synced so the rename survives a power loss.
The outputs users name (features.py's .npz, classify.py's CSV and figure) go
through write_whole, whose hidden temporary (.NAME.tmp-HOST-PID) the next write
of NAME removes when a kill -9 left it. check_output_file refuses, before any
work, an output that would overwrite an input or a file of another kind.
FolderLock keeps a second trainer out of a run folder.
"""
import fcntl
import json
import os
import re
import socket
import stat
import warnings
import zipfile

from errors import DataError


def fsync_folder(folder):
    """Make the renames and new files in `folder` durable (a no-op where folders cannot be synced)."""
    try:
        fd = os.open(folder or '.', os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path, obj, indent=1):
    """Write obj as JSON to path: whole or not at all, even on a crash or kill -9."""
    write_atomic(path, lambda f: json.dump(obj, f, indent=indent))


def write_text_atomic(path, text):
    """Write text to path: whole or not at all, even on a crash or kill -9."""
    write_atomic(path, lambda f: f.write(text))


def write_atomic(path, write):
    """write(f) into a temporary file beside path, synced, then renamed to path: whole or not at all."""
    path = os.fspath(path)
    _write_then_rename(f'{path}.tmp-{os.getpid()}', path, write, dict(mode='w', newline=''))


def _write_then_rename(tmp, path, write, how):
    """write(f) into tmp (opened with `how`), synced, renamed to path, its folder synced; on any failure
    (Ctrl-C included) tmp is removed and path left as it was."""
    try:
        with open(tmp, **how) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.remove(tmp)
        raise
    fsync_folder(os.path.dirname(os.path.abspath(path)))


def check_output_file(path, what, kind=None, inputs=()):
    """A DataError (one line) unless a file can be written at path: it is not a folder, its folder exists and
    is writable, and what is there already may be replaced (check_replaceable). Called before the work whose
    result it will hold; `what` names it (a flag)."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise DataError(f'{what} {path} is a folder: give a file name (in it, or elsewhere)')
    if not os.path.isdir(folder):
        raise DataError(f'{what} {path}: there is no folder {folder}: create it first or choose another path')
    if not os.access(folder, os.W_OK):
        raise DataError(f'{what} {path}: the folder {folder} cannot be written to: choose another path')
    check_replaceable(path, what, kind, inputs)


def check_replaceable(path, what, kind=None, inputs=()):
    """A DataError (one line) when what is at path must not be replaced: one of the inputs (the files the command
    reads, compared as files: a link or another name of one is refused too), anything but a regular file, or a
    file of another kind than the output's (kind: one of KIND_NAMES, or a tuple of them; an empty file may
    always be replaced)."""
    if not os.path.exists(path):          # nothing there (or a link to nothing, which is replaced, not followed)
        return
    if is_one_of(path, inputs):
        raise DataError(f'{what} {path} is one of the files to read: writing it would destroy it; give {what} '
                        f'a new file name {PATTERN_HINT.format(what)}')
    kinds = (kind,) if isinstance(kind, str) else kind
    found = kind_of(path)
    if found == 'special' or kinds and found not in (*kinds, 'empty'):
        hint = f' {PATTERN_HINT.format(what)}' if found in IMAGE_KINDS else ''
        wanted = ' or '.join(KIND_NAMES[k] for k in kinds) if kinds else 'a regular file'
        raise DataError(f'{what} {path} exists and is {KIND_NAMES.get(found, found)}, not {wanted}: '
                        f'it is left as it is; move it away or give {what} another name{hint}')


def is_one_of(path, inputs):
    """Whether path is the same file as one of inputs (a link to it, a hard link, another spelling)."""
    try:
        target = os.stat(path)
    except OSError:
        return False
    for other in inputs:
        try:
            found = os.stat(other)
        except OSError:
            continue
        if (found.st_dev, found.st_ino) == (target.st_dev, target.st_ino):
            return True
    return False


KIND_NAMES = {'npz': 'an .npz of arrays', 'text': 'text', 'png': 'a PNG image', 'empty': 'empty',
              'json': 'JSON', 'svg': 'an SVG picture', 'pdf': 'a PDF', 'tflite': 'a TensorFlow Lite model',
              'jpeg': 'a JPEG image', 'gif': 'a GIF image', 'bmp': 'a BMP image', 'zip': 'a zip archive',
              'binary': 'binary data (not text)', 'special': 'not a regular file (a pipe, device or socket)',
              'unreadable': 'a file that cannot be read'}
SIGNATURES = ((b'\x89PNG\r\n\x1a\n', 'png'), (b'\xff\xd8\xff', 'jpeg'), (b'GIF8', 'gif'), (b'BM', 'bmp'),
              (b'PK\x03\x04', 'zip'), (b'PK\x05\x06', 'zip'))
IMAGE_KINDS = ('png', 'jpeg', 'gif', 'bmp')
PATTERN_HINT = '(a shell pattern such as *.png right after {0} puts its first match there)'
HEAD_BYTES = 8192          # read to tell text from binary
TFLITE_MARK = b'TFL3'      # at bytes 4..8 of a TensorFlow Lite model


def kind_of(path):
    """What an existing file is, as far as replacing it goes: 'empty', 'npz' (a zip of .npy arrays), an image
    or 'zip' by its first bytes, 'text' (no NUL byte), 'binary', 'special' or 'unreadable'. Pipes and
    devices are never opened (a pipe would block)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return 'special'
        with open(path, 'rb') as f:
            head = f.read(HEAD_BYTES)
    except OSError:
        return 'unreadable'
    if not head:
        return 'empty'
    found = next((kind for magic, kind in SIGNATURES if head.startswith(magic)), None)
    if found == 'zip':
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (OSError, zipfile.BadZipFile):
            return 'binary'
        return 'npz' if all(n.endswith('.npy') for n in names) else 'zip'
    if found == 'bmp' and b'\0' not in head:         # text that begins with "BM"
        found = None
    if found:
        return found
    if head.startswith(b'%PDF'):
        return 'pdf'
    if b'\0' in head:
        return 'tflite' if head[4:8] == TFLITE_MARK else 'binary'
    start = head.lstrip()[:1]
    return 'json' if start in (b'{', b'[') else 'svg' if start == b'<' else 'text'


TEMPORARY = '.tmp-'        # write_whole's temporary beside NAME: .NAME.tmp-HOST-PID


def write_whole(path, write):
    """write(f) (a binary file) into a hidden temporary beside path, synced, then renamed to path: whole or
    not at all, even on a kill -9. The temporaries that killed writes of path left are removed first, each
    with one warning line."""
    path = os.fspath(path)
    remove_leftovers(path)
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f'.{name}{TEMPORARY}{socket.gethostname()}-{os.getpid()}')
    _write_then_rename(tmp, path, write, dict(mode='wb'))


def leftover_pattern(name):
    """The temporaries that writes of name make on this machine (another machine's process ids mean nothing
    here), and those of earlier versions: NAME.tmp-PID and NAME.tmp-PID.npz. Group 1 or 2: the process id."""
    ours = re.escape(f'.{name}{TEMPORARY}{socket.gethostname()}-')
    return re.compile(rf'{ours}(\d{{1,7}})|{re.escape(name + TEMPORARY)}(\d{{1,7}})(?:\.npz)?')


def remove_leftovers(path):
    """Remove the temporaries of writes of path whose process is gone, with a warning line each."""
    folder, name = os.path.split(path)
    pattern = leftover_pattern(name)
    try:
        entries = os.listdir(folder or '.')
    except OSError:
        return
    for entry in entries:
        found = pattern.fullmatch(entry)
        if not found:
            continue
        pid = int(found.group(1) or found.group(2))
        if process_running(pid):
            continue
        try:
            os.remove(os.path.join(folder, entry))
        except OSError:
            continue           # removed meanwhile, or not ours to remove
        warnings.warn(f'removed {printable(os.path.join(folder, entry))}, what an interrupted write of '
                      f'{printable(name)} left (its process {pid} is gone)')


def process_running(pid):
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # someone else's
        pass
    return True


def printable(path):
    """path for a message: the bytes of a file name that are not UTF-8 as \\xNN (printing them would fail)."""
    return os.fsencode(path).decode('utf-8', 'backslashreplace')


LOCK_FILE = '.lock'


class FolderLock:
    """An exclusive lock on a folder (a run folder: one trainer at a time), held until release() or the
    process ends, a kill -9 included (the operating system drops it). The lock file names the holder."""

    def __init__(self, folder):
        self.path = os.path.join(folder, LOCK_FILE)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(self.fd, 200).decode(errors='replace').strip() or 'another process'
            os.close(self.fd)
            raise DataError(f'{folder} is in use by {holder}: wait for it to finish, stop it, or choose '
                            f'another --train-dir') from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f'process {os.getpid()} on {socket.gethostname()}\n'.encode())

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
