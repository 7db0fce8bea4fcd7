"""Reading untrusted weight files: caffemodel and caffe-tensorflow .npy, bounded by their size.

What a file given to import_weights.py can do (the guarantee; docs/reliability.md quotes it):
nothing in it runs, and nothing in it is trusted before it is checked. A bad file ends in a
one-line `error:` that says what is wrong and what to give instead, with nothing written;
reading it takes memory and time bounded by its size (at most a few times its bytes, a
released 233 MB file included), whatever its content declares.

  * .caffemodel: parsed by the `protobuf` package (linear in the file's size) with message
    types built in code (caffe_messages). Each weight blob's shape is checked before any
    arithmetic on it: at most MAX_RANK dimensions, all positive, equal to the layer table's
    shape (up to dimensions of 1), and exactly that many values present.
  * .npy: its pickle is never given to pickle or numpy's loader. NpyPickle interprets it
    itself, opcode by opcode (at most MAX_PICKLE_OPS), admitting only what caffe-tensorflow
    writes: dicts with string keys, lists and tuples, strings, numbers, and numpy arrays and
    scalars of NPY_DTYPES, each array's declared shape x itemsize equal to the bytes present
    in the file before it is built. Any other global (os.system, ...), numpy.ndarray called
    directly, an object array (except np.save's 0-d wrapper of the dict, from a list),
    persistent ids or other opcodes are refused. The result must be a dict of layer name ->
    {name: array} or [arrays]; nothing else is walked.
"""
import io
import math
import pickletools

import numpy as np

from errors import DataError

MAX_RANK = 4                     # bvlc_alexnet's blobs: conv [out, in, h, w]; old Caffe's fc blobs 4-D with 1s
MAX_PICKLE_OPS = 100_000         # a caffe-tensorflow bvlc_alexnet.npy has about 250 pickle opcodes
NPY_DTYPES = ('f4', 'f8')        # the arrays caffe-tensorflow writes: float32 (and float64)
OBJECT_DTYPE = 'O8'              # np.save's 0-d object array around the pickled dict
BYTE_ORDERS = ('<', '>', '=', '|')
V1_CONVOLUTION, V1_INNER_PRODUCT = 4, 14                               # V1LayerParameter.LayerType
LAYER_TYPES = {'conv': 'Convolution', 'fc': 'InnerProduct'}          # LayerParameter.type
CAFFE_LAYOUT = "Caffe's [out, in/group, h, w] and [out, in]"
GIVE = "give Caffe's bvlc_alexnet.caffemodel or caffe-tensorflow's bvlc_alexnet.npy"


def shape_text(shape):
    return '[' + ', '.join(str(int(d)) for d in shape) + ']'


# --- Caffe's protobuf messages, built in code --------------------------------
_MESSAGES = None


