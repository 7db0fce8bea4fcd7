"""Safe decoding of untrusted image files, and the count of those that could not be read.

Any file in a dataset folder may be broken, disguised (a PNG named .JPEG) or
hostile (a few hundred bytes claiming 30000 x 30000 pixels). decode_image reads
JPEG, PNG, BMP and GIF to RGB, and refuses, before decoding, an image too large
to hold (naming the size its header claims) and a BMP that TensorFlow would read
wrong; why_unreadable gives the one-line reason a file cannot be read (why_not_an_image
in classify.py's words, with file_contents and not_an_image). Skips is the
pipelines' bookkeeping of the images they dropped: a warning for each, with the
reason, and the end of the stream when the data is gone.
"""
import os
import re
import threading
import warnings

import numpy as np
import tensorflow as tf

import datasets
from errors import DataError

MAX_PIXELS = 100_000_000  # a larger image is refused before decoding: a few hundred bytes of PNG can claim
                          # 30000 x 30000 pixels (2.7 GB decoded); ILSVRC's largest photographs are far below
UNREADABLE_IN_A_ROW = 1000   # training stops (one line) when this many images in a row, beyond what the
                             # pipeline reads ahead, could not be read: the data is gone (unmounted?), not a few bad files


# ---------------------------------------------------------------- one image

def is_jpeg(contents):
    """True when the encoded bytes start with the JPEG SOI marker (whatever the file is named)."""
    return tf.equal(tf.strings.substr(contents, 0, 2), b'\xff\xd8')


def decode_image(contents):
    """Encoded bytes -> uint8 [H, W, 3] RGB: JPEG (RGB, grayscale, CMYK), PNG (RGBA, gray, palette),
    BMP, GIF (first frame). Alpha is dropped, gray is repeated, CMYK is converted by libjpeg."""
    with tf.control_dependencies([_supported_bmp(contents), _not_too_large(contents)]):
        image = tf.cond(is_jpeg(contents),
                        lambda: tf.io.decode_jpeg(contents, channels=3),
                        lambda: tf.io.decode_image(contents, channels=3, expand_animations=False))
    image.set_shape([None, None, 3])
    return image


def _header_size(contents):
    """(width, height) that a PNG, GIF or BMP header claims (0, 0 for other formats: JPEG's decoder
    reads its size from the file, and small files)."""
    def field(offset, length, dtype, big_endian=False):
        raw = tf.strings.substr(contents, offset, length)
        return tf.cast(tf.io.decode_raw(raw, dtype, little_endian=not big_endian)[0], tf.int64)
    long_enough = tf.strings.length(contents) >= 30
    start = lambda magic: tf.logical_and(long_enough, tf.equal(tf.strings.substr(contents, 0, len(magic)), magic))
    return tf.case([(start(b'\x89PNG'), lambda: tf.stack([field(16, 4, tf.int32, True), field(20, 4, tf.int32, True)])),
                    (start(b'GIF8'), lambda: tf.stack([field(6, 2, tf.uint16), field(8, 2, tf.uint16)])),
                    (start(b'BM'), lambda: tf.abs(tf.stack([field(18, 4, tf.int32), field(22, 4, tf.int32)])))],
                   default=lambda: tf.zeros([2], tf.int64))


def _claimed_size(contents):
    """(width, height) int64 that an image's header claims: JPEG's frame header, a PNG, GIF or BMP header
    ((0, 0) for other formats and small files)."""
    return tf.cond(is_jpeg(contents), lambda: tf.cast(tf.io.extract_jpeg_shape(contents)[1::-1], tf.int64),
                   lambda: _header_size(contents))


def _not_too_large(contents):
    """An error, before decoding, for an image whose header claims more than MAX_PIXELS pixels, naming
    the size it claims."""
    width_height = _claimed_size(contents)
    message = tf.strings.format(f'its header claims {{}} x {{}} pixels, more than the {MAX_PIXELS:,} allowed '
                                '(a decompression bomb?): refused before decoding', [width_height[0], width_height[1]])
    return _refuse_unless(width_height[0] * width_height[1] <= MAX_PIXELS, message)


def _supported_bmp(contents):
    """An error for a BMP of fewer than 24 bits per pixel: TensorFlow's decoder returns the palette indices
    of an 8-bit one as if they were pixels and cannot read a 1-bit one, so they are refused (skipped and
    counted in training) rather than read wrong."""
    is_bmp = tf.logical_and(tf.equal(tf.strings.substr(contents, 0, 2), b'BM'), tf.strings.length(contents) >= 30)
    bits = tf.cond(is_bmp, lambda: tf.io.decode_raw(tf.strings.substr(contents, 28, 2), tf.uint16)[0],
                   lambda: tf.constant(24, tf.uint16))
    return _refuse_unless(bits >= 24, 'a BMP with a colour palette (fewer than 24 bits per pixel), which '
                                      'TensorFlow reads wrong: convert it to PNG or JPEG')


