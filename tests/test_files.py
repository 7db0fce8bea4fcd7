"""files.py: JSON written whole or not at all; one holder of a folder's lock."""
import json
import os

import pytest

import files
from datasets import DataError


def test_json_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / 'x.json'
    files.write_json_atomic(path, {'a': 1})
    assert json.loads(path.read_text()) == {'a': 1}

    def broken_dump(obj, f, **kw):
        f.write('{"half')
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(files.json, 'dump', broken_dump)
    with pytest.raises(OSError, match='No space left'):
        files.write_json_atomic(path, {'a': 2})
    assert json.loads(path.read_text()) == {'a': 1} and os.listdir(tmp_path) == ['x.json']   # no leftovers


def test_a_folder_has_one_holder_at_a_time(tmp_path):
    first = files.FolderLock(str(tmp_path))
    with pytest.raises(DataError, match=f'in use by process {os.getpid()} on '):
        files.FolderLock(str(tmp_path))
    first.release()
    files.FolderLock(str(tmp_path)).release()
    first.release()                                      # twice: harmless
