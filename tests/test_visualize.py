"""visualize.py kernels: the paper's Figure 3 from a checkpoint, and the towers' colour share; neighbours' misuse."""
import warnings
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import alexnet
import checkpoints
import cli
import embedding
import helpers
import visualize
from helpers import CHECKPOINT_META, make_run


def grey_kernels(rng, n=48):
    k = rng.normal(0, 1, (11, 11, 1, n))
    return np.repeat(k, 3, axis=2)                                  # the same in every channel


def single_channel_kernels(rng, channel=0, n=48):
    k = np.zeros((11, 11, 3, n))
    values = rng.normal(0, 1, (11, 11, n))
    k[:, :, channel] = values - values.mean(axis=(0, 1))            # zero mean: share exactly 2/3
    return k


def tiny_checkpoint(folder, towers, meta):
    """alexnet.inference at 67x67, 3 classes, with the given conv1 kernels, saved as training would."""
    with tf.Graph().as_default():
        alexnet.inference(tf.zeros([1, alexnet.MIN_INPUT_SIZE, alexnet.MIN_INPUT_SIZE, 3]), 3, devices='/cpu:0')
        variables = {v.op.name: v for v in tf.compat.v1.global_variables()}
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for t, k in zip('ab', towers):
                variables[f'conv1_{t}/weights'].load(k.astype(np.float32), sess)
            return checkpoints.save(sess, tf.compat.v1.train.Saver(), str(folder), 7, dict(CHECKPOINT_META, **meta),
                                    keep=1)


def test_colour_share_is_zero_for_grey_and_two_thirds_for_one_channel():
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(visualize.colour_share(grey_kernels(rng)), 0, atol=1e-12)
    np.testing.assert_allclose(visualize.colour_share(single_channel_kernels(rng, 1)), 2 / 3, rtol=1e-12)
    assert visualize.colour_share(np.zeros((11, 11, 3, 2))).tolist() == [0, 0]     # flat kernels: no division
    mixed = rng.normal(0, 1, (11, 11, 3, 48))                       # independent channels: most variance is colour
    assert 0.55 < visualize.colour_share(mixed).mean() < 0.75


