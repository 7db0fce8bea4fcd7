"""Tests for cifar10_utils: download (local HTTP server only), safe extraction,
the restricted unpickler, folder validation, the Dataset, the CLI, and real pixels."""
import hashlib
import importlib.util
import io
import os
import subprocess
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

import cifar10_utils as cu
from datasets import DataError

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / 'shared'
TOOL = SHARED / 'tools' / 'make_cifar10_archive.py'
ROWS, TEST_ROWS = 20, 30  # per training batch (2 per class), in the test batch


def _tool():
    """The shared archive tool, whose pickle writer produces the exact Python-2 format."""
    assert TOOL.exists(), f'missing {TOOL}: clone the repo with shared/ beside it'
    spec = importlib.util.spec_from_file_location('make_cifar10_archive', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _tool()


def batch_bytes(seed, n):
    rng = np.random.RandomState(seed)
    data = rng.randint(0, 256, size=(n, 3072)).astype(np.uint8)
    labels = [i % 10 for i in range(n)]
    return tool.batch_pickle(f'batch {seed}', data, labels, [f'{i}.png' for i in range(n)])


def batch_files():
    files = {'batches.meta': tool.meta_pickle(ROWS)}
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


# --- a local HTTP server -----------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    """Serves server.body at /cifar-10-python.tar.gz; server.mode: 'plain' ignores Range,
    'range' honours it, 'cut' drops the connection halfway through the body."""

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
        self.send_header('Content-Length', str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        self.wfile.write(payload[:len(payload) // 2] if self.server.mode == 'cut' else payload)

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
])
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


@pytest.mark.parametrize('changes, message', [
    ({'data_batch_3': None}, 'data_batch_3 is missing'),
    ({'batches.meta': None}, 'batches.meta is missing'),
    ({'data_batch_2': tool.batch_pickle('x', np.zeros((4, 100), np.uint8), [0] * 4, ['a'] * 4)},
     r'data_batch_2: data has shape \(4, 100\).*expected N x 3072 uint8'),
    ({'test_batch': tool.batch_pickle('x', np.zeros((4, 3072), np.uint8), [0, 1, 10, 2], ['a'] * 4)},
     r'test_batch: labels range 0..10, expected 0..9'),
    ({'data_batch_5': tool.batch_pickle('x', np.zeros((4, 3072), np.uint8), [0, 1], ['a'] * 4)},
     'data_batch_5: 2 labels for 4 images'),
    ({'data_batch_1': tool.meta_pickle(3)}, r"data_batch_1 lacks the key\(s\) \['data', 'labels'\]"),
    ({'data_batch_4': b'not a pickle at all'}, 'data_batch_4 is not a valid CIFAR-10 batch'),
])
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
    assert ds.name == 'cifar10' and ds.class_names == cu.CLASS_NAMES and ds.resize_size == 256
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


def test_cli_downloads_and_summarises(serve, tmp_path):
    _, url = serve()
    run = cli('--data-dir', tmp_path, '--md5', ARCHIVE_MD5, '--url', url, '--val-size', 20)
    assert run.returncode == 0, run.stderr
    assert f'MD5 {ARCHIVE_MD5} matches the --md5 given' in run.stdout
    assert 'images: train 80, val 20, test 30' in run.stdout
    assert [line.split() for line in run.stdout.splitlines() if line.startswith('airplane')] == \
        [['airplane', '8', '2', '3']]
    assert 'mean (RGB, 0..255):' in run.stdout and '100%' in run.stderr


def test_cli_errors_exit_2(tmp_path):
    run = cli('--data-dir', write_folder(tmp_path / 'bad', data_batch_1=None).parent)
    assert run.returncode == 2 and run.stderr.startswith('error: ') and 'data_batch_1 is missing' in run.stderr
    assert 'Traceback' not in run.stderr
    (tmp_path / 'copy').mkdir()
    (tmp_path / 'copy' / 'cifar-10-python.tar.gz').write_bytes(ARCHIVE)
    run = cli('--data-dir', tmp_path / 'copy')
    assert run.returncode == 2 and f'pass --md5 {ARCHIVE_MD5}' in run.stderr


# --- real pixels: the shared JPEGs turned into the official format -----------------------------

@pytest.fixture(scope='module')
def real_archive(tmp_path_factory):
    data = SHARED / 'data' / 'cifar10'
    assert data.is_dir(), f'missing {data}: clone the repo with shared/ beside it'
    out = tmp_path_factory.mktemp('real') / 'cifar10-from-jpeg.tar.gz'
    subprocess.run([sys.executable, str(TOOL), str(out)], check=True, timeout=300)
    return out


def test_real_pixels(real_archive):
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
    with tarfile.open(SHARED / 'data' / 'cifar10' / 'cifar10-testA-jpeg.tar.gz') as tar:
        member = next(m for m in tar if m.isfile())
        jpeg = np.asarray(Image.open(tar.extractfile(member)).convert('RGB'))
    match = np.flatnonzero((ds.test.images == jpeg).all(axis=(1, 2, 3)))
    assert len(match) == 1 and ds.class_names[ds.test.labels[match[0]]] == member.name.split('/')[1]
