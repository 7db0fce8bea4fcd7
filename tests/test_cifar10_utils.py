"""Tests for cifar10_utils: download (local HTTP server only), safe extraction,
the restricted unpickler, folder validation, the Dataset, the CLI, and real pixels.

The batch files are written in the official Python-2 format by tests/cifar10_archive.py."""
import hashlib
import io
import os
import pickle
import pickletools
import subprocess
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

import cifar10_archive as ca
import cifar10_utils as cu
from cifar10_archive import Global, Reduce
from conftest import REPO
from errors import DataError

ROWS, TEST_ROWS = 20, 30  # per training batch (2 per class), in the test batch


def batch_bytes(seed, n):
    rng = np.random.RandomState(seed)
    data = rng.randint(0, 256, size=(n, 3072)).astype(np.uint8)
    labels = [i % 10 for i in range(n)]
    return ca.batch_pickle(f'batch {seed}', data, labels, [f'{i}.png' for i in range(n)])


def batch_files():
    files = {'batches.meta': ca.meta_pickle(ROWS)}
    for i in range(1, 6):
        files[f'data_batch_{i}'] = batch_bytes(i, ROWS)
    files['test_batch'] = batch_bytes(6, TEST_ROWS)
    return files


def make_tar(members):
    """tar.gz bytes from (name, file contents) or (name, link type, link target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w:gz') as tar:
        for name, payload, *link in members:
            info = tarfile.TarInfo(name)
            if not link:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                info.type, info.linkname = payload, link[0]
                tar.addfile(info)
    return buf.getvalue()


ARCHIVE = make_tar([(f'cifar-10-batches-py/{k}', v) for k, v in batch_files().items()])
ARCHIVE_MD5 = hashlib.md5(ARCHIVE).hexdigest()


def write_folder(root, **changes):
    """An extracted cifar-10-batches-py/ under root; changes replace (or, with None, delete) files."""
    folder = root / 'cifar-10-batches-py'
    folder.mkdir(parents=True)
    for name, payload in {**batch_files(), **changes}.items():
        if payload is not None:
            (folder / name).write_bytes(payload)
    return folder


def test_the_batches_are_in_the_python2_format():
    """What tests/cifar10_archive.py writes is what Python 2 wrote: protocol-2 opcodes only, bytes
    keys, the pixels through numpy.core.multiarray._reconstruct, readable by the plain unpickler."""
    data = np.arange(4 * 3072, dtype=np.int64).reshape(4, 3072).astype(np.uint8)
    raw = ca.batch_pickle('training batch 1 of 5', data, [3, 1, 4, 1], ['a.png', 'b.png', 'c.png', 'd.png'])
    assert raw[:2] == b'\x80\x02' and max(op.proto for op, _, _ in pickletools.genops(raw)) == 2
    names = [op.name for op, _, _ in pickletools.genops(raw)]
    assert 'SHORT_BINBYTES' not in names and 'BINUNICODE' not in names and 'FRAME' not in names
    globals_ = [arg for op, arg, _ in pickletools.genops(raw) if op.name == 'GLOBAL']
    assert globals_ == ['numpy.core.multiarray _reconstruct', 'numpy ndarray', 'numpy dtype']
    batch = pickle.loads(raw, encoding='bytes')
    assert sorted(batch) == [b'batch_label', b'data', b'filenames', b'labels']
    assert batch[b'data'].dtype == np.uint8 and (batch[b'data'] == data).all() and batch[b'labels'] == [3, 1, 4, 1]
    meta = pickle.loads(ca.meta_pickle(10000), encoding='bytes')
    assert meta == {b'num_cases_per_batch': 10000, b'label_names': [n.encode() for n in cu.CLASS_NAMES],
                    b'num_vis': 3072}


# --- a local HTTP server -----------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    """Serves server.body at /cifar-10-python.tar.gz; server.mode: 'plain' ignores Range,
    'range' honours it, 'cut' drops the connection halfway through the body, 'nolength'
    sends no Content-Length (the body ends when the connection closes), 'liar' announces
    server.announce bytes but sends the body."""

    def do_GET(self):
        body, rng = self.server.body, self.headers.get('Range')
        if self.path != '/cifar-10-python.tar.gz':
            self.send_error(404)
            return
        start = int(rng.split('=')[1].split('-')[0]) if rng and self.server.mode == 'range' else 0
        if start >= len(body) > 0:
            self.server.log.append((rng, 416))
            self.send_error(416)
            return
        status = 206 if start else 200
        self.server.log.append((rng, status))
        self.send_response(status)
        if start:
            self.send_header('Content-Range', f'bytes {start}-{len(body) - 1}/{len(body)}')
        if self.server.mode == 'liar':
            self.send_header('Content-Length', str(self.server.announce))
        elif self.server.mode != 'nolength':
            self.send_header('Content-Length', str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        try:
            self.wfile.write(payload[:len(payload) // 2] if self.server.mode == 'cut' else payload)
        except (BrokenPipeError, ConnectionResetError):     # the client stopped reading: as it should
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    servers = []

    def start(mode='plain', body=ARCHIVE):
        server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        server.mode, server.body, server.log = mode, body, []
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return server, f'http://127.0.0.1:{server.server_port}/cifar-10-python.tar.gz'

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# --- download ------------------------------------------------------------------------

def test_download_with_progress(serve, tmp_path, capsys):
    _, url = serve()
    path = cu.download(tmp_path, url=url, md5=ARCHIVE_MD5, progress=True)
    assert Path(path) == tmp_path / 'cifar-10-python.tar.gz'
    assert Path(path).read_bytes() == ARCHIVE
    assert '100%' in capsys.readouterr().err  # the tqdm bar ran to the end
    assert cu.download(tmp_path, url='http://127.0.0.1:9/none', md5=ARCHIVE_MD5) == path  # no re-download


def test_checksum_mismatch_refused(serve, tmp_path):
    _, url = serve()
    with pytest.raises(DataError, match=f'MD5 {ARCHIVE_MD5}, expected {cu.CIFAR10_MD5}'):
        cu.download(tmp_path, url=url, progress=False)
    assert os.listdir(tmp_path) == []  # neither the archive nor a .part counts as done


def test_truncated_download_then_resume(serve, tmp_path):
    cut, url = serve('cut')
    with pytest.raises(DataError) as e:
        cu.download(tmp_path, url=url, md5=ARCHIVE_MD5, progress=False)
    assert 'connection closed' in str(e.value) and '--data-dir' in str(e.value)
    assert not (tmp_path / 'cifar-10-python.tar.gz').exists()
    part = tmp_path / 'cifar-10-python.tar.gz.part'
    assert part.stat().st_size == len(ARCHIVE) // 2
    server, url = serve('range')
    cu.download(tmp_path, url=url, md5=ARCHIVE_MD5, progress=False)
    assert server.log == [(f'bytes={len(ARCHIVE) // 2}-', 206)]  # resumed, not restarted
    assert (tmp_path / 'cifar-10-python.tar.gz').read_bytes() == ARCHIVE
    assert not part.exists()


@pytest.mark.parametrize('mode, part, log', [
    ('plain', b'x' * 100, [('bytes=100-', 200)]),                      # server ignores Range
    ('range', b'x' * (len(ARCHIVE) + 5), [(f'bytes={len(ARCHIVE) + 5}-', 416), (None, 200)]),
], ids=['server-ignores-range', 'part-too-long'])
def test_stale_part_is_restarted(serve, tmp_path, mode, part, log):
    (tmp_path / 'cifar-10-python.tar.gz.part').write_bytes(part)
    server, url = serve(mode)
    cu.download(tmp_path, url=url, md5=ARCHIVE_MD5, progress=False)
    assert server.log == log
    assert (tmp_path / 'cifar-10-python.tar.gz').read_bytes() == ARCHIVE


def test_corrupt_part_is_deleted_and_rerun_succeeds(serve, tmp_path):
    part = tmp_path / 'cifar-10-python.tar.gz.part'
    part.write_bytes(b'garbage!' + ARCHIVE[8:100])  # right length prefix, wrong bytes
    _, url = serve('range')
    with pytest.raises(DataError, match='was deleted'):
        cu.download(tmp_path, url=url, md5=ARCHIVE_MD5, progress=False)
    assert not part.exists()
    cu.download(tmp_path, url=url, md5=ARCHIVE_MD5, progress=False)
    assert (tmp_path / 'cifar-10-python.tar.gz').read_bytes() == ARCHIVE


def test_network_failure_is_one_line_with_hint(serve, tmp_path):
    server, url = serve()
    server.shutdown()
    server.server_close()  # nothing listens on that port any more
    with pytest.raises(DataError) as e:
        cu.download(tmp_path, url=url, progress=False)
    message = str(e.value)
    assert '\n' not in message and url in message
    assert '--data-dir' in message and 'cifar-10-batches-py/' in message and '--dataset demo' in message


@pytest.mark.parametrize('mode', ['nolength', 'liar'])
def test_download_that_grows_past_the_official_size_is_stopped(serve, tmp_path, monkeypatch, mode):
    monkeypatch.setattr(cu, 'CIFAR10_SIZE', len(ARCHIVE))     # what the official archive weighs here
    server, url = serve(mode, body=ARCHIVE + b'x' * 3_000_000)   # more than that, in several chunks
    server.announce = len(ARCHIVE) * 10
    with pytest.raises(DataError) as e:
        cu.download(tmp_path, url=url, progress=False)
    message = str(e.value)
    assert '\n' not in message and 'stopped' in message and f'the official archive is {len(ARCHIVE)} bytes' in message
    assert ('announces' if mode == 'liar' else 'sent more than') in message and 'deleted' in message
    assert os.listdir(tmp_path) == []                       # the partial file is gone


def test_download_of_an_md5_archive_is_capped(serve, tmp_path, monkeypatch):
    monkeypatch.setattr(cu, 'MAX_ARCHIVE_BYTES', len(ARCHIVE))
    _, url = serve('nolength', body=ARCHIVE + b'x')
    with pytest.raises(DataError, match=f'capped at {len(ARCHIVE)} bytes for an --md5 archive'):
        cu.download(tmp_path, url=url, md5=ARCHIVE_MD5, progress=False)
    assert os.listdir(tmp_path) == []
    _, url = serve('nolength')                              # exactly the cap: fine
    assert Path(cu.download(tmp_path, url=url, md5=ARCHIVE_MD5, progress=False)).read_bytes() == ARCHIVE
    (tmp_path / 'cifar-10-python.tar.gz').unlink()
    (tmp_path / 'cifar-10-python.tar.gz.part').write_bytes(b'x' * (len(ARCHIVE) + 1))   # a stale, too long .part
    server, url = serve('range')
    cu.download(tmp_path, url=url, md5=ARCHIVE_MD5, progress=False)
    assert server.log == [(None, 200)] and (tmp_path / 'cifar-10-python.tar.gz').read_bytes() == ARCHIVE


def test_official_archive_needs_its_sha256_too(serve, tmp_path, monkeypatch):
    """An archive with the official MD5 but another SHA-256 (an MD5 collision) is refused."""
    monkeypatch.setattr(cu, 'CIFAR10_MD5', ARCHIVE_MD5)         # pretend ARCHIVE is the official one
    monkeypatch.setattr(cu, 'CIFAR10_SIZE', len(ARCHIVE))
    monkeypatch.setattr(cu, 'CIFAR10_SHA256', '0' * 64)
    _, url = serve()
    with pytest.raises(DataError) as e:
        cu.download(tmp_path, url=url, progress=False)
    assert '\n' not in str(e.value) and 'official MD5 but SHA-256' in str(e.value) and 'deleted' in str(e.value)
    assert os.listdir(tmp_path) == []
    (tmp_path / 'cifar-10-python.tar.gz').write_bytes(ARCHIVE)    # one already there: checked as well
    with pytest.raises(DataError, match='official MD5 but SHA-256'):
        cu.load_cifar10(tmp_path)
    (tmp_path / 'cifar-10-python.tar.gz').unlink()
    monkeypatch.setattr(cu, 'CIFAR10_SHA256', hashlib.sha256(ARCHIVE).hexdigest())
    assert Path(cu.download(tmp_path, url=url, progress=False)).read_bytes() == ARCHIVE
    assert cu.CIFAR10_SIZE == len(ARCHIVE) and len(cu.load_cifar10(tmp_path, val_size=10).train) == 90


def test_official_checksums_and_size():
    assert cu.CIFAR10_MD5 == 'c58f30108f718f92721af3b95e74349a' and cu.CIFAR10_SIZE == 170498071
    assert cu.CIFAR10_SHA256 == '6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce'


# --- safe extraction --------------------------------------------------------------------

@pytest.mark.parametrize('member', [
    ('../evil', b'x'),
    ('/tmp/cifar10_utils_abs_evil', b'x'),
    ('cifar-10-batches-py/../../evil', b'x'),
    ('cifar-10-batches-py/link', tarfile.SYMTYPE, '/etc/passwd'),
    ('cifar-10-batches-py/hard', tarfile.LNKTYPE, '../evil'),
])
def test_extract_refuses_unsafe_members(tmp_path, member):
    archive = tmp_path / 'bad.tar.gz'
    archive.write_bytes(make_tar([('cifar-10-batches-py/data_batch_1', b'ok'), member]))
    dest = tmp_path / 'dest'
    with pytest.raises(DataError, match='refusing|link'):
        cu.extract(archive, dest)
    assert sorted(os.listdir(tmp_path)) == ['bad.tar.gz', 'dest'] and os.listdir(dest) == []
    assert not Path('/tmp/cifar10_utils_abs_evil').exists()


def test_extract_truncated_archive(tmp_path):
    archive = tmp_path / 'cut.tar.gz'
    archive.write_bytes(ARCHIVE[:len(ARCHIVE) // 2])
    with pytest.raises(DataError, match='complete'):
        cu.extract(archive, tmp_path / 'dest')
    assert not (tmp_path / 'dest' / 'cifar-10-batches-py').exists()


def test_archive_path_is_extracted_once_and_nothing_of_the_user_is_touched(tmp_path, monkeypatch):
    archive = tmp_path / 'my-copy.tar.gz'
    archive.write_bytes(ARCHIVE)
    mine = write_folder(tmp_path)                        # the user's own cifar-10-batches-py/ beside it
    (mine / 'notes.txt').write_text('mine')
    before = {f.name: f.read_bytes() for f in mine.iterdir()}
    folder, status = cu.prepare(archive, md5=ARCHIVE_MD5)
    assert Path(folder) == tmp_path / f'.cifar-10-batches-py-{ARCHIVE_MD5[:12]}' and ARCHIVE_MD5 in status
    assert (Path(folder) / '.complete').read_text().strip() == ARCHIVE_MD5
    assert {f.name: f.read_bytes() for f in mine.iterdir()} == before     # untouched
    marker = (Path(folder) / '.complete').stat().st_mtime_ns
    monkeypatch.setattr(cu.tarfile, 'open', lambda *a, **k: pytest.fail('extracted again'))
    again, _ = cu.prepare(archive, md5=ARCHIVE_MD5)             # reused, not re-extracted
    assert again == folder and (Path(folder) / '.complete').stat().st_mtime_ns == marker
    assert len(cu.load_cifar10(archive, md5=ARCHIVE_MD5, val_size=10).train) == 90
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ['my-copy.tar.gz', 'cifar-10-batches-py', f'.cifar-10-batches-py-{ARCHIVE_MD5[:12]}'])


def test_another_archive_gets_its_own_folder(tmp_path):
    other = make_tar([(f'cifar-10-batches-py/{k}', v) for k, v in batch_files().items()] +
                     [('cifar-10-batches-py/readme.html', b'<p>another copy</p>')])
    other_md5 = hashlib.md5(other).hexdigest()
    archive = tmp_path / 'copy.tar.gz'
    archive.write_bytes(ARCHIVE)
    first, _ = cu.prepare(archive, md5=ARCHIVE_MD5)
    archive.write_bytes(other)                                # the user replaced the archive
    second, _ = cu.prepare(archive, md5=other_md5)
    assert first != second and Path(second).name == f'.cifar-10-batches-py-{other_md5[:12]}'
    assert (Path(second) / 'readme.html').exists() and not (Path(first) / 'readme.html').exists()


def test_extraction_that_lost_a_race_keeps_the_winner(tmp_path, monkeypatch):
    """Two runs extract the same archive at once: the one that renames second drops its copy."""
    archive = tmp_path / 'copy.tar.gz'
    archive.write_bytes(ARCHIVE)
    target = tmp_path / f'.cifar-10-batches-py-{ARCHIVE_MD5[:12]}'
    real_extractall = tarfile.TarFile.extractall

    def other_run_finishes_first(self, path, *args, **kwargs):
        real_extractall(self, path, *args, **kwargs)
        if not target.exists():                    # the other run: whole, marked, renamed into place
            winner = write_folder(tmp_path / 'other')
            (winner / '.complete').write_text(ARCHIVE_MD5 + '\n')
            (winner / 'winner').write_text('')
            os.rename(winner, target)
    monkeypatch.setattr(tarfile.TarFile, 'extractall', other_run_finishes_first)
    folder, _ = cu.prepare(archive, md5=ARCHIVE_MD5)
    assert Path(folder) == target and (target / 'winner').exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.extract-')]    # ours dropped
    assert len(cu.load_batches(folder)[0]) == 5 * ROWS


def test_concurrent_runs_share_one_extraction(tmp_path):
    archive = tmp_path / 'copy.tar.gz'
    archive.write_bytes(ARCHIVE)
    results, errors = [], []

    def run():
        try:
            results.append(cu.prepare(archive, md5=ARCHIVE_MD5)[0])
        except Exception as e:                      # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(results)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ['.cifar-10-batches-py-' + ARCHIVE_MD5[:12], 'copy.tar.gz']


def test_folder_in_the_way_is_not_replaced(tmp_path):
    archive = tmp_path / 'copy.tar.gz'
    archive.write_bytes(ARCHIVE)
    target = tmp_path / f'.cifar-10-batches-py-{ARCHIVE_MD5[:12]}'
    target.mkdir()
    (target / 'something').write_text('not ours')
    with pytest.raises(DataError) as e:
        cu.prepare(archive, md5=ARCHIVE_MD5)
    assert str(target) in str(e.value) and 'move it away' in str(e.value) and '\n' not in str(e.value)
    assert os.listdir(target) == ['something']
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.extract-')]


def test_read_only_archive_folder_extracts_into_the_cache(tmp_path, monkeypatch):
    shelf, cache = tmp_path / 'shelf', tmp_path / 'cache'
    shelf.mkdir()
    (shelf / 'copy.tar.gz').write_bytes(ARCHIVE)
    monkeypatch.setattr(cu, 'DEFAULT_CACHE_DIR', str(cache))
    real_access = os.access
    monkeypatch.setattr(cu.os, 'access', lambda path, mode: False if Path(path) == shelf else real_access(path, mode))
    folder, _ = cu.prepare(shelf / 'copy.tar.gz', md5=ARCHIVE_MD5)
    assert Path(folder) == cache / f'.cifar-10-batches-py-{ARCHIVE_MD5[:12]}' and os.listdir(shelf) == ['copy.tar.gz']
    assert cu.prepare(shelf / 'copy.tar.gz', md5=ARCHIVE_MD5)[0] == folder     # found there next time


def test_stale_temporary_extractions_are_cleaned(tmp_path):
    archive = tmp_path / 'copy.tar.gz'
    archive.write_bytes(ARCHIVE)
    old, fresh = tmp_path / '.extract-killed', tmp_path / '.extract-running'
    for d in (old, fresh):
        (d / 'cifar-10-batches-py').mkdir(parents=True)
    os.utime(old, (1, 1))
    cu.prepare(archive, md5=ARCHIVE_MD5)
    assert not old.exists() and fresh.exists()          # another run's may still be in use


# --- the restricted unpickler and folder validation --------------------------------------

def test_crafted_pickle_is_refused_and_not_run(tmp_path):
    marker = tmp_path / 'pwned'
    evil = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    folder = write_folder(tmp_path / 'data', data_batch_2=evil)
    with pytest.raises(DataError, match=r'data_batch_2 is not a valid CIFAR-10 batch.*os\.system'):
        cu.load_batches(folder)
    assert not marker.exists()
    import pickle
    pickle.loads(evil)  # the plain unpickler would have run it: the test above means something
    assert marker.exists()


RECONSTRUCT, NDARRAY = Global('numpy.core.multiarray', '_reconstruct'), Global('numpy', 'ndarray')


def array_with(state=None, args=(NDARRAY, (0,), 'b')):
    """An array as numpy pickles it, with its _reconstruct arguments or its state replaced."""
    return Reduce(RECONSTRUCT, args, state or (1, (4, 3072), ca.uint8_dtype(), False, b'\0' * 4 * 3072))


TINY = array_with((1, (1, 3072), ca.uint8_dtype(), False, b'\0' * 3072))
CRAFTED = {   # name: (data, labels, what the error says)
    # numpy.ndarray called directly: 100,000 images out of 3 KB, with strides 0
    'ndarray-call': (Reduce(NDARRAY, ((100000, 3072), 'u1', TINY, 0, (0, 0))),
                     Reduce(NDARRAY, ((100000,), 'u1', TINY, 0, (0,))), 'refusing to call numpy.ndarray'),
    'ndarray-alloc': (Reduce(NDARRAY, ((10 ** 9, 3072), 'u1')), [0], 'refusing to call numpy.ndarray'),
    'rows-claimed': (array_with((1, (10 ** 9, 3072), ca.uint8_dtype(), False, b'')), [0],
                     'refusing an array of 1000000000 rows'),
    'short-data': (array_with((1, (4, 3072), ca.uint8_dtype(), False, b'\0' * 100)), [0] * 4,
                   'with 100 bytes of data'),
    'other-shape': (array_with((1, (4, 100), ca.uint8_dtype(), False, b'\0' * 400)), [0] * 4,
                    r'shape \(4, 100\)'),
    'three-dims': (array_with((1, (4, 3072, 1), ca.uint8_dtype(), False, b'\0' * 4 * 3072)), [0] * 4,
                   r'shape \(4, 3072, 1\)'),
    'int-dtype': (array_with((1, (4, 3072), Reduce(Global('numpy', 'dtype'), ('<i8', 0, 1)), False, b'')), [0] * 4,
                  r"refusing numpy.dtype\('<i8'"),
    'dtype-state': (array_with((1, (4, 3072), Reduce(Global('numpy', 'dtype'), ('u1', 0, 1), (3, '>', None, None, None,
                                                                                              8, 1, 0)),
                                False, b'\0' * 4 * 3072)), [0] * 4, 'refusing a uint8 dtype with the state'),
    'fortran': (array_with((1, (4, 3072), ca.uint8_dtype(), True, b'\0' * 4 * 3072)), [0] * 4, 'C-ordered'),
    'reconstruct-args': (array_with(args=(NDARRAY, (10 ** 6,), 'b')), [0] * 4, 'other than numpy'),
    'no-state': (Reduce(RECONSTRUCT, (NDARRAY, (0,), 'b')), [0] * 4, 'an array without its data'),
}


@pytest.mark.parametrize('name', CRAFTED)
def test_crafted_arrays_are_refused(tmp_path, name):
    data, labels, message = CRAFTED[name]
    folder = write_folder(tmp_path, data_batch_3=ca.py2_pickle({'data': data, 'labels': labels}))
    with pytest.raises(DataError, match=message) as e:
        cu.load_batches(folder)
    assert '\n' not in str(e.value) and 'data_batch_3' in str(e.value)


def test_an_object_array_cannot_crash_the_interpreter(tmp_path):
    """An object array of 4 x 3072 with no objects made the old unpickler read stray pointers (a
    segmentation fault): run in a child process so that a regression cannot take the test run down."""
    data = array_with((1, (4, 3072), Reduce(Global('numpy', 'dtype'), ('O', 0, 1)), False, []))
    folder = write_folder(tmp_path, data_batch_3=ca.py2_pickle({'data': data, 'labels': [0] * 4}))
    code = ('import sys, cifar10_utils\n'
            'try:\n    cifar10_utils.load_batches(sys.argv[1])\n'
            'except cifar10_utils.DataError as e:\n    print(e)\n')
    # ALEXNET_VERBOSE=1: quiet.py then leaves TensorFlow unloaded (load_batches needs numpy only), so the
    # child starts in a fraction of a second instead of paying TensorFlow's start-up
    run = subprocess.run([sys.executable, '-c', code, str(folder)], cwd=REPO, capture_output=True, text=True,
                         env=dict(os.environ, ALEXNET_VERBOSE='1'), timeout=120)
    assert run.returncode == 0, run.stderr[-1000:]
    assert "data_batch_3 is not a valid CIFAR-10 batch (refusing numpy.dtype('O'" in run.stdout


@pytest.mark.parametrize('protocol', [3, 4])
def test_a_batch_pickled_by_python3_numpy_is_accepted(tmp_path, protocol):
    """A batch re-pickled under Python 3 (numpy's array encoding unchanged, bytes as BINBYTES) loads too."""
    data = np.random.RandomState(0).randint(0, 256, (5, 3072)).astype(np.uint8)
    raw = pickle.dumps({b'data': data, b'labels': [1, 2, 3, 4, 5]}, protocol=protocol)
    folder = write_folder(tmp_path, data_batch_1=raw)
    images, _, _, _, _ = cu.load_batches(folder)
    assert (images[:5].transpose(0, 3, 1, 2).reshape(5, -1) == data).all()


@pytest.mark.parametrize('changes, message', [
    ({'data_batch_3': None}, 'data_batch_3 is missing'),
    ({'batches.meta': None}, 'batches.meta is missing'),
    ({'data_batch_2': ca.batch_pickle('x', np.zeros((4, 100), np.uint8), [0] * 4, ['a'] * 4)},
     r'data_batch_2 is not a valid CIFAR-10 batch \(refusing an array of shape \(4, 100\): .*N x 3072'),
    ({'test_batch': ca.batch_pickle('x', np.zeros((4, 3072), np.uint8), [0, 1, 10, 2], ['a'] * 4)},
     r'test_batch: labels range 0..10, expected 0..9'),
    ({'data_batch_5': ca.batch_pickle('x', np.zeros((4, 3072), np.uint8), [0, 1], ['a'] * 4)},
     'data_batch_5: 2 labels for 4 images'),
    ({'data_batch_1': ca.meta_pickle(3)}, r"data_batch_1 lacks the key\(s\) \['data', 'labels'\]"),
    ({'data_batch_4': b'not a pickle at all'}, 'data_batch_4 is not a valid CIFAR-10 batch'),
], ids=['missing-batch', 'missing-meta', 'shape', 'label-range', 'label-count', 'no-keys', 'not-a-pickle'])
def test_folder_validation_errors(tmp_path, changes, message):
    folder = write_folder(tmp_path, **changes)
    with pytest.raises(DataError, match=message) as e:
        cu.load_batches(folder)
    assert '\n' not in str(e.value)


def test_load_batches_layout(tmp_path):
    train, train_labels, test, test_labels, names = cu.load_batches(write_folder(tmp_path))
    assert train.shape == (5 * ROWS, 32, 32, 3) and train.dtype == np.uint8
    assert test.shape == (TEST_ROWS, 32, 32, 3) and test_labels.dtype == np.int64
    assert names == cu.CLASS_NAMES and train_labels.tolist() == [i % 10 for i in range(ROWS)] * 5
    row = np.random.RandomState(1).randint(0, 256, size=(ROWS, 3072)).astype(np.uint8)[3]
    for y, x, c in [(0, 1, 0), (1, 0, 2), (31, 30, 1)]:  # row = R plane, G plane, B plane
        assert train[3, y, x, c] == row[c * 1024 + y * 32 + x]


def test_holdout_is_seeded_disjoint_and_balanced():
    labels = np.repeat(np.arange(10), 50)
    train, val = cu.holdout(labels, 100, seed=0)
    assert len(val) == 100 and np.bincount(labels[val]).tolist() == [10] * 10
    assert np.intersect1d(train, val).size == 0 and len(train) + len(val) == 500
    assert np.array_equal(val, cu.holdout(labels, 100, seed=0)[1])
    assert not np.array_equal(val, cu.holdout(labels, 100, seed=1)[1])


# --- load_cifar10 ---------------------------------------------------------------------------

def test_load_cifar10_from_archive_needs_its_md5(tmp_path):
    (tmp_path / 'my-copy.tar.gz').write_bytes(ARCHIVE)
    with pytest.raises(DataError, match=f'pass --md5 {ARCHIVE_MD5}'):
        cu.load_cifar10(tmp_path, val_size=20)
    ds = cu.load_cifar10(tmp_path, val_size=20, seed=0, md5=ARCHIVE_MD5)
    assert ds.name == 'cifar10' and ds.class_names == cu.CLASS_NAMES
    assert (len(ds.train), len(ds.val), len(ds.test)) == (80, 20, TEST_ROWS)
    assert np.bincount(ds.val.labels).tolist() == [2] * 10
    assert ds.train.images.shape == (80, 32, 32, 3) and ds.train.labels.dtype == np.int64
    assert ds.val.images.dtype == np.uint8 and ds.test.images.shape == (TEST_ROWS, 32, 32, 3)
    expected = ds.train.images.astype(np.float64).mean(axis=(0, 1, 2))
    assert np.allclose(ds.mean, expected) and all(isinstance(m, float) for m in ds.mean)
    # the extracted folder is then used as it is, with no archive MD5 to check
    assert (tmp_path / 'cifar-10-batches-py').is_dir()
    again = cu.load_cifar10(tmp_path, val_size=20, seed=0)
    assert np.array_equal(again.val.images, ds.val.images)
    assert cu.load_cifar10(tmp_path, val_size=0).val is None
    with pytest.raises(DataError, match='val_size 100'):
        cu.load_cifar10(tmp_path, val_size=100)


def test_load_cifar10_downloads_into_empty_dir(serve, tmp_path, monkeypatch):
    _, url = serve()
    ds = cu.load_cifar10(tmp_path / 'new', val_size=10, md5=ARCHIVE_MD5, url=url)
    assert (len(ds.train), len(ds.val)) == (90, 10)
    monkeypatch.setattr(cu, 'DEFAULT_CACHE_DIR', str(tmp_path / 'cache'))
    with pytest.raises(DataError, match='cache holds neither.*--dataset demo'):
        cu.load_cifar10(None, download=False)


# --- the CLI ------------------------------------------------------------------------------------

def cli(*args):
    return subprocess.run([sys.executable, str(REPO / 'cifar10_utils.py'), *map(str, args)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.slow          # the script in a child process: TensorFlow's start-up, seconds
def test_cli_downloads_and_summarises(serve, tmp_path):
    _, url = serve()
    run = cli('--data-dir', tmp_path, '--md5', ARCHIVE_MD5, '--url', url, '--val-size', 20)
    assert run.returncode == 0, run.stderr
    assert f'MD5 {ARCHIVE_MD5} matches the --md5 given' in run.stdout
    assert 'images: train 80, val 20, test 30' in run.stdout
    assert [line.split() for line in run.stdout.splitlines() if line.startswith('airplane')] == \
        [['airplane', '8', '2', '3']]
    assert 'mean (RGB, 0..255):' in run.stdout and '100%' in run.stderr


@pytest.mark.slow          # two children, each paying TensorFlow's start-up
def test_cli_errors_exit_2(tmp_path):
    run = cli('--data-dir', write_folder(tmp_path / 'bad', data_batch_1=None).parent)
    assert run.returncode == 2 and run.stderr.startswith('error: ') and 'data_batch_1 is missing' in run.stderr
    assert 'Traceback' not in run.stderr
    (tmp_path / 'copy').mkdir()
    (tmp_path / 'copy' / 'cifar-10-python.tar.gz').write_bytes(ARCHIVE)
    run = cli('--data-dir', tmp_path / 'copy')
    assert run.returncode == 2 and f'pass --md5 {ARCHIVE_MD5}' in run.stderr


# --- real pixels: the real CIFAR-10 JPEGs turned into the official format -------------------------

@pytest.fixture(scope='module')
def real_archive(real_data, tmp_path_factory):
    data = real_data / 'cifar10'
    out = tmp_path_factory.mktemp('real') / 'cifar10-from-jpeg.tar.gz'
    return ca.archive_from_jpegs(data / 'cifar10-train-jpeg.tar.gz', data / 'cifar10-testA-jpeg.tar.gz', out)


@pytest.mark.slow
def test_real_pixels(real_archive, real_data):
    from PIL import Image
    md5 = hashlib.md5(real_archive.read_bytes()).hexdigest()
    ds = cu.load_cifar10(real_archive.parent, md5=md5)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (45000, 5000, 5000)
    assert ds.class_names == cu.CLASS_NAMES
    for split, per_class in [(ds.train, 4500), (ds.val, 500), (ds.test, 500)]:
        assert split.images.shape == (len(split), 32, 32, 3) and split.images.dtype == np.uint8
        assert split.labels.dtype == np.int64 and np.bincount(split.labels).tolist() == [per_class] * 10
    assert all(100 < m < 140 for m in ds.mean)
    assert ds.mean[0] - ds.mean[2] > 5  # CIFAR-10 is redder than blue overall: channels not mixed up
    # one real JPEG appears, pixel for pixel and with its label, among the test images
    with tarfile.open(real_data / 'cifar10' / 'cifar10-testA-jpeg.tar.gz') as tar:
        member = next(m for m in tar if m.isfile())
        jpeg = np.asarray(Image.open(tar.extractfile(member)).convert('RGB'))
    match = np.flatnonzero((ds.test.images == jpeg).all(axis=(1, 2, 3)))
    assert len(match) == 1 and ds.class_names[ds.test.labels[match[0]]] == member.name.split('/')[1]
