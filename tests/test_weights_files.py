"""weights_files.py: hostile weight files end in one error line, fast, in bounded memory, and nothing in
them runs. The .npy files are written here opcode by opcode (pickle protocol 2, as Python 2's
caffe-tensorflow wrote them), the caffemodels with weights_files' code-built message classes."""
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import import_weights
import weights_files
from errors import DataError

REPO = Path(__file__).resolve().parents[1]
CHILD_MEMORY = 4 << 30          # address space for a child import_weights.py (TensorFlow alone: ~2 GB)
CHILD_PEAK_MB = 1000            # a refused file: TensorFlow's start-up (~650 MB resident) and little more
CHILD_SECONDS = 150             # a child is killed after this (TensorFlow's start-up: ~15 s on a busy CPU)


# --- pickles, opcode by opcode -----------------------------------------------------
def glob(module, name):
    return b'c' + module + b'\n' + name + b'\n'


def dtype(code, order=b'<', fields=b'N'):
    """numpy.dtype(code, 0, 1), built with numpy's state (3, order, None, names/fields, ...)."""
    return (glob(b'numpy', b'dtype') + b'U' + bytes([len(code)]) + code + b'K\x00K\x01\x87R'
            + b'(K\x03U\x01' + order + b'N' + fields + fields + b'J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb')


def array(shape, dt, data, bytes_op=b'T', fortran=False):
    """numpy's pickle of an array: _reconstruct(ndarray, (0,), 'b') built with (1, shape, dtype, False,
    data); data as a Python 2 str (T, BINSTRING), or bytes (B, BINBYTES)."""
    dims = b''.join(b'J' + struct.pack('<i', d) for d in shape)
    return (glob(b'numpy.core.multiarray', b'_reconstruct') + glob(b'numpy', b'ndarray') + b'K\x00\x85U\x01b\x87R'
            + b'(K\x01(' + dims + b't' + dt + (b'\x88' if fortran else b'\x89') + bytes_op + struct.pack('<i', len(data)) + data + b'tb')


def write_npy(path, payload):
    """A .npy of an object array whose pickle is `payload` (protocol 2)."""
    with open(path, 'wb') as f:
        np.lib.format.write_array_header_1_0(f, {'descr': '|O', 'fortran_order': False, 'shape': ()})
        f.write(b'\x80\x02' + payload + b'.')
    return path


def object_over_bytes(path):
    """numpy.ndarray((1,), object, 8 bytes of the file): the bytes become an object pointer (SIGSEGV)."""
    return write_npy(path, glob(b'numpy', b'ndarray') + b'(K\x01\x85' + dtype(b'O8', b'|') + b'C\x08' + b'\x41' * 8
                     + b'tR')


def huge_array(path):
    """numpy.ndarray((200000000,), object): 1.6 GB from 200 bytes."""
    return write_npy(path, glob(b'numpy', b'ndarray') + b'(J' + struct.pack('<i', 200_000_000) + b'\x85'
                     + dtype(b'O8', b'|') + b'tR')


def list_bomb(path, depth=40):
    """{'junk': [L0, ..., Ld], 'conv1': [Ld, Ld]}, L(i+1) = [Li, Li] through the memo: 2**d lists unfolded."""
    levels = b''.join(b'(h' + bytes([i]) + b'h' + bytes([i]) + b'lq' + bytes([i + 1]) for i in range(depth))
    return write_npy(path, b'}(U\x04junk(]q\x00' + levels + b'lU\x05conv1(h' + bytes([depth]) + b'h'
                     + bytes([depth]) + b'lu')


def tuple_key_bomb(path, depth=40):
    """{'junk': [T0, ..., Td], Td: 'x'}, T(i+1) = (Ti, Ti): hashing the key Td visits 2**d tuples."""
    levels = b''.join(b'h' + bytes([i]) + b'h' + bytes([i]) + b'\x86q' + bytes([i + 1]) for i in range(depth))
    return write_npy(path, b'}(U\x04junk()q\x00' + levels + b'lh' + bytes([depth]) + b'U\x01xu')


HOSTILE_NPY = {object_over_bytes: 'numpy.ndarray directly', huge_array: 'numpy.ndarray directly',
               list_bomb: 'is a list', tuple_key_bomb: 'dict key that is a tuple'}


