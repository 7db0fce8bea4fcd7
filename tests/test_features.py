"""features.py: fc7 / pool5 vectors of files and folders into an .npz; bad files named and skipped."""
import numpy as np
import pytest

import checkpoints
import features
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
    with pytest.warns(UserWarning) as warned:          # a warning: line each, outside pytest
        assert features.main(['--train-dir', run['dir'], '-b', '2', str(folder), '-o', str(out)]) == 1   # one skipped
    named = [str(w.message) for w in warned if 'unreadable image' in str(w.message)]
    assert len(named) == 1 and '1b.png' in named[0] and 'Traceback' not in capsys.readouterr().err
    saved = np.load(out)
    assert list(saved['files']) == [str(folder / f'{i}.png') for i in range(3)]
    assert saved['features'].shape == (3, 4096) and saved['features'].dtype == np.float32
    assert str(saved['checkpoint']) == checkpoints.for_use(run['dir'])[0]
    # each image alone gives the same vector: no batch effects, the rows are the files'
    alone = tmp_path / 'alone.npz'
    assert features.main(['--train-dir', run['dir'], str(folder / '2.png'), '-o', str(alone)]) == 0
    np.testing.assert_allclose(np.load(alone)['features'][0], saved['features'][2], rtol=1e-5, atol=1e-5)
    assert not list(tmp_path.glob('*.tmp-*'))


def test_bad_arguments_are_one_line_and_write_nothing(run, tmp_path, capsys):
    png = str(sorted(run['tree'].glob('test/class1/*.png'))[0])
    for argv, message in ((['-o', str(tmp_path / 'no' / 'f.npz'), png], 'there is no folder'),
                          (['-o', str(tmp_path / 'f.npz'), '-b', '0', png], '--batch-size must be at least 1'),
                          (['-o', str(tmp_path / 'f.npz'), str(tmp_path)], 'no image to read')):
        assert features.main(['--train-dir', run['dir'], *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and 'Traceback' not in err
    assert not (tmp_path / 'f.npz').exists()
