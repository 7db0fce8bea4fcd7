"""files.py: JSON written whole or not at all; outputs that never overwrite an input or another kind of
file; what a killed write leaves, removed by the next; one holder of a folder's lock."""
import json
import os
import socket
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import files
from conftest import REPO
from errors import DataError


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


def test_an_output_is_never_an_input_nor_an_existing_file_of_another_kind(tmp_path):
    made = {'photo.png': b'\x89PNG\r\n\x1a\n\0\0\0\rIHDR', 'photo.jpg': b'\xff\xd8\xff\xe0\0\x10JFIF\0',
            'old.csv': b'image,class_1,score_1\nphotos/caf\xe9.png,cat,0.5\n', 'empty.txt': b''}
    for name, data in made.items():
        (tmp_path / name).write_bytes(data)
    np.savez(tmp_path / 'old.npz', features=np.zeros([2, 3], np.float32))
    with zipfile.ZipFile(tmp_path / 'notes.zip', 'w') as z:
        z.writestr('notes.txt', 'mine')
    os.mkfifo(tmp_path / 'pipe.csv')              # never opened: reading it would block
    photo = tmp_path / 'photo.png'
    (tmp_path / 'link.png').symlink_to('photo.png')
    os.link(photo, tmp_path / 'hard.png')
    for name, kind in (('old.npz', 'npz'), ('old.csv', 'text'), ('photo.png', 'png'), ('empty.txt', 'npz'),
                       ('new.npz', 'npz')):
        files.check_output_file(str(tmp_path / name), '-o', kind, [str(tmp_path / 'photo.jpg')])   # may be replaced
    for name, kind, found in (('photo.png', 'npz', 'is a PNG image, not an .npz'), ('photo.jpg', 'text', 'JPEG'),
                              ('old.npz', 'text', 'is an .npz of arrays, not text'), ('notes.zip', 'npz', 'zip'),
                              ('old.csv', 'png', 'is text, not a PNG'), ('pipe.csv', 'text', 'not a regular file')):
        with pytest.raises(DataError, match=found) as e:
            files.check_output_file(str(tmp_path / name), '--out', kind)
        assert str(e.value).startswith(f'--out {tmp_path / name} exists') and 'left as it is' in str(e.value)
    inputs = [str(tmp_path / 'photo.jpg'), str(photo)]
    for same in (photo, tmp_path / 'link.png', tmp_path / 'hard.png', tmp_path / '.' / 'photo.png'):
        with pytest.raises(DataError, match='is one of the files to read: .* right after --plot'):
            files.check_output_file(str(same), '--plot', 'png', inputs)
    assert (tmp_path / 'photo.png').read_bytes() == made['photo.png']


KILLED_WRITER = """
import sys
import files

def write(f):
    f.write(b'half of the new')
    f.flush()
    print('writing', flush=True)
    sys.stdin.read()                # until killed

files.write_whole(sys.argv[1], write)
"""


@pytest.mark.slow
def test_a_killed_write_leaves_the_old_file_and_the_next_write_removes_its_temporary(tmp_path):
    target = tmp_path / 'feats.npz'
    target.write_bytes(b'old')
    writer = subprocess.Popen([sys.executable, '-c', KILLED_WRITER, str(target)], cwd=REPO,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == 'writing\n'
    finally:
        writer.kill()                                  # SIGKILL, mid-write
        writer.wait()
    host, dead, alive = socket.gethostname(), writer.pid, os.getppid()
    leftover = f'.feats.npz.tmp-{host}-{dead}'
    assert sorted(os.listdir(tmp_path)) == [leftover, 'feats.npz'] and target.read_bytes() == b'old'
    kept = [f'.feats.npz.tmp-{host}-{alive}',          # a write still going on
            f'.feats.npz.tmp-elsewhere-{dead}',         # another machine's process
            f'.other.npz.tmp-{host}-{dead}']            # another target's
    older = f'feats.npz.tmp-{dead}.npz'                 # what earlier versions left
    for name in kept + [older]:
        (tmp_path / name).write_bytes(b'x')
    with pytest.warns(UserWarning) as warned:
        files.write_whole(target, lambda f: f.write(b'new'))
    assert target.read_bytes() == b'new'
    assert sorted(os.listdir(tmp_path)) == sorted(kept + ['feats.npz'])
    said = sorted(str(w.message) for w in warned)
    assert len(said) == 2 and all(f'interrupted write of feats.npz left (its process {dead} is gone)' in m
                                  for m in said)
    assert said[0].startswith(f'removed {tmp_path / leftover},') and said[1].startswith(f'removed {tmp_path / older},')