# A child's peak memory, measured by a small Python in between: Linux counts a forked child's peak from
# its parent's at the fork, and this test's own process may hold gigabytes after the rest of the suite.
MEASURE = """import os, resource, subprocess, sys
limit = int(sys.argv[1])
child = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
_, status, usage = os.wait4(child.pid, 0)
sys.stderr.write(f'\\nPEAK_KB {usage.ru_maxrss}\\n')
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_limited(args, cwd):
    """Start a child with CHILD_MEMORY of address space, behind MEASURE: (process, stderr file, start)."""
    err = Path(cwd) / f'stderr-{len(os.listdir(cwd))}.txt'
    start = time.monotonic()
    with open(err, 'w') as f:
        child = subprocess.Popen([sys.executable, '-c', MEASURE, str(CHILD_MEMORY), *args], cwd=cwd,
                                 stdout=subprocess.DEVNULL, stderr=f, start_new_session=True)
    return child, err, start


def wait_limited(child, err, start):
    """(exit code, stderr, seconds, peak resident MB) of a run_limited child, killed after CHILD_SECONDS."""
    try:
        child.wait(CHILD_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    text = err.read_text()
    peak = text.rsplit('PEAK_KB ', 1)
    peak_mb = int(peak[1].split()[0]) / 1024 if len(peak) == 2 else float('inf')
    return child.returncode, peak[0].rstrip('\n') + '\n', time.monotonic() - start, peak_mb


# --- .npy ---------------------------------------------------------------------------
@pytest.mark.slow          # import_weights.py in child processes: TensorFlow's start-up, seconds each
def test_hostile_npy_files_are_one_line_errors_in_bounded_time_and_memory(tmp_path):
    """Before: SIGSEGV; +1.5 GB; 5 GB and out of memory; still hashing after 70 s."""
    children = {}
    for make in HOSTILE_NPY:
        path = make(tmp_path / f'{make.__name__}.npy')
        assert path.stat().st_size < 500
        train_dir = tmp_path / f'run_{make.__name__}'
        children[make] = (train_dir, run_limited([sys.executable, str(REPO / 'import_weights.py'), str(path),
                                                  '--train-dir', str(train_dir)], tmp_path))
    for make, (train_dir, child) in children.items():
        code, err, seconds, peak_mb = wait_limited(*child)
        errors = [line for line in err.splitlines() if line.startswith('error: ')]
        assert code == 2 and len(errors) == 1 and 'Traceback' not in err, (make.__name__, code, err[-2000:])
        assert HOSTILE_NPY[make] in errors[0] and 'give' in errors[0], errors
        assert seconds < CHILD_SECONDS / 2 and peak_mb < CHILD_PEAK_MB, (make.__name__, seconds, peak_mb)
        assert not train_dir.exists()


def test_hostile_npy_files_are_refused_before_anything_is_built(tmp_path):
    for make, words in HOSTILE_NPY.items():
        start = time.monotonic()
        with pytest.raises(DataError, match=words):
            weights_files.load_npy_dict(str(make(tmp_path / f'{make.__name__}.npy')))
        assert time.monotonic() - start < 1, make.__name__


def test_arrays_must_be_float_and_hold_the_bytes_they_declare(tmp_path):
    f4 = dtype(b'f4')
    cases = {  # payload: words of the error
        b'}U\x05conv1' + array((2,), dtype(b'O8', b'|'), b'\x41' * 16, b'B') + b's': 'object array from a bytes',
        b'}U\x05conv1' + array((200_000_000,), f4, b'\x00' * 8) + b's': 'shape [200000000] of float32',
        b'}U\x05conv1' + array((-2, -1), f4, b'\x00' * 8) + b's': 'shape [-2, -1]',
        b'}U\x05conv1' + array((1, 1, 1, 1, 2), f4, b'\x00' * 8) + b's': 'up to 4 sizes',
        b'}U\x05conv1' + array((2,), dtype(b'i8'), b'\x00' * 16) + b's': 'dtype i8',
        b'}U\x05conv1' + array((2,), dtype(b'f4', b'|', b')'), b'\x00' * 8) + b's': 'fields',
        b'}U\x05conv1' + glob(b'numpy', b'dtype') + b's': 'layer conv1 is a numpy function',
        b'}U\x05conv1(' + b'K\x01' * (weights_files.MAX_PICKLE_OPS + 1) + b'ls': 'more than 100,000 opcodes',
        b'}U\x05conv1' + glob(b'posix', b'system') + b'(U\x05touch\x85Rs': 'asks for posix.system',
        b'}U\x05conv1Q': 'opcode BINPERSID',
        b'}U\x05conv1' + array((2,), f4, b'\x00' * 8)[:-20]: 'unreadable',
    }
    for n, (payload, words) in enumerate(cases.items()):
        with pytest.raises(DataError, match=words.replace('[', r'\[').replace('(', r'\(')):
            weights_files.load_npy_dict(str(write_npy(tmp_path / f'{n}.npy', payload)))


def test_python2_files_read_as_numpy_would(tmp_path):
    """BINSTRING data (Python 2's str), both byte orders, Fortran order, list and dict layers."""
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    fortran = array((2, 3), dtype(b'f4'), w.T.tobytes(), fortran=True)
    payload = (b'}(U\x03fc7(' + array((2, 3), dtype(b'f4'), w.tobytes()) + array((2,), dtype(b'f8', b'>'),
               np.array([1.5, 2.5], '>f8').tobytes()) + b'lU\x03fc8}(U\x07weights' + fortran + b'U\x06biases'
               + glob(b'numpy.core.multiarray', b'scalar') + dtype(b'f4') + b'U\x04' + np.float32(2.5).tobytes()
               + b'\x86Ruu')
    got = weights_files.load_npy_dict(str(write_npy(tmp_path / 'py2.npy', payload)))
    np.testing.assert_array_equal(got['fc7'][0], w)
    np.testing.assert_array_equal(got['fc7'][1], [1.5, 2.5])
    np.testing.assert_array_equal(got['fc8']['weights'], w)
    assert got['fc8']['biases'] == 2.5
    saved = tmp_path / 'saved.npy'
    np.save(saved, {'fc8': [w, np.float64(3)]}, allow_pickle=True)        # today's numpy, protocol 3
    got = weights_files.load_npy_dict(str(saved))
    np.testing.assert_array_equal(got['fc8'][0], w)


# --- .caffemodel ----------------------------------------------------------------------
def caffemodel(path, weight_dims, values):
    """A `layer`-encoded model whose conv1 weights blob has shape.dim `weight_dims` and `values` floats."""
    m = weights_files.caffe_messages()
    net = m['NetParameter'](name='AlexNet')
    layer = net.layer.add(name='conv1', type='Convolution')
    weights, biases = layer.blobs.add(), layer.blobs.add()
    weights.shape.dim.extend(weight_dims)
    weights.data.extend([0.0] * values)
    biases.shape.dim.append(96)
    biases.data.extend([0.0] * 96)
    Path(path).write_bytes(net.SerializeToString())
    return path


def test_hostile_caffemodels_are_one_line_errors_fast(tmp_path, capsys):
    """Before: ValueError tracebacks (negative dims, a huge shape), half an hour of math.prod (a million dims)."""
    cases = [(caffemodel(tmp_path / 'negative.caffemodel', [-96, -3, 11, 11], 96 * 3 * 11 * 11),
              ['conv1 weights', '[-96, -3, 11, 11]', '[96, 3, 11, 11]']),
             (caffemodel(tmp_path / 'huge.caffemodel', [0, 1 << 62, 11, 11], 0), ['conv1 weights', 'wanted']),
             (caffemodel(tmp_path / 'dims.caffemodel', [(1 << 62) - 1] * 1_000_000, 0),
              ['conv1 weights', '1000000 dimensions'])]
    for path, words in cases:
        start = time.monotonic()
        assert import_weights.main([str(path), '--train-dir', str(tmp_path / 'run')]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith('error: ') and len(err[0]) < 400, err
        assert all(word in err[0] for word in words), (words, err)
        assert time.monotonic() - start < 10, path
        assert not (tmp_path / 'run').exists()
