"""CIFAR-10 in the official "python version" format, written by the tests themselves.

The file users download, cifar-10-python.tar.gz, holds cifar-10-batches-py/ with data_batch_1..5,
test_batch and batches.meta. Each is a protocol-2 pickle written by Python 2's cPickle: a dict
whose keys are Python-2 str (bytes to Python 3: b'data', b'labels', b'batch_label', b'filenames';
batches.meta: b'label_names', b'num_cases_per_batch', b'num_vis'). The pixels are a uint8 array
of N rows of 3072 values (1024 red, 1024 green, 1024 blue: CHW planes), pickled the way numpy
pickles an array:

    numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), 'b')      REDUCE
    .__setstate__((1, (N, 3072), numpy.dtype('u1', 0, 1), False, raw))  BUILD
    dtype state: (3, '|', None, None, None, -1, -1, 0)

`Writer` emits exactly those opcodes (only ones Python 2 knew: no BINBYTES, no BINUNICODE, no
FRAME), from a few node types, so a test can also write a crafted pickle (`Global`, `Reduce`).
"""
import io
import struct
import tarfile
from typing import Any, NamedTuple

import numpy as np

CLASS_NAMES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']
BATCHES_DIR = 'cifar-10-batches-py'


class Global(NamedTuple):
    """A module-level name, pushed by the GLOBAL opcode (a class passed as an argument, or a callable)."""
    module: str
    name: str


class Reduce(NamedTuple):
    """func(*args), then, when state is not None, __setstate__(state) (REDUCE, then BUILD)."""
    func: Global
    args: tuple
    state: Any = None


def uint8_dtype():
    """numpy.dtype('u1') as Python 2's numpy pickled it (its align and copy flags as ints)."""
    return Reduce(Global('numpy', 'dtype'), ('u1', 0, 1), (3, '|', None, None, None, -1, -1, 0))


def array_node(data):
    """A 2-D uint8 array as numpy pickles one: _reconstruct(ndarray, (0,), 'b') then its state."""
    data = np.ascontiguousarray(data)
    assert data.dtype == np.uint8 and data.ndim == 2, (data.dtype, data.shape)
    return Reduce(Global('numpy.core.multiarray', '_reconstruct'), (Global('numpy', 'ndarray'), (0,), 'b'),
                  (1, data.shape, uint8_dtype(), False, data.tobytes()))


class Writer:
    """A protocol-2 pickler that writes what cPickle wrote under Python 2.

    str and bytes are both Python-2 str (SHORT_BINSTRING / BINSTRING, latin-1); ints use
    BININT1/BININT2/BININT; lists and dicts are memoised and filled 1000 items at a time
    (APPENDS/SETITEMS), as cPickle did; tuples of up to 3 items use TUPLE1..3.
    """

    def __init__(self):
        self.out = io.BytesIO()
        self.memo = 0

    def put(self):
        self.memo += 1
        self.out.write(b'q' + bytes([self.memo]) if self.memo < 256 else b'r' + struct.pack('<I', self.memo))

    def save(self, obj):
        w = self.out.write
        if obj is None:
            w(b'N')
        elif obj is True or obj is False:
            w(b'\x88' if obj else b'\x89')
        elif isinstance(obj, (int, np.integer)):
            obj = int(obj)
            if 0 <= obj < 256:
                w(b'K' + bytes([obj]))
            elif 0 <= obj < 65536:
                w(b'M' + struct.pack('<H', obj))
            else:
                w(b'J' + struct.pack('<i', obj))
        elif isinstance(obj, (str, bytes)):
            raw = obj.encode('latin-1') if isinstance(obj, str) else obj
            w(b'U' + bytes([len(raw)]) + raw if len(raw) < 256 else b'T' + struct.pack('<i', len(raw)) + raw)
            self.put()
        elif isinstance(obj, Global):
            w(b'c' + obj.module.encode() + b'\n' + obj.name.encode() + b'\n')
            self.put()
        elif isinstance(obj, Reduce):
            self.save(obj.func)
            self.save(tuple(obj.args))
            w(b'R')
            self.put()
            if obj.state is not None:
                self.save(obj.state)
                w(b'b')
        elif isinstance(obj, tuple):
            if not obj:
                w(b')')
                return
            if len(obj) > 3:
                w(b'(')
            for item in obj:
                self.save(item)
            w({1: b'\x85', 2: b'\x86', 3: b'\x87'}.get(len(obj), b't'))
        elif isinstance(obj, list):
            w(b']')
            self.put()
            for start in range(0, len(obj), 1000):
                w(b'(')
                for item in obj[start:start + 1000]:
                    self.save(item)
                w(b'e')
        elif isinstance(obj, dict):
            w(b'}')
            self.put()
            items = list(obj.items())
            for start in range(0, len(items), 1000):
                w(b'(')
                for key, value in items[start:start + 1000]:
                    self.save(key)
                    self.save(value)
                w(b'u')
        elif isinstance(obj, np.ndarray):
            self.save(array_node(obj))
        else:
            raise TypeError(f'no Python-2 encoding for {type(obj).__name__}')