def caffe_messages():
    """Message classes {'NetParameter', 'LayerParameter', 'V1LayerParameter', 'BlobProto', 'BlobShape'}
    with Caffe's field numbers (caffe.proto), declared only as far as this import reads them.
    Built in a private descriptor pool, so they clash with no other 'caffe' package."""
    global _MESSAGES
    if _MESSAGES is not None:
        return _MESSAGES
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name='alexnet_import_caffe.proto', package='caffe',
                                               syntax='proto2')

    def message(name, fields, enums=()):
        m = proto.message_type.add(name=name)
        for enum_name, values in enums:
            e = m.enum_type.add(name=enum_name)
            for value_name, number in values:
                e.value.add(name=value_name, number=number)
        for field_name, number, kind, label, type_name, packed in fields:
            f = m.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                f.type_name = type_name
            if packed:
                f.options.packed = True

    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    message('BlobShape', [('dim', 1, F.TYPE_INT64, rep, None, True)])
    message('BlobProto', [('num', 1, F.TYPE_INT32, opt, None, False),
                          ('channels', 2, F.TYPE_INT32, opt, None, False),
                          ('height', 3, F.TYPE_INT32, opt, None, False),
                          ('width', 4, F.TYPE_INT32, opt, None, False),
                          ('data', 5, F.TYPE_FLOAT, rep, None, True),
                          ('shape', 7, F.TYPE_MESSAGE, opt, '.caffe.BlobShape', False)])
    message('LayerParameter', [('name', 1, F.TYPE_STRING, opt, None, False),
                               ('type', 2, F.TYPE_STRING, opt, None, False),
                               ('blobs', 7, F.TYPE_MESSAGE, rep, '.caffe.BlobProto', False)])
    # V1LayerParameter.LayerType, all of caffe.proto's values (test files write the non-weight layers too)
    layer_types = [('NONE', 0), ('ABSVAL', 35), ('ACCURACY', 1), ('ARGMAX', 30), ('BNLL', 2), ('CONCAT', 3),
                   ('CONTRASTIVE_LOSS', 37), ('CONVOLUTION', V1_CONVOLUTION), ('DATA', 5),
                   ('DECONVOLUTION', 39), ('DROPOUT', 6), ('DUMMY_DATA', 32), ('EUCLIDEAN_LOSS', 7),
                   ('ELTWISE', 25), ('EXP', 38), ('FLATTEN', 8), ('HDF5_DATA', 9), ('HDF5_OUTPUT', 10),
                   ('HINGE_LOSS', 28), ('IM2COL', 11), ('IMAGE_DATA', 12), ('INFOGAIN_LOSS', 13),
                   ('INNER_PRODUCT', V1_INNER_PRODUCT), ('LRN', 15), ('MEMORY_DATA', 29),
                   ('MULTINOMIAL_LOGISTIC_LOSS', 16), ('MVN', 34), ('POOLING', 17), ('POWER', 26),
                   ('RELU', 18), ('SIGMOID', 19), ('SIGMOID_CROSS_ENTROPY_LOSS', 27), ('SILENCE', 36),
                   ('SOFTMAX', 20), ('SOFTMAX_LOSS', 21), ('SPLIT', 22), ('SLICE', 33), ('TANH', 23),
                   ('WINDOW_DATA', 24), ('THRESHOLD', 31)]
    message('V1LayerParameter', [('name', 4, F.TYPE_STRING, opt, None, False),
                                 ('type', 5, F.TYPE_ENUM, opt, '.caffe.V1LayerParameter.LayerType', False),
                                 ('blobs', 6, F.TYPE_MESSAGE, rep, '.caffe.BlobProto', False)],
            enums=[('LayerType', layer_types)])
    message('NetParameter', [('name', 1, F.TYPE_STRING, opt, None, False),
                             ('layers', 2, F.TYPE_MESSAGE, rep, '.caffe.V1LayerParameter', False),
                             ('layer', 100, F.TYPE_MESSAGE, rep, '.caffe.LayerParameter', False)])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    _MESSAGES = {m.name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f'caffe.{m.name}'))
                 for m in proto.message_type}
    return _MESSAGES


# --- .caffemodel ----------------------------------------------------------------
def _blob_array(blob, wanted, where):
    """A BlobProto's values shaped `wanted`. Its own shape (`shape.dim`, or old Caffe's num/channels/
    height/width) is checked first, without arithmetic on it: at most MAX_RANK positive dimensions,
    `wanted` up to dimensions of 1; then the number of values."""
    if blob.HasField('shape'):
        rank = len(blob.shape.dim)
        if rank > MAX_RANK:
            raise DataError(f'{where} has {rank} dimensions, wanted {shape_text(wanted)} ({CAFFE_LAYOUT}): '
                            f'not bvlc_alexnet; {GIVE}')
        dims = [int(d) for d in blob.shape.dim]
    else:
        dims = [blob.num, blob.channels, blob.height, blob.width]
        while len(dims) > 1 and dims[0] == 0:      # unset leading fields of a short legacy blob
            dims = dims[1:]
    ones = lambda shape: [d for d in shape if d != 1]      # noqa: E731
    if min(dims, default=0) <= 0 or ones(dims) != ones(wanted):
        raise DataError(f'{where}: found shape {shape_text(dims)}, wanted {shape_text(wanted)} float '
                        f'({CAFFE_LAYOUT})')
    if len(blob.data) != math.prod(wanted):
        raise DataError(f'{where} holds {len(blob.data)} values for its shape {shape_text(dims)}: the file is '
                        f'truncated or not a Caffe model')
    return np.array(blob.data, np.float32).reshape(wanted)


