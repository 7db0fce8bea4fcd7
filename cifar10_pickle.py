"""Reading CIFAR-10's batch files, Python-2 pickles, without running anything in them.

A batch file is untrusted input: the unpickler below builds only dicts, lists, strings,
numbers and uint8 pixel arrays of at most MAX_ROWS x ROW_SIZE, so memory is bounded by the
file's size and no global of the file's choosing is ever called.
"""
import pickle

import numpy as np

from errors import DataError

ROW_SIZE = 32 * 32 * 3  # one image per row: 1024 red, then 1024 green, then 1024 blue
MAX_ROWS = 10000        # images per batch file: the official batches hold exactly this many


# numpy pickles an array as _reconstruct(ndarray, (0,), b'b') followed by __setstate__((1, shape,
# dtype, is_fortran, raw bytes)), the dtype as dtype('u1', 0, 1) with the state (3, '|', None, None,
# None, -1, -1, 0). The unpickler below hands out stand-ins for exactly those three names: they
# build a C-ordered uint8 array of N x 3072 pixels (N <= MAX_ROWS) from exactly N x 3072 bytes and
# refuse anything else, so numpy.ndarray can never be called with a shape, buffer or strides of
# the file's choosing.

class _Refused(pickle.UnpicklingError):
    pass


class _NdarrayName:
    """numpy.ndarray, as _reconstruct's first argument; calling it is refused."""
    __slots__ = ()

    def __call__(self, *args, **kwargs):
        raise _Refused('refusing to call numpy.ndarray: CIFAR-10 batches build arrays only '
                       'through numpy.core.multiarray._reconstruct')


class _Uint8Dtype:
    """numpy.dtype('u1') (the only dtype of a batch); its pickled state must be numpy's."""
    __slots__ = ()

    def __setstate__(self, state):
        if state != (3, '|', None, None, None, -1, -1, 0):
            raise _Refused(f'refusing a uint8 dtype with the state {str(state)[:80]}')


class _MakeDtype:
    __slots__ = ()

    def __call__(self, name=None, align=0, copy=1, *rest):
        if name not in ('u1', b'u1') or rest:
            raise _Refused(f'refusing numpy.dtype{str((name, align, copy) + rest)[:80]}: '
                           f'CIFAR-10 pixels are uint8 (u1)')
        return _Uint8Dtype()


class _PendingArray:
    """What _reconstruct returns; __setstate__ then checks numpy's array state and builds the array."""
    __slots__ = ('array',)

    def __init__(self):
        self.array = None

    def __setstate__(self, state):
        if self.array is not None or not (isinstance(state, tuple) and len(state) == 5):
            raise _Refused('refusing an array state that is not numpy\'s (version, shape, dtype, '
                           'is_fortran, data)')
        version, shape, dtype, fortran, raw = state
        if version != 1 or not isinstance(dtype, _Uint8Dtype) or fortran not in (False, 0):
            raise _Refused('refusing an array that is not a C-ordered uint8 array as numpy pickles one')
        if not (isinstance(shape, tuple) and len(shape) == 2
                and all(type(n) is int for n in shape) and shape[1] == ROW_SIZE):
            raise _Refused(f'refusing an array of shape {str(shape)[:80]}: CIFAR-10 batches hold '
                           f'N x {ROW_SIZE} pixels')
        if not 1 <= shape[0] <= MAX_ROWS:
            raise _Refused(f'refusing an array of {shape[0]} rows: a CIFAR-10 batch holds 1 to '
                           f'{MAX_ROWS} images')
        if isinstance(raw, str):       # a Python-2 str, decoded as latin-1 by the unpickler
            raw = raw.encode('latin1')
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != shape[0] * ROW_SIZE:
            size = len(raw) if isinstance(raw, (bytes, bytearray)) else type(raw).__name__
            raise _Refused(f'refusing an array of {shape[0]} x {ROW_SIZE} pixels with {size} bytes '
                           f'of data (expected {shape[0] * ROW_SIZE})')
        self.array = np.frombuffer(bytes(raw), np.uint8).reshape(shape)


class _Reconstruct:
    """numpy.core.multiarray._reconstruct, as numpy's pickles call it: (ndarray, (0,), b'b') only."""
    __slots__ = ()

    def __call__(self, cls=None, shape=None, typecode=None, *rest):
        if not isinstance(cls, _NdarrayName) or shape != (0,) or typecode not in ('b', b'b') or rest:
            raise _Refused('refusing a numpy _reconstruct call other than numpy\'s own '
                           '_reconstruct(ndarray, (0,), b"b")')
        return _PendingArray()


# The only globals the official batches refer to, each replaced by its checked stand-in.
SAFE_GLOBALS = {('numpy.core.multiarray', '_reconstruct'): _Reconstruct(),
                ('numpy._core.multiarray', '_reconstruct'): _Reconstruct(),
                ('numpy', 'ndarray'): _NdarrayName(), ('numpy', 'dtype'): _MakeDtype()}


class _SafeUnpickler(pickle.Unpickler):
    """Builds only uint8 pixel arrays, dicts, lists, strings and numbers: no code can run."""

    def find_class(self, module, name):
        if (module, name) not in SAFE_GLOBALS:
            raise pickle.UnpicklingError(f'refusing to load {module}.{name}')
        return SAFE_GLOBALS[module, name]

    def persistent_load(self, pid):
        raise pickle.UnpicklingError('refusing a persistent id')


def load(path):
    """Return the dict in one batch file, keys as str (Python 2 wrote them as bytes).

    A missing file raises FileNotFoundError (the caller knows which folder it should be in).
    """
    try:
        with open(path, 'rb') as f:
            obj = _SafeUnpickler(f, encoding='latin1').load()
    except FileNotFoundError:
        raise
    except Exception as e:  # any malformed or malicious pickle
        raise DataError(f'{path} is not a valid CIFAR-10 batch ({e})')
    if not isinstance(obj, dict):
        raise DataError(f'{path} holds a {type(obj).__name__}, not a CIFAR-10 batch dict')
    out = {}
    for k, v in obj.items():
        if isinstance(v, _PendingArray):
            if v.array is None:
                raise DataError(f'{path} is not a valid CIFAR-10 batch (an array without its data)')
            v = v.array
        out[k.decode('latin1') if isinstance(k, bytes) else k] = v
    return out
