"""Files that are never half-written: a reader sees the old version or the new one, whole.

Every JSON the project writes (checkpoint metadata, results, shard indexes) goes
through write_json_atomic: a temporary file beside the target, flushed to disk,
then renamed over it, then the folder synced so the rename survives a power loss.
"""
import json
import os


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
    path = os.fspath(path)
    tmp = f'{path}.tmp-{os.getpid()}'
    try:
        with open(tmp, 'w') as f:
            json.dump(obj, f, indent=indent)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    fsync_folder(os.path.dirname(path))