def _refuse_unless(condition, message):
    """An InvalidArgumentError whose text is `message` (a string or a string tensor) unless condition holds.
    The assertion sits in a branch, so that a graph's error text starts with the message, not a Python stack."""
    def refuse():
        with tf.control_dependencies([tf.raw_ops.Assert(condition=False, data=[message])]):
            return tf.constant(False)
    return tf.cond(condition, lambda: tf.constant(True), refuse)


# ---------------------------------------------------------------- why an image cannot be read

REFUSED = re.compile(r'assertion failed: \[(.*?)\]')   # decode_image's own refusals, in TensorFlow's error text


def error_reason(error):
    """The one-line reason of a decoding error (a refusal above, or the decoder's or the file system's),
    without TensorFlow's graph context."""
    text = re.sub(r'\{\{.*?\}\}\s*', '', getattr(error, 'message', str(error)))
    refused = REFUSED.search(text)
    if refused:
        return refused.group(1)
    lines = [line.strip() for line in text.split(' [Op:')[0].splitlines()]
    return next((line for line in lines if line and not line.startswith('[[')
                 and not line.startswith('Graph execution error')), 'cannot decode')


def why_unreadable(path):
    """None when decode_image reads the file at path, else the one-line reason it cannot (eager)."""
    try:
        decode_image(tf.io.read_file(os.fsencode(path)))     # bytes: a name that is not UTF-8 too
    except tf.errors.OpError as e:
        return error_reason(e)
    return None


# ---------------------------------------------------------------- one image a command was given

def file_contents(path):
    """The bytes of an image file (classify.py); a one-line DataError when it cannot be read or is empty."""
    try:
        with open(path, 'rb') as f:
            contents = f.read()
    except FileNotFoundError:
        raise DataError('no such file') from None
    except IsADirectoryError:
        raise DataError('is a folder, not an image') from None
    except OSError as e:
        raise DataError(e.strerror or str(e)) from None
    if not contents:
        raise DataError('empty file, not an image')
    return contents


def not_an_image(error):
    """The one-line DataError of a decoding error: decode_image's own refusal, or the decoder's reason."""
    reason = error_reason(error)
    if REFUSED.search(getattr(error, 'message', None) or ''):
        return DataError(reason)
    return DataError(f'not a readable image (truncated, or not JPEG, PNG, BMP or GIF): {reason}')


def why_not_an_image(path):
    """None when the file at path is an image classify.py reads, else why not, in its words (eager;
    features.py names so the images its pipeline dropped)."""
    try:
        decode_image(tf.constant(file_contents(path)))
    except DataError as e:
        return str(e)
    except tf.errors.OpError as e:
        return str(not_an_image(e))
    return None


# ---------------------------------------------------------------- the images a pipeline dropped

class Skips:
    """Warns about (and lists in split.skipped) images the pipeline dropped as unreadable. Elements
    carry their stream position, so a gap in the positions that arrive is a dropped image."""

    def __init__(self, split, start, end=None, name_of=None):
        self.split, self.start, self.end, self.name_of = split, start, end, name_of
        self.last, self.names, self.lock, self.stalled = start - 1, {}, threading.Lock(), None

    def healthy(self, j, read_ahead):
        """False once the stream asks for a position far past the last one that arrived: the images in
        between all failed. Then the stream ends (the trainer says why, naming a few of them)."""
        first = int(np.min(j))
        with self.lock:
            if first - self.last <= UNREADABLE_IN_A_ROW + read_ahead:
                return True
            if not self.stalled:
                self.stalled = [self.name_of(p) if self.name_of else self.names.get(p, f'record {p}')
                                for p in range(self.last + 1, self.last + 4)]
                self.split.stalled = self.stalled
            return False

    def note(self, j, name):              # TFRecord streams: remember which record is at j
        self.names[int(j)] = name.decode()
        return j

    def check(self, j):                   # j: positions of a batch; empty: the end of a finite pass
        with self.lock:
            if len(j) and j[0] <= self.last:      # a new pass over the data
                self.last = self.start - 1
            top = int(j[-1]) if len(j) else self.end - 1
            arrived = set(j.tolist())
            for p in range(self.last + 1, top + 1):
                name = self.names.pop(p, None)
                if p not in arrived:
                    name = self.name_of(p) if self.name_of else name or f'record {p}'
                    if name not in self.split.skipped:        # warn once per image, not every epoch
                        self.split.skipped.append(name)
                        reason = why_unreadable(name) if self.name_of else None    # a file: decode it again
                        warnings.warn(f'{name}: unreadable image, skipped' + (f' ({reason})' if reason else ''),
                                      datasets.UnreadableImageWarning)
            self.last = top if len(j) else self.start - 1
        return j
