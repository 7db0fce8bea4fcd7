"""decoding.py: every format read as RGB like Pillow, disguised files, decompression bombs refused."""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import decoding
from helpers import encode, smooth_image


@pytest.mark.parametrize('fmt, mode, tolerance', [
    ('JPEG', 'L', 1.5), ('JPEG', 'CMYK', 3.0), ('JPEG', 'RGB', 1.5),
    ('PNG', 'RGBA', 0), ('PNG', 'L', 0), ('PNG', 'P', 0), ('BMP', 'RGB', 0), ('GIF', 'P', 0)])
def test_decode_image_gives_rgb_like_pillow(fmt, mode, tolerance):
    data = encode(smooth_image(40, 56), fmt, mode, **({'quality': 95} if fmt == 'JPEG' else {}))
    expected = np.asarray(Image.open(io.BytesIO(data)).convert('RGB'), np.float64)
    got = decoding.decode_image(tf.constant(data))
    assert got.dtype == tf.uint8 and got.shape == (40, 56, 3)
    assert np.abs(got.numpy() - expected).mean() <= tolerance


def test_decode_image_png_named_jpeg_and_gif_first_frame(tmp_path):
    png = smooth_image(20, 30)
    (tmp_path / 'disguised.JPEG').write_bytes(encode(png, 'PNG'))
    got = decoding.decode_image(tf.io.read_file(str(tmp_path / 'disguised.JPEG')))
    np.testing.assert_array_equal(got.numpy(), png)
    frames = [Image.fromarray(np.full((10, 12, 3), v, np.uint8)) for v in (30, 200)]
    out = io.BytesIO()
    frames[0].save(out, 'GIF', save_all=True, append_images=frames[1:])
    got = decoding.decode_image(tf.constant(out.getvalue())).numpy()
    assert got.shape == (10, 12, 3) and np.all(np.abs(got.astype(int) - 30) <= 2)


def test_a_decompression_bomb_is_refused_before_it_is_decoded():
    """A PNG of a few kB claiming 20000 x 20000 pixels (1.2 GB decoded) is an error, not an allocation."""
    import struct
    import zlib
    width = height = 20000
    row = b'\x00' + b'\x00' * width                       # filter byte + one grey byte a pixel
    data = zlib.compress(row * 50, 9)                      # only 50 rows present: the decoder would still allocate
    chunk = lambda kind, body: struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body))
    png = (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0))
           + chunk(b'IDAT', data) + chunk(b'IEND', b''))
    assert len(png) < 10_000
    claims = 'its header claims 20000 x 20000 pixels, more than the 100,000,000 allowed'
    with pytest.raises(tf.errors.InvalidArgumentError, match=claims) as e:
        decoding.decode_image(tf.constant(png))
    assert decoding.error_reason(e.value).startswith(claims)
    with tf.Graph().as_default():            # in a graph (classify.py's), the error's text starts with the reason
        contents = tf.compat.v1.placeholder(tf.string, [])
        image = decoding.decode_image(contents)
        with tf.compat.v1.Session() as sess, pytest.raises(tf.errors.InvalidArgumentError) as e:
            sess.run(image, {contents: png})
    first = [line for line in e.value.message.splitlines() if line and 'Graph execution error' not in line][0]
    assert claims in first and decoding.error_reason(e.value).startswith(claims)
    ordinary = encode(smooth_image(30, 40), 'PNG')
    assert decoding.decode_image(tf.constant(ordinary)).shape == (30, 40, 3)
    for fmt in ('GIF', 'BMP', 'JPEG'):
        assert decoding.decode_image(tf.constant(encode(smooth_image(30, 40), fmt))).shape == (30, 40, 3)
