"""trainer.py, epochs.py and stopping.py: a step that does not end is heard and given up; the run folder; the epoch."""
import socket
import threading

import numpy as np
import pytest
import tensorflow as tf

import checkpoints
import cluster
import epochs
import stopping
import trainer
from errors import DataError


class BlockedSession:
    """A session whose run waits until released (a pipeline waiting on data, a sync step on a dead worker)."""

    def __init__(self):
        self.release = threading.Event()

    def run(self, fetches, feed_dict=None):
        self.release.wait(30)
        return {'done': True}


def stepper(**attributes):
    t = trainer.Trainer.__new__(trainer.Trainer)          # the loop's parts only: no graph needed
    t.sess, t.stop, t.place = BlockedSession(), type('Stop', (), {'signal': None})(), trainer.OneMachine()
    for k, v in attributes.items():
        setattr(t, k, v)
    return t


@pytest.mark.slow
def test_a_signal_during_a_step_that_does_not_end_is_heard(monkeypatch):
    monkeypatch.setattr(stopping, 'BLOCKED_STEP_GRACE', 0.5)
    t = stepper()
    threading.Timer(0.3, lambda: setattr(t.stop, 'signal', 'SIGTERM')).start()
    with pytest.raises(stopping.StepBlocked, match='stopped by SIGTERM during a step that did not end') as e:
        t.run({})                  # not heard, the step would end by itself (30 s) and raise nothing
    assert e.value.by_signal
    t.sess.release.set()


def test_a_step_that_ends_is_returned_and_its_errors_raised_in_the_caller():
    t = stepper()
    t.sess.release.set()
    assert t.run({}) == {'done': True}

    class Failing:
        def run(self, fetches, feed_dict=None):
            raise tf.errors.OutOfRangeError(None, None, 'end of sequence')
    t.sess = Failing()
    with pytest.raises(tf.errors.OutOfRangeError):
        t.run({})


def test_a_synchronous_step_past_its_timeout_names_the_worker_that_is_gone():
    alive = socket.socket()
    alive.bind(('127.0.0.1', 0))
    alive.listen()
    gone = socket.socket()
    gone.bind(('127.0.0.1', 0))
    gone_port = gone.getsockname()[1]
    gone.close()
    spec = tf.train.ClusterSpec({'ps': [f'127.0.0.1:{alive.getsockname()[1]}'],
                                 'worker': ['127.0.0.1:1', f'127.0.0.1:{alive.getsockname()[1]}',
                                            f'127.0.0.1:{gone_port}']})
    worker = cluster.Worker.__new__(cluster.Worker)          # the place's parts only: no server needed
    worker.step_timeout, worker.spec, worker.task, worker.worker_steps = 0.5, spec, 0, None
    t = stepper(place=worker)
    with pytest.raises(stopping.StepBlocked) as e:
        t.run({})
    message = str(e.value)
    assert not e.value.by_signal
    assert f'worker 2 (127.0.0.1:{gone_port}, gone)' in message and 'worker 1' not in message
    assert '--step-timeout' in message and 'restart every task with -resume' in message
    t.sess.release.set()
    alive.close()


def test_the_epoch_keeps_its_figures_and_recent_means():
    e = epochs.Epoch(3)
    for i in range(60):
        e.add(float(i), np.array([1.0, 1.0]) if i >= 10 else np.array([0.0, 0.0]), 100.0)
    loss, (top1, topk) = e.recent()
    assert loss == pytest.approx(np.mean(range(10, 60))) and top1 == topk == 1.0
    assert e.speed == pytest.approx(100.0) and e.index == 3


def test_the_run_folder_is_a_folder_and_refuses_old_checkpoints(tmp_path):
    a = type('A', (), dict(train_dir=str(tmp_path / 'file'), scratch=True, overwrite=False))()
    (tmp_path / 'file').write_text('mine')
    with pytest.raises(DataError, match='is a file'):
        checkpoints.prepare_run_folder(a)
    a.train_dir = str(tmp_path / 'run')
    lock = checkpoints.prepare_run_folder(a)
    with pytest.raises(DataError, match='is in use by process'):
        checkpoints.prepare_run_folder(a)
    lock.release()
    checkpoints.prepare_run_folder(a).release()