def _parse_net(path):
    """The NetParameter of a .caffemodel (protobuf's parse: linear in the file's size)."""
    from google.protobuf.message import DecodeError
    with open(path, 'rb') as f:
        content = f.read()
    net = caffe_messages()['NetParameter']()
    try:
        net.ParseFromString(content)
    except (DecodeError, RuntimeError, ValueError) as e:
        from google.protobuf.internal import api_implementation
        hint = ''
        if len(content) > 64 << 20 and api_implementation.Type() == 'cpp':
            hint = ("; protobuf's old C++ backend may stop at 64 MB: upgrade protobuf or run with "
                    "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python")
        raise DataError(f'{path}: not a Caffe model (a NetParameter protobuf), or truncated: {e}{hint}') from None
    return net


def read_caffemodel(path, shapes):
    """({layer: (weights, biases) in Caffe's layouts, or the DataError of that layer}, encoding) for the
    layers of `shapes` ({layer: (weight shape, bias shape)}) found in a .caffemodel."""
    net = _parse_net(path)
    if len(net.layer):
        layers, encoding = net.layer, 'layer'
        kind_of = lambda layer: layer.type                            # noqa: E731
    elif len(net.layers):
        layers, encoding = net.layers, 'layers'
        v1_names = {V1_CONVOLUTION: LAYER_TYPES['conv'], V1_INNER_PRODUCT: LAYER_TYPES['fc']}
        kind_of = lambda layer: v1_names.get(layer.type, f'V1 type {layer.type}')   # noqa: E731
    else:
        raise DataError(f'{path}: not a Caffe model: no layers in it (NetParameter field 100 or 2)')
    found = {}
    for layer in layers:
        if layer.name not in shapes:
            continue                              # data, relu, norm, pool, dropout, softmax: no weights
        if layer.name in found:
            raise DataError(f'{path}: layer {layer.name} appears twice')
        wanted_type = LAYER_TYPES['conv' if layer.name.startswith('conv') else 'fc']
        try:                                      # a problem is reported in the table's order (by the caller)
            if kind_of(layer) != wanted_type:
                raise DataError(f'{path}: layer {layer.name} is a {kind_of(layer)} layer, wanted {wanted_type}')
            if len(layer.blobs) != 2:
                raise DataError(f'{path}: layer {layer.name} has {len(layer.blobs)} blobs, wanted 2 '
                                f'(weights and biases)')
            found[layer.name] = tuple(_blob_array(b, wanted, f'{path}: layer {layer.name} {what}')
                                      for b, wanted, what in zip(layer.blobs, shapes[layer.name],
                                                                 ('weights', 'biases')))
        except DataError as e:
            found[layer.name] = e
    return found, encoding


# --- caffe-tensorflow's .npy: its pickle, interpreted here ------------------------
class _Global:
    """A numpy name the pickle asks for (GLOBAL), as a stand-in: only NpyPickle.call gives it meaning."""
    __slots__ = ('name',)

    def __init__(self, name):
        self.name = name


_NUMPY_GLOBALS = {**{(m, n): n for m in ('numpy.core.multiarray', 'numpy._core.multiarray')   # numpy 1.x, 2.x
                     for n in ('_reconstruct', 'scalar')},
                  ('numpy', 'ndarray'): 'ndarray', ('numpy', 'dtype'): 'dtype'}


class _Dtype:
    """numpy.dtype(code) of NPY_DTYPES or OBJECT_DTYPE; its pickled state may set the byte order only."""
    __slots__ = ('code', 'dtype')

    def __init__(self, code):
        self.code, self.dtype = code, np.dtype(code)


