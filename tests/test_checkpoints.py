"""checkpoints.py: never half-written, checked before use, falls back past damage, TensorFlow finds them."""
import glob
import os

import numpy as np
import pytest
import tensorflow as tf

import checkpoints
from errors import DataError
from helpers import CHECKPOINT_META


class Run:
    """A tiny graph (one variable and the step) saved through checkpoints.save, as the trainer does."""

    def __init__(self, folder):
        self.folder = str(folder)
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.v = tf.compat.v1.get_variable('v', [256], initializer=tf.compat.v1.zeros_initializer())
            self.step = tf.compat.v1.train.get_or_create_global_step()
            self.saver = tf.compat.v1.train.Saver(max_to_keep=None)
            self.sess = tf.compat.v1.Session()
            self.sess.run(tf.compat.v1.global_variables_initializer())

    def save(self, step, keep=3, folder=None, **meta):
        with self.graph.as_default():
            self.sess.run([self.v.assign(tf.fill([256], float(step))), self.step.assign(step)])
            meta = {**CHECKPOINT_META, **meta, 'note': step}
            return checkpoints.save(self.sess, self.saver, folder or self.folder, step, meta, keep)


@pytest.fixture
def run(tmp_path):
    r = Run(tmp_path)
    yield r
    r.sess.close()


def test_a_second_save_of_the_same_step_leaves_the_first_alone(run):
    prefix = run.save(7, note='first')
    stamps = {p: os.stat(p).st_mtime_ns for p in glob.glob(prefix + '.*')}
    assert run.save(7) == prefix
    assert {p: os.stat(p).st_mtime_ns for p in glob.glob(prefix + '.*')} == stamps
    assert checkpoints.read_meta(prefix)['note'] == 7


def test_tensorflow_finds_the_newest_and_the_state_names_only_kept_ones(run, tmp_path):
    for step in (1, 2, 3, 4, 5):
        run.save(step, keep=3)
    assert tf.train.latest_checkpoint(str(tmp_path)) == str(tmp_path / 'model.ckpt-5')
    state = tf.train.get_checkpoint_state(str(tmp_path))
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == \
        ['model.ckpt-3', 'model.ckpt-4', 'model.ckpt-5']
    assert [os.path.basename(p) for p in checkpoints.list_checkpoints(str(tmp_path))] == \
        ['model.ckpt-5', 'model.ckpt-4', 'model.ckpt-3']
    moved = tmp_path.parent / 'moved'
    os.rename(tmp_path, moved)                    # relative paths: a moved run folder still works
    assert tf.train.latest_checkpoint(str(moved)) == str(moved / 'model.ckpt-5')


