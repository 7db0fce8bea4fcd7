"""Files that are never half-written: a reader sees the old version or the new one, whole.

Every JSON the project writes (checkpoint metadata, results, shard indexes) goes
through write_json_atomic: a temporary file beside the target, flushed to disk,
then renamed over it, then the folder synced so the rename survives a power loss.
FolderLock keeps a second trainer out of a run folder.
"""
import fcntl
import json
import os
import socket

from datasets import DataError


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
    tmp = f'{path}.tmp-{os.getpid()}'
    try:
        with open(tmp, 'w', newline='') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    fsync_folder(os.path.dirname(path))


def check_output_file(path, what):
    """A DataError (one line) unless a file can be written at path: it is not a folder, and its folder
    exists and is writable. Called before the work whose result it will hold; `what` names it (a flag)."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise DataError(f'{what} {path} is a folder: give a file name (in it, or elsewhere)')
    if not os.path.isdir(folder):
        raise DataError(f'{what} {path}: there is no folder {folder}: create it first or choose another path')
    if not os.access(folder, os.W_OK):
        raise DataError(f'{what} {path}: the folder {folder} cannot be written to: choose another path')


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