class _Array:
    """numpy's _reconstruct(ndarray, ...): empty until its state (BUILD) gives shape, dtype and data."""
    __slots__ = ('value',)

    def __init__(self, value=None):
        self.value = value


def _kind(obj):
    """What an object of the pickle is, in a few words (never its content)."""
    if type(obj) is _Array:
        return 'object array' if type(obj.value) is list else 'array'
    return {_Global: 'numpy function', _Dtype: 'dtype'}.get(type(obj), type(obj).__name__)


VALUE_OPS = {'INT', 'BININT', 'BININT1', 'BININT2', 'LONG', 'LONG1', 'LONG4', 'FLOAT', 'BINFLOAT',
             'STRING', 'BINSTRING', 'SHORT_BINSTRING', 'BINBYTES', 'SHORT_BINBYTES', 'BINBYTES8',
             'UNICODE', 'SHORT_BINUNICODE', 'BINUNICODE', 'BINUNICODE8'}   # push their argument
CONSTANT_OPS = {'NONE': None, 'NEWTRUE': True, 'NEWFALSE': False}
SKIPPED_OPS = {'PROTO', 'FRAME'}


def _short(text, limit=80):
    return text if len(text) <= limit else text[:limit] + '...'


class NpyPickle:
    """The object a .npy's pickle describes, built by interpreting its opcodes here (pickletools.genops
    reads them and their arguments, never more bytes than are there), admitting what the module
    docstring lists: every opcode does work bounded by what it takes from the stack."""

    def __init__(self, path, payload):
        self.path, self.payload = path, payload
        self.stack, self.marks, self.memo = [], [], {}

    def refuse(self, what):
        return DataError(f"{self.path}: refused: its pickle {what}, which caffe-tensorflow's files never hold "
                         f"(nothing was run); {GIVE}")

    def load(self):
        """The pickled object (numpy arrays as _Array, dtypes as _Dtype)."""
        try:
            for count, (op, arg, _) in enumerate(pickletools.genops(io.BytesIO(self.payload))):
                if count >= MAX_PICKLE_OPS:
                    raise self.refuse(f'has more than {MAX_PICKLE_OPS:,} opcodes')
                if op.name == 'STOP':
                    if len(self.stack) != 1 or self.marks:
                        raise ValueError('the stack does not end with one object')
                    return self.stack.pop()
                self.step(op.name, arg)
        except DataError:
            raise
        except (ValueError, IndexError, KeyError, TypeError, UnicodeError, OverflowError) as e:
            raise DataError(f'{self.path}: unreadable pickled payload ({type(e).__name__}: '
                            f'{_short(str(e), 200)}): truncated or not a .npy of caffe-tensorflow; {GIVE}') from None
        raise DataError(f'{self.path}: unreadable pickled payload: it has no end (STOP); {GIVE}')

    def step(self, name, arg):
        s = self.stack
        if name in SKIPPED_OPS:
            return
        if name in VALUE_OPS:
            s.append(arg)
        elif name in CONSTANT_OPS:
            s.append(CONSTANT_OPS[name])
        elif name == 'MARK':
            self.marks.append(len(s))
        elif name in ('EMPTY_TUPLE', 'EMPTY_LIST', 'EMPTY_DICT'):
            s.append(() if name == 'EMPTY_TUPLE' else [] if name == 'EMPTY_LIST' else {})
        elif name in ('TUPLE1', 'TUPLE2', 'TUPLE3'):
            n = int(name[-1])
            if len(s) < n:
                raise IndexError(f'{name} on a stack of {len(s)}')
            items = tuple(s[-n:])
            del s[-n:]
            s.append(items)
        elif name in ('TUPLE', 'LIST', 'DICT'):
            items = self.pop_mark()
            s.append(tuple(items) if name == 'TUPLE' else items if name == 'LIST' else self.setitems({}, items))
        elif name in ('APPEND', 'APPENDS', 'SETITEM', 'SETITEMS'):
            items = self.pop_mark() if name.endswith('S') else [s.pop()] if name == 'APPEND' else s[-2:]
            if name == 'SETITEM':
                del s[-2:]
            if not s:
                raise IndexError(f'{name} on an empty stack')
            if name.startswith('APPEND'):
                self.append(s[-1], items)
            else:
                self.setitems(s[-1], items)
        elif name in ('PUT', 'BINPUT', 'LONG_BINPUT', 'MEMOIZE'):
            self.memo[len(self.memo) if name == 'MEMOIZE' else arg] = s[-1]
        elif name in ('GET', 'BINGET', 'LONG_BINGET'):
            s.append(self.memo[arg])
        elif name in ('GLOBAL', 'STACK_GLOBAL'):
            module, attribute = arg.split(' ', 1) if name == 'GLOBAL' else s[-2:]
            if name == 'STACK_GLOBAL':
                del s[-2:]
            s.append(self.find(module, attribute))
        elif name == 'REDUCE':
            args = s.pop()
            s.append(self.call(s.pop(), args))
        elif name == 'BUILD':
            state = s.pop()
            self.build(s[-1], state)
        else:
            raise self.refuse(f'uses the opcode {name}')

    def pop_mark(self):
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def append(self, target, items):
        if type(target) is not list:
            raise TypeError(f'APPEND to a {_kind(target)}')
        target.extend(items)

    def setitems(self, target, items):
        """Keys are names (str) only: hashing anything else (a tuple of tuples of ...) could take forever."""
        if type(target) is not dict or len(items) % 2:
            raise TypeError(f'SETITEM on a {_kind(target)}')
        for key in items[::2]:
            if type(key) is not str:
                raise self.refuse(f'has a dict key that is a {_kind(key)}, not a name')
        target.update(zip(items[::2], items[1::2]))
        return target

    def find(self, module, name):
        if type(module) is not str or type(name) is not str:
            raise TypeError('a global named by something other than strings')
        if (module, name) not in _NUMPY_GLOBALS:
            raise self.refuse(f'asks for {_short(module)}.{_short(name)}')
        return _Global(_NUMPY_GLOBALS[module, name])

    def call(self, func, args):
        """REDUCE: numpy's _reconstruct (an empty _Array), dtype (a _Dtype) or scalar (a number)."""
        if type(func) is not _Global or type(args) is not tuple:
            raise self.refuse(f'calls a {_kind(func)}')
        if func.name == '_reconstruct':          # _reconstruct(ndarray, (0,), b'b'); BUILD gives it its data
            if len(args) != 3 or type(args[0]) is not _Global or args[0].name != 'ndarray':
                raise self.refuse('reconstructs something other than a numpy array')
            return _Array()
        if func.name == 'dtype':                 # dtype(code, align, copy)
            code = args[0] if args else None
            if type(code) is not str or code not in NPY_DTYPES + (OBJECT_DTYPE,):
                raise self.refuse(f'asks for the dtype {_short(code) if type(code) is str else _kind(code)}')
            return _Dtype(code)
        if func.name == 'scalar' and len(args) == 2:     # scalar(dtype, bytes)
            return _Array(self.numbers(args[0], (), args[1])[()])
        raise self.refuse(f'calls numpy.{func.name} directly (an array of any size, made before its data is read)')

    def build(self, target, state):
        """BUILD: a dtype's byte order, or an array's (version, shape, dtype, fortran order, data)."""
        if type(target) is _Dtype:
            if (type(state) is not tuple or len(state) < 5 or type(state[1]) is not str
                    or state[1] not in BYTE_ORDERS or any(x is not None for x in state[2:5])):
                raise self.refuse('gives a dtype fields, a subarray or an unknown byte order')
            target.dtype = np.dtype(target.code).newbyteorder(state[1])
        elif type(target) is _Array and target.value is None and type(state) is tuple and len(state) in (4, 5):
            shape, dtype, fortran, data = state[-4:]
            if type(fortran) not in (bool, int):
                raise TypeError('an array whose order is not a flag')
            if type(dtype) is _Dtype and dtype.code == OBJECT_DTYPE:
                target.value = self.objects(shape, data)
            else:
                target.value = self.numbers(dtype, shape, data, bool(fortran))
        else:
            raise self.refuse(f'sets the state of a {_kind(target)}')

    def objects(self, shape, data):
        """An object array: np.save's 0-d wrapper of the dict only, from a list (never from raw bytes)."""
        if type(data) is not list:
            raise self.refuse(f'builds an object array from a {_kind(data)} (raw bytes would become pointers)')
        if type(shape) is not tuple or len(shape) > 1 or any(d != 1 for d in shape) or len(data) != 1:
            raise self.refuse("holds an object array other than np.save's wrapper of one dict")
        return data

    def numbers(self, dtype, shape, data, fortran=False):
        """A numeric array over the pickle's bytes: a dtype of NPY_DTYPES, at most MAX_RANK dimensions,
        and exactly the bytes its shape declares, checked before it is built."""
        if type(dtype) is not _Dtype or dtype.code not in NPY_DTYPES:
            raise self.refuse(f'builds an array of a {_kind(dtype) if type(dtype) is not _Dtype else dtype.code}, '
                              f'not of float32 or float64')
        if type(shape) is not tuple or len(shape) > MAX_RANK or any(type(d) is not int for d in shape):
            raise self.refuse(f'declares an array shape other than up to {MAX_RANK} sizes')
        if type(data) is str:
            data = data.encode('latin-1')        # a Python 2 str, read as latin-1 text
        if type(data) is not bytes:
            raise self.refuse(f'gives an array its data as a {_kind(data)}')
        size = len(data) // dtype.dtype.itemsize
        if any(d < 1 or d > size for d in shape) or math.prod(shape) * dtype.dtype.itemsize != len(data):
            raise DataError(f'{self.path}: an array declares shape {_short(shape_text(shape))} of '
                            f'{dtype.dtype.name} but the file holds {len(data):,} bytes for it: truncated or not '
                            f"caffe-tensorflow's file; {GIVE}")
        return np.frombuffer(data, dtype.dtype).reshape(shape, order='F' if fortran else 'C')


