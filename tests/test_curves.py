"""curves.py: scalars from event files (resumed runs included) to a PNG."""
import numpy as np
import pytest
import tensorflow as tf
from skimage import io

import checkpoints
import curves



def write_events(folder, points):
    """points: [(step, {tag: value})] written as one event file, like train.py's FileWriter."""
    with tf.Graph().as_default():
        writer = tf.compat.v1.summary.FileWriter(str(folder))
        for step, values in points:
            summary = tf.compat.v1.Summary(value=[tf.compat.v1.Summary.Value(tag=k, simple_value=v)
                                                  for k, v in values.items()])
            writer.add_summary(summary, step)
        writer.close()


@pytest.mark.slow
def test_curves_from_a_resumed_run(tmp_path, capsys):
    epoch = lambda loss, top1, vloss, vtop1: {'train/epoch_loss': loss, 'train/epoch_top1': top1,
                                              'val/loss': vloss, 'val/top1': vtop1}
    write_events(tmp_path, [(5, {'train/loss': 2.3}), (10, epoch(2.2, 0.1, 2.1, 0.15)),
                            (20, epoch(9.9, 0.9, 9.9, 0.9))])           # epoch 2 logged, then a crash
    import time
    time.sleep(1.1)                                                       # a later file: the resumed run
    write_events(tmp_path, [(20, epoch(1.8, 0.3, 1.9, 0.35)), (30, epoch(1.5, 0.45, 1.7, 0.4)),
                            (30, {'val_subset/top1': 0.5})])                # --val-subset's
    checkpoints.write_json_atomic(str(tmp_path / 'model.ckpt-30.json'), {'steps_per_epoch': 10})
    for suffix in ('index', 'data-00000-of-00001'):     # an (empty) complete checkpoint
        (tmp_path / f'model.ckpt-30.{suffix}').write_bytes(b'')

    lines = curves.curves(curves.read_scalars(str(tmp_path)), curves.steps_per_epoch(str(tmp_path)))
    assert lines['val/top1'][0] == [1, 2, 3]
    np.testing.assert_allclose(lines['val/top1'][1], [0.15, 0.35, 0.4])   # the resumed value wins
    np.testing.assert_allclose(lines['train/loss'][1], [2.3])
    assert lines['val_subset/top1'] == ([3], [0.5])

    out = tmp_path / 'plots' / 'c.png'
    assert curves.main([str(tmp_path), '-o', str(out), '--title', 'test run']) == 0
    image = io.imread(out)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400
    assert image[..., :3].std() > 10             # something was drawn
    assert 'val/top1: epoch 3 0.4000 (best 0.4000)' in capsys.readouterr().out


def test_clear_errors(tmp_path, capsys):
    assert curves.main([str(tmp_path / 'missing')]) == 2
    assert 'is not a folder' in capsys.readouterr().err
    assert curves.main([str(tmp_path)]) == 2
    assert 'no checkpoint' in capsys.readouterr().err
    assert curves.main([str(tmp_path), '--steps-per-epoch', '5']) == 2
    assert 'no TensorBoard event files' in capsys.readouterr().err
    write_events(tmp_path, [(5, {'train/loss': 2.3})])
    assert curves.main([str(tmp_path), '--steps-per-epoch', '5']) == 2
    assert 'no epoch results yet' in capsys.readouterr().err