@pytest.mark.slow
@pytest.mark.parametrize('channel_order', ['RGB', 'BGR'])
def test_kernels_picture_and_colour_lines(tmp_path, capsys, channel_order):
    rng = np.random.default_rng(1)
    towers = [grey_kernels(rng), single_channel_kernels(rng, channel=0)]    # tower b: channel 0 only
    run = tmp_path / 'run'
    prefix = tiny_checkpoint(run, towers, dict(channel_order=channel_order))
    out = tmp_path / 'conv1.png'
    assert visualize.main(['kernels', '--train-dir', str(run), '-o', str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2:] == ['tower a: colour share 0.00 (48 kernels)', 'tower b: colour share 0.67 (48 kernels)']
    picture = np.asarray(Image.open(out))
    # 16 per row, 3 rows per tower, 11x11 kernels x4 with 2-pixel gaps and 8 more between the towers
    width, block = 16 * 44 + 17 * 2, 3 * 44 + 4 * 2
    assert picture.shape == (2 * block + 8, width, 3)
    assert visualize.grid_size(48, 11) == picture.shape[:2]
    first_a = picture[2:46, 2:46].astype(int)                       # tower a's first kernel: grey
    assert (first_a[..., 0] == first_a[..., 1]).all() and (first_a[..., 1] == first_a[..., 2]).all()
    assert first_a.max() == 255 and first_a.min() == 0             # stretched to its own range
    first_b = picture[block + 8 + 2:block + 8 + 46, 2:46].astype(int)
    shown = 2 if channel_order == 'BGR' else 0                      # BGR's channel 0 is blue: RGB's channel 2
    assert first_b[..., shown].std() > 10
    for c in {0, 1, 2} - {shown}:
        assert first_b[..., c].std() == 0
    assert (picture[:2] == 255).all() and (picture[block:block + 8] == 255).all()     # the gaps
    # --checkpoint PREFIX and --scale: the same kernels, another size
    assert visualize.main(['kernels', '--checkpoint', prefix, '-o', str(out), '--scale', '1']) == 0
    assert np.asarray(Image.open(out)).shape[:2] == visualize.grid_size(48, 11, scale=1)


@pytest.mark.slow
def test_errors_are_one_line(tmp_path, capsys):
    for argv in (['kernels', '--train-dir', str(tmp_path / 'none'), '-o', str(tmp_path / 'x.png')],
                 ['kernels', '--checkpoint', str(tmp_path / 'model.ckpt-3'), '-o', str(tmp_path / 'x.png')]):
        assert visualize.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith('error: '), err
    rng = np.random.default_rng(2)
    run = tmp_path / 'run'
    tiny_checkpoint(run, [grey_kernels(rng), grey_kernels(rng)], {})
    assert visualize.main(['kernels', '--train-dir', str(run), '-o', str(tmp_path / 'no' / 'such' / 'x.png')]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: ') and 'x.png' in err[0], err
    assert not (tmp_path / 'x.png').exists()


@pytest.mark.slow
def test_neighbours_of_a_gallery_image_start_with_itself_and_are_drawn(tmp_path, capsys):
    tree, run_dir = make_run(tmp_path)
    gallery = tmp_path / 'gallery'
    for i, png in enumerate(sorted(tree.glob('test/class*/*.png'))[:12]):
        (gallery / f'{i:02d}.png').parent.mkdir(exist_ok=True)
        (gallery / f'{i:02d}.png').write_bytes(png.read_bytes())
    out = tmp_path / 'neighbours.png'
    query = gallery / '05.png'
    assert visualize.main(['neighbours', '--train-dir', str(run_dir), '--gallery', str(gallery), str(query),
                           '-o', str(out), '--cache', str(tmp_path / 'cache')]) == 0
    assert 'the 6 nearest of 12 gallery images (fc7) for 1 queries' in capsys.readouterr().out
    picture = np.asarray(Image.open(out))
    assert picture.shape[1] > 4 * picture.shape[0] > 0                  # one row: the query and six neighbours
    [cached] = (tmp_path / 'cache').glob('gallery-*.npz')             # the gallery's vectors, as the command made them
    with np.load(cached, allow_pickle=False) as saved:
        vectors = saved['features']
    found, dist = embedding.nearest(vectors[5:6], vectors)
    assert found[0, 0] == 5 and dist[0, 0] < 1e-3


@pytest.mark.slow
def test_kernels_of_an_ema_run_are_its_averages(tmp_path, capsys):
    """A run's latest checkpoint of --ema holds each weight and its average: every command restores the
    averages (checkpoints.saved_weights), and so are they drawn."""
    rng = np.random.default_rng(3)
    prefix = tiny_checkpoint(tmp_path / 'run', [single_channel_kernels(rng, 0), single_channel_kernels(rng, 1)], {})
    tensors = helpers.variables(prefix)
    for t in 'ab':                                                      # the averages: grey kernels
        tensors[f'conv1_{t}/weights' + checkpoints.AVERAGE_SUFFIX] = grey_kernels(rng).astype(np.float32)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=list(tensors), shape_and_slices=[''] * len(tensors),
                      tensors=list(tensors.values()))
    assert visualize.main(['kernels', '--checkpoint', prefix, '-o', str(tmp_path / 'conv1.png')]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2:] == ['tower a: colour share 0.00 (48 kernels)', 'tower b: colour share 0.00 (48 kernels)']
    assert '(their --ema averages)' in lines[-3]
    index = Path(prefix + '.index').read_bytes()
    assert visualize.main(['kernels', '--checkpoint', prefix, '-o', prefix + '.index']) == 2     # never over an input
    assert 'is one of the files to read' in capsys.readouterr().err
    assert Path(prefix + '.index').read_bytes() == index


# ---------------------------------------------------------------- neighbours: misuse, refused before any work

class RecordingExtractor(helpers.FakeExtractor):
    """A file that is not a PNG is unreadable; a vector is made from its file's length."""
    readable = staticmethod(lambda contents: contents.startswith(b'\x89PNG'))


@pytest.fixture
def made(monkeypatch):
    """The splits whose vectors were computed; warnings' format is put back after the test."""
    monkeypatch.setattr(RecordingExtractor, 'made', [])
    monkeypatch.setattr(embedding, 'Extractor', RecordingExtractor)
    monkeypatch.setattr(warnings, 'formatwarning', warnings.formatwarning)
    return RecordingExtractor.made


@pytest.fixture(scope='module')
def neighbours_run(tmp_path_factory):
    """(run folder, a gallery folder of 6 of its test images, a file that is no image)."""
    root = tmp_path_factory.mktemp('neighbours')
    tree, run_dir = make_run(root)
    gallery = root / 'gallery'
    gallery.mkdir()
    for i, png in enumerate(sorted(tree.glob('test/class*/*.png'))[:6]):
        (gallery / f'{i:02d}.png').write_bytes(png.read_bytes())
    (root / 'notes.txt').write_text('not an image')
    return run_dir, gallery, root / 'notes.txt'


def exit_code(argv):
    """visualize.main's exit status, also for a flag argparse refuses."""
    try:
        return visualize.main(argv)
    except SystemExit as e:
        return e.code


@pytest.mark.slow
@pytest.mark.parametrize('flags, named', [
    (['--gallery', 'galery'], '--gallery galery: no such folder'),
    (['--gallery', 'GALLERY/03.png'], '--gallery GALLERY/03.png is a file'),
    (['--gallery', 'test', '--queries', 'tset'], "invalid choice: 'tset'"),
    (['--gallery', 'test', '--count', '0'], '--count: must be at least 1, got 0'),
    (['--gallery', 'test', '--count', '-2'], '--count: must be at least 1, got -2'),
    (['--gallery', 'test', '--class-share', '-1'], '--class-share: must be at least 0'),
    (['--gallery', 'GALLERY', '--class-share', '10'], '--class-share needs the classes'),
    (['--gallery', 'test', '--cache', 'NOTES'], '--cache NOTES is a file'),
    (['--gallery', 'GALLERY', 'GALLERY/missing.png'], 'GALLERY/missing.png: no such file or directory'),
    (['--gallery', 'GALLERY', '-o', 'NOTES'], '-o NOTES exists and is text'),
    (['--gallery', 'GALLERY', '-o', 'GALLERY/03.png'], '-o GALLERY/03.png is one of the files to read'),
])
def test_neighbours_misuse_is_one_line_before_any_image_is_read(neighbours_run, made, tmp_path, capsys, flags, named):
    run_dir, gallery, notes = neighbours_run
    out = tmp_path / 'neighbours.png'
    argv = [f.replace('GALLERY', str(gallery)).replace('NOTES', str(notes)) for f in flags]
    assert exit_code(['neighbours', '--train-dir', str(run_dir), '-o', str(out), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    named = named.replace('GALLERY', str(gallery)).replace('NOTES', str(notes))
    assert len(err) == 1 and err[0].startswith('error: ') and named in err[0], err
    assert made == [] and not out.exists() and not (run_dir / 'gallery_cache').exists()


@pytest.mark.slow
def test_unreadable_queries_or_gallery_are_refused_and_nothing_is_cached(neighbours_run, made, tmp_path, capsys):
    run_dir, gallery, notes = neighbours_run
    out, cache = tmp_path / 'neighbours.png', tmp_path / 'cache'
    command = ['neighbours', '--train-dir', str(run_dir), '-o', str(out), '--cache', str(cache)]
    assert visualize.main(command + ['--gallery', str(gallery), str(notes)]) == 2       # the only query: no image
    assert capsys.readouterr().err == 'error: none of the 1 query images could be read: give images AlexNet can ' \
                                      'decode\n'
    assert [split.files for split in made] == [[str(notes)]]               # the gallery was not computed
    assert warnings.formatwarning is cli.format_warning                  # warnings: one `warning:` line each
    unreadable = tmp_path / 'unreadable'
    unreadable.mkdir()
    for name in ('a.png', 'b.jpg'):
        (unreadable / name).write_bytes(b'not an image')
    assert visualize.main(command + ['--gallery', str(unreadable), str(gallery / '00.png')]) == 2
    assert capsys.readouterr().err == 'error: none of the 2 gallery images could be read: give a gallery of images\n'
    assert not out.exists() and not list(cache.glob('*'))