def _layer_arrays(value, name, path):
    """A layer's {key: array} or [arrays], the arrays themselves; anything else refused, never walked."""
    if type(value) is dict:
        items = list(value.items())
    elif type(value) in (list, tuple):
        items = list(enumerate(value))
    else:
        raise DataError(f'{path}: layer {_short(name)} is a {_kind(value)}, wanted [weights, biases] or '
                        f'{{"weights": ..., "biases": ...}}')
    for key, x in items:
        if type(x) is not _Array or x.value is None or type(x.value) is list:
            raise DataError(f'{path}: layer {_short(name)} {_short(str(key))} is a {_kind(x)}, wanted a float32 '
                            f'or float64 array; {GIVE}')
    arrays = [(key, x.value) for key, x in items]
    return dict(arrays) if type(value) is dict else [a for _, a in arrays]


def load_npy_dict(path):
    """{layer: {key: array} or [arrays]} pickled in a caffe-tensorflow .npy: the header read by numpy's
    format functions, the pickle by NpyPickle (never by pickle or np.load)."""
    fmt = np.lib.format
    with open(path, 'rb') as f:
        try:
            version = fmt.read_magic(f)
            read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read_header(f)
        except ValueError as e:
            raise DataError(f'{path}: not a readable .npy file ({e})') from None
        if not dtype.hasobject:
            raise DataError(f"{path}: holds a {dtype} array of shape {shape_text(shape)}, not caffe-tensorflow's "
                            f"pickled dict of layers")
        payload = f.read()
    obj = NpyPickle(path, payload).load()
    del payload
    if type(obj) is _Array and type(obj.value) is list:
        obj = obj.value[0]                       # np.save's 0-d object array around the dict
    if type(obj) is not dict:
        raise DataError(f"{path}: holds a {_kind(obj)}, not caffe-tensorflow's dict of layers; {GIVE}")
    return {name: _layer_arrays(value, name, path) for name, value in obj.items()}