def py2_pickle(obj):
    """The protocol-2 pickle of obj, as Python 2 wrote it (see `Writer`)."""
    writer = Writer()
    writer.out.write(b'\x80\x02')
    writer.save(obj)
    writer.out.write(b'.')
    return writer.out.getvalue()


def batch_pickle(batch_label, data, labels, filenames):
    """One data batch: data is uint8 N x 3072 (CHW planes), labels N ints 0..9."""
    return py2_pickle({'batch_label': batch_label, 'labels': [int(x) for x in labels], 'data': data,
                       'filenames': list(filenames)})


def meta_pickle(per_batch):
    return py2_pickle({'num_cases_per_batch': per_batch, 'label_names': CLASS_NAMES, 'num_vis': 3072})


def rows(images):
    """uint8 N x 32 x 32 x 3 (HWC) -> N x 3072 rows of R, G, B planes."""
    return np.ascontiguousarray(np.asarray(images, np.uint8).transpose(0, 3, 1, 2).reshape(len(images), -1))


def batch_files(train, train_labels, test, test_labels, batches=5):
    """{file name: bytes} of a cifar-10-batches-py/ holding these HWC uint8 images."""
    per = -(-len(train) // batches)
    files = {'batches.meta': meta_pickle(per)}
    for i in range(batches):
        part = slice(i * per, (i + 1) * per)
        files[f'data_batch_{i + 1}'] = batch_pickle(
            f'training batch {i + 1} of {batches}', rows(train[part]), train_labels[part],
            [f'{CLASS_NAMES[y]}_{i * per + k}.png' for k, y in enumerate(train_labels[part])])
    files['test_batch'] = batch_pickle('testing batch 1 of 1', rows(test), test_labels,
                                       [f'{CLASS_NAMES[y]}_{k}.png' for k, y in enumerate(test_labels)])
    return files


def tar_gz(files, folder=BATCHES_DIR):
    """tar.gz bytes of {name: bytes}, each as folder/name (plain files, mode 644)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w:gz') as tar:
        for name, payload in files.items():
            info = tarfile.TarInfo(f'{folder}/{name}')
            info.size, info.mode = len(payload), 0o644
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def read_jpeg_archive(path):
    """(uint8 N x 32 x 32 x 3, int labels, member names) of a tar.gz of split/<class>/<n>.jpg, in name order."""
    from PIL import Image
    images, labels, names = [], [], []
    with tarfile.open(path) as tar:
        for member in sorted((m for m in tar if m.isfile() and m.name.endswith('.jpg')), key=lambda m: m.name):
            with Image.open(tar.extractfile(member)) as image:
                images.append(np.asarray(image.convert('RGB'), np.uint8))
            labels.append(CLASS_NAMES.index(member.name.split('/')[-2]))
            names.append(member.name)
    return np.stack(images), np.array(labels, np.int64), names


def archive_from_jpegs(train_tgz, test_tgz, out, seed=0):
    """Write out (a .tar.gz in the official format) from the real CIFAR-10 JPEG archives; the training
    images in a seeded shuffled order, as the official batches mix the classes. Returns out."""
    train, train_labels, _ = read_jpeg_archive(train_tgz)
    test, test_labels, _ = read_jpeg_archive(test_tgz)
    order = np.random.RandomState(seed).permutation(len(train))
    out.write_bytes(tar_gz(batch_files(train[order], train_labels[order], test, test_labels)))
    return out
