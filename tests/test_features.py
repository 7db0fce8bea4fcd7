"""features.py: fc7 / pool5 vectors of files and folders into an .npz; bad files named and skipped."""
import os
import socket
import subprocess
import warnings

import numpy as np
import pytest

import checkpoints
import datasets
import decoding
import features
import files
from helpers import make_run


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp('features')
    tree, run_dir = make_run(root)
    return dict(root=root, tree=tree, dir=str(run_dir))


@pytest.mark.slow
def test_a_folder_in_order_with_a_bad_file_named_and_left_out(run, tmp_path, capsys):
    folder = tmp_path / 'images'
    folder.mkdir()
    pngs = sorted(run['tree'].glob('test/class1/*.png'))[:3]
    for i, png in enumerate(pngs):
        (folder / f'{i}.png').write_bytes(png.read_bytes())
    (folder / '1b.png').write_bytes(b'not a png')                       # sorts between 1.png and 2.png
    out = tmp_path / 'feats.npz'
    with warnings.catch_warnings():
        warnings.simplefilter('error', datasets.UnreadableImageWarning)     # named once, by an error: line
        assert features.main(['--train-dir', run['dir'], '-b', '2', str(folder), '-o', str(out)]) == 1   # one skipped
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith(('error:', 'warning:'))] == \
        [f'error: {folder}/1b.png: not a readable image (truncated, or not JPEG, PNG, BMP or GIF): ' +
         decoding.why_unreadable(str(folder / '1b.png'))]                   # classify.py's words
    assert 'Traceback' not in err
    saved = np.load(out)
    assert list(saved['files']) == [str(folder / f'{i}.png') for i in range(3)]
    assert saved['features'].shape == (3, 4096) and saved['features'].dtype == np.float32
    assert str(saved['checkpoint']) == checkpoints.for_use(run['dir'])[0]
    # each image alone gives the same vector: no batch effects, the rows are the files'
    alone = tmp_path / 'alone.npz'
    assert features.main(['--train-dir', run['dir'], str(folder / '2.png'), '-o', str(alone)]) == 0
    np.testing.assert_allclose(np.load(alone)['features'][0], saved['features'][2], rtol=1e-5, atol=1e-5)
    assert not list(tmp_path.glob('*.tmp-*'))


@pytest.mark.slow                # the module's trained run
def test_bad_arguments_are_one_line_and_write_nothing(run, tmp_path, capsys):
    png = str(sorted(run['tree'].glob('test/class1/*.png'))[0])
    assert features.main(['--train-dir', run['dir'], '-o', str(tmp_path / 'no' / 'f.npz'), png]) == 2
    err = capsys.readouterr().err
    assert 'there is no folder' in err and 'Traceback' not in err
    assert features.main(['--train-dir', run['dir'], '-o', str(tmp_path / 'f.npz'), str(tmp_path)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f'error: {tmp_path}: a folder without images (add -r for its sub-folders)',
        f'nothing written to {tmp_path}/f.npz: no image could be read']
    assert not (tmp_path / 'f.npz').exists()


@pytest.mark.slow
def test_a_single_unreadable_image_is_one_error_line_naming_it(run, tmp_path, capsys):
    empty = os.fsdecode(os.path.join(os.fsencode(tmp_path), b'caf\xe9.png'))     # a name not UTF-8
    open(empty, 'wb').close()
    (tmp_path / 'loop.png').symlink_to('loop.png')
    out = tmp_path / 'f.npz'
    for given, why in ((empty, 'empty file, not an image'), (tmp_path / 'missing.png', 'no such file'),
                       (tmp_path / 'loop.png', datasets.NOT_READ['loop'])):        # a pipe: test_datasets.py
        assert features.main(['--train-dir', run['dir'], str(given), '-o', str(out)]) == 1
        err = capsys.readouterr().err
        assert [line for line in err.splitlines() if not line.startswith('features:')] == \
            [f'error: {files.printable(given)}: {why}', f'nothing written to {out}: no image could be read'], err
    assert sorted(os.listdir(tmp_path)) == ['caf\udce9.png', 'loop.png']


def test_an_output_that_is_one_of_the_images_or_not_an_npz_is_refused_before_any_work(run, tmp_path, capsys):
    g = tmp_path / 'g'
    g.mkdir()
    for i, png in enumerate(sorted(run['tree'].glob('test/class1/*.png'))[:3]):
        (g / f'0{i}.png').write_bytes(png.read_bytes())
    np.savez(tmp_path / 'feats.npz', features=np.zeros([1, 2], np.float32))
    before = {p: p.read_bytes() for p in tmp_path.rglob('*') if p.is_file()}
    feats, g00 = str(tmp_path / 'feats.npz'), str(g / '00.png')
    for argv, message in ((['-o', g00, str(g / '01.png'), str(g / '02.png')],      # a shell pattern after -o
                           f'-o {g00} exists and is a PNG image, not an .npz of arrays'),
                          (['-o', feats, feats, str(g)], f'-o {feats} is one of the files to read')):
        assert features.main(['--train-dir', run['dir'], *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f'error: {message}') and err.count('\n') == 1, err
    assert {p: p.read_bytes() for p in tmp_path.rglob('*') if p.is_file()} == before


@pytest.mark.slow
def test_names_not_utf8_a_link_that_loops_and_what_a_killed_write_left(run, tmp_path, capsys):
    folder = tmp_path / 'latin'
    folder.mkdir()
    png = sorted(run['tree'].glob('test/class1/*.png'))[0].read_bytes()
    cafe = os.path.join(os.fsencode(folder), b'caf\xe9.png')          # Latin-1, not UTF-8
    with open(cafe, 'wb') as f:
        f.write(png)
    (folder / 'ok.png').write_bytes(png)
    (folder / 'loop.png').symlink_to('loop.png')
    out = tmp_path / 'feats.npz'
    out.write_bytes(b'')
    finished = subprocess.Popen(['true'])
    finished.wait()
    leftovers = [f'.feats.npz.tmp-{socket.gethostname()}-{finished.pid}', f'feats.npz.tmp-{finished.pid}.npz']
    for name in leftovers:
        (tmp_path / name).write_bytes(b'PK half')
    with pytest.warns(UserWarning) as warned:
        assert features.main(['--train-dir', run['dir'], str(folder), '-o', str(out)]) == 1
    err = capsys.readouterr().err
    assert f'error: {folder}/loop.png: a symbolic link that loops: not read' in err and 'Traceback' not in err
    removed = [str(w.message) for w in warned if str(w.message).startswith('removed')]
    assert len(removed) == 2 and all('an interrupted write of feats.npz left' in m for m in removed)
    assert sorted(os.listdir(tmp_path)) == ['feats.npz', 'latin']
    saved = np.load(out)
    assert list(saved['files']) == [os.fsdecode(cafe), str(folder / 'ok.png')]     # os.fsencode: the bytes
    np.testing.assert_array_equal(saved['features'][0], saved['features'][1])