@pytest.mark.parametrize('damage', ['empty index', 'short index', 'short data', 'cut json', 'other step json'])
def test_a_damaged_newest_checkpoint_is_skipped_with_one_warning(run, tmp_path, damage, capsys):
    run.save(1)
    newest = run.save(2)
    if damage == 'empty index':
        open(newest + '.index', 'w').close()
    elif damage == 'short index':
        with open(newest + '.index', 'r+b') as f:
            f.truncate(os.path.getsize(newest + '.index') // 2)
    elif damage == 'short data':
        data = glob.glob(newest + '.data-*')[0]
        with open(data, 'r+b') as f:
            f.truncate(os.path.getsize(data) - 100)
    elif damage == 'cut json':
        text = open(newest + '.json').read()
        open(newest + '.json', 'w').write(text[:len(text) // 2])
    else:
        open(newest + '.json', 'w').write('{"step": 1}')
    assert checkpoints.problem(newest) is not None
    prefix, meta = checkpoints.latest(str(tmp_path))
    assert prefix.endswith('model.ckpt-1') and meta['step'] == 1
    err = capsys.readouterr().err
    assert err.startswith('warning: skipped the damaged checkpoint') and 'model.ckpt-2' in err and err.count('\n') == 1
    assert checkpoints.for_use(str(tmp_path))[0] == prefix           # test.py, classify.py, export.py too
    with pytest.raises(DataError, match='no usable checkpoint'):
        checkpoints.for_use(checkpoint=newest)
    reader = tf.train.load_checkpoint(prefix)
    np.testing.assert_array_equal(reader.get_tensor('v'), np.ones(256))


@pytest.mark.parametrize('edit, named', [
    (dict(mean='grey'), '"mean" is "grey", not 3 numbers'),
    (dict(mean=[1, 2]), '"mean" is [1, 2], not 3 numbers'),
    (dict(class_names=['a', 'b']), 'it names 2 classes but "num_classes" is 3'),
    (dict(input_size='67'), '"input_size" is "67", not a whole number'),
    (dict(lrn=[2, 1]), '"lrn" is [2, 1], not null or 4 numbers'),
    (dict(lrn=[-1, 1.0, 2e-05, 0.75]), '"lrn" is [-1, 1.0, 2e-05, 0.75], not null or 4 numbers'),
    (dict(lrn=[2.5, 1.0, 2e-05, 0.75]), '"lrn" is [2.5,'),
    (dict(lrn=[2, 0, 2e-05, 0.75]), '"lrn" is [2, 0,'),
    (dict(channel_order='rgb'), '"channel_order" is "rgb", not "RGB" or "BGR"'),
    (dict(schedule=dict(rate=-1, best=None, bad_epochs=0, drops=0)), '"schedule" is'),
    (dict(plan=dict(total_steps='many')), '"plan" is'),
    (dict(best=dict(top1='good')), '"best" is')])
def test_a_hand_edited_json_is_refused_with_one_line_naming_the_key(run, tmp_path, edit, named):
    run.save(1)
    newest = run.save(2)
    assert checkpoints.meta_problem(checkpoints.read_meta(newest)) is None
    checkpoints.write_json_atomic(newest + '.json', dict(checkpoints.read_meta(newest), **edit))
    for find in (lambda: checkpoints.latest(str(tmp_path)), lambda: checkpoints.for_use(str(tmp_path)),
                 lambda: checkpoints.for_use(checkpoint=newest)):
        with pytest.raises(DataError) as e:
            find()
        message = str(e.value)
        assert message.startswith(newest + '.json: ') and named in message and '\n' not in message, message
        assert 'edited by hand' in message
    assert os.path.exists(newest + '.json')                   # nothing is deleted: the user fixes it


def test_caffe_weights_imported_before_the_cross_tower_lrn_was_recorded_get_it_with_a_word(run, tmp_path, capsys):
    old_import = run.save(1, source=checkpoints.CAFFE_SOURCE + 'bvlc_alexnet (bvlc_alexnet.caffemodel)')
    for find in (lambda: checkpoints.latest(str(tmp_path)), lambda: checkpoints.find(checkpoint=old_import)):
        prefix, meta = find()
        assert meta['lrn_across_towers'] is True
        err = capsys.readouterr().err
        assert err.startswith(f'warning: {old_import}.json was imported before "lrn_across_towers"') and \
            '--overwrite' in err and err.count('\n') == 1, err
    assert 'lrn_across_towers' not in checkpoints.read_meta(old_import)      # the user's file is left as it is
    run.save(2, source=checkpoints.CAFFE_SOURCE + 'bvlc_alexnet (x)', lrn_across_towers=False)   # recorded: kept
    run.save(3)                                                            # a run of this project: the paper's
    for step, across in ((2, False), (3, False)):
        assert checkpoints.find(checkpoint=f'{tmp_path}/model.ckpt-{step}')[1].get('lrn_across_towers', False) is across
    assert capsys.readouterr().err == ''


def test_a_full_disk_during_a_save_keeps_the_previous_and_leaves_nothing(run, tmp_path, monkeypatch):
    kept = run.save(1)
    real_save = tf.compat.v1.train.Saver.save

    def full_disk(self, sess, path, **kw):
        real_save(self, sess, path, **kw)          # the files are (partly) there, then the disk is full
        raise tf.errors.ResourceExhaustedError(None, None, 'model.ckpt-2.data-00000-of-00001; No space left on device')
    monkeypatch.setattr(tf.compat.v1.train.Saver, 'save', full_disk)
    with pytest.raises(DataError, match=r'could not save the checkpoint .*model.ckpt-2: .*No space left on device.*'
                                        r'-resume from .*model.ckpt-1') as e:
        run.save(2)
    assert '\n' not in str(e.value)
    assert sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / 'model.ckpt-2*'))) == []
    assert checkpoints.latest(str(tmp_path))[0] == kept


def test_leftovers_of_an_interrupted_save_are_cleaned_and_strays_ignored(run, tmp_path):
    (tmp_path / 'model.ckpt-9_temp').mkdir()
    (tmp_path / 'model.ckpt-9_temp' / 'part-00000-of-00001.index').write_bytes(b'x')
    (tmp_path / 'model.ckpt-9.json.tmp-123').write_text('{')
    for stray in ('model.ckpt-final.index', 'model.ckpt-final.json', 'model.ckpt-final.data-00000-of-00001'):
        (tmp_path / stray).write_text('mine')
    run.save(3)
    assert not (tmp_path / 'model.ckpt-9_temp').exists() and not (tmp_path / 'model.ckpt-9.json.tmp-123').exists()
    assert [os.path.basename(p) for p in checkpoints.list_checkpoints(str(tmp_path))] == ['model.ckpt-3']
    assert (tmp_path / 'model.ckpt-final.index').read_text() == 'mine'


def test_delete_run_removes_only_the_runs_own_files(run, tmp_path):
    run.save(1)
    run.save(2, folder=str(tmp_path / 'best'))
    (tmp_path / 'events.out.tfevents.1.host').write_text('e')
    keep = ['notes.txt', 'model.ckpt-final.index', 'data/img.png', 'best/mine.txt']
    for name in keep:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text('user')
    checkpoints.delete_run(str(tmp_path))
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob('*') if p.is_file())
    assert left == sorted(keep)


def test_repair_best_copies_the_step_the_json_calls_best(run, tmp_path, capsys):
    run.save(1, folder=str(tmp_path / 'best'))
    run.save(1)
    latest = run.save(2, best={'top1': 0.5, 'topk': 0.9, 'step': 2, 'epoch': 2})   # killed before best/ was saved
    meta = checkpoints.read_meta(latest)
    checkpoints.repair_best(str(tmp_path), meta)
    prefix, best_meta = checkpoints.latest(str(tmp_path / 'best'))
    assert prefix.endswith('best/model.ckpt-2') and best_meta['best']['step'] == 2
    assert [os.path.basename(p) for p in checkpoints.list_checkpoints(str(tmp_path / 'best'))] == ['model.ckpt-2']
    np.testing.assert_array_equal(tf.train.load_checkpoint(prefix).get_tensor('v'), np.full(256, 2.0))
    assert 'restored its best checkpoint, step 2' in capsys.readouterr().err
    assert checkpoints.for_use(str(tmp_path))[0] == prefix
