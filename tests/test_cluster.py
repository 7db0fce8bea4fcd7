"""cluster.py and servers.py: a parameter server and two workers on 127.0.0.1, as separate processes; the
cluster taken from TF_CONFIG.

Every wait is bounded, so a hung cluster fails the test instead of hanging CI.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import alexnet
import checkpoints
import cluster
import servers
import train
from conftest import REPO
from errors import DataError
from helpers import variables

WAIT = 150            # seconds: the longest any single wait in these tests may take
STOP = 60             # seconds: how soon a worker must stop once its parameter server is gone


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(('127.0.0.1', 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def make_data(root, per_class=16):
    rng = np.random.default_rng(0)
    for c in range(2):
        folder = root / 'train' / f'class{c}'
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / f'{i}.png')
    return root


def initial_weights(prefix):
    """A checkpoint of fresh weights both runs start from (the random draws depend on graph order)."""
    with tf.Graph().as_default():
        alexnet.inference(tf.zeros([1, 67, 67, 3]), 2, devices='/cpu:0')
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            return tf.compat.v1.train.Saver().save(sess, str(prefix))


class Task:
    """A train.py process whose stdout and stderr go to files (no pipe to fill up)."""

    def __init__(self, log, argv, tf_config=None):
        self.log, self.err = Path(log), Path(f'{log}.err')
        env = dict(os.environ, PYTHONUNBUFFERED='1', TF_CPP_MIN_LOG_LEVEL='2')
        env.pop('TF_CONFIG', None)
        if tf_config:
            env['TF_CONFIG'] = json.dumps(tf_config)
        with open(self.log, 'w') as out, open(self.err, 'w') as err:
            self.proc = subprocess.Popen([sys.executable, str(REPO / 'train.py'), *map(str, argv)], cwd=REPO,
                                         env=env, stdout=out, stderr=err)

    def output(self):
        """stdout, then stderr."""
        return self.log.read_text() + self.err.read_text()

    def error_lines(self):
        """The lines of stderr that start with error:, as a terminal shows them (after a progress bar's \\r)."""
        return [line.rsplit('\r', 1)[-1] for line in self.err.read_text().split('\n')
                if line.rsplit('\r', 1)[-1].startswith('error:')]

    def wait_for(self, text, seconds=WAIT):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if text in self.output():
                return
            assert self.proc.poll() is None, f'exited before printing {text!r}:\n{self.output()}'
            time.sleep(0.2)
        raise AssertionError(f'no {text!r} within {seconds} s:\n{self.output()}')

    def finish(self, seconds=WAIT):
        try:
            self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f'still running after {seconds} s:\n{self.output()}')
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def saved_step(run_dir):
    found = checkpoints.latest(str(run_dir))
    return found[1]['step'] if found else 0


def wait_for_checkpoint(run_dir, step, task):
    deadline = time.time() + WAIT
    while saved_step(run_dir) < step and time.time() < deadline:
        assert task.proc.poll() is None, task.output()
        time.sleep(0.2)
    assert saved_step(run_dir) >= step, task.output()


def small_cluster(tmp_path, *flags):
    """A parameter server and two workers on generated images, batch 2: the ps address, run folder, starters."""
    data, run_dir = make_data(tmp_path / 'data'), tmp_path / 'cluster'
    ps, w0, w1 = free_ports(3)
    common = ['--dataset', 'folder', '--data-dir', data, '--input-size', 67, '--batch-size', 2, '--no-validate',
              '--dropout', 0, '--lr', 0.002, '--save-minutes', 60, '--train-dir', run_dir, '--wait-seconds', WAIT,
              '--ps-hosts', f'127.0.0.1:{ps}', '--worker-hosts', f'127.0.0.1:{w0},127.0.0.1:{w1}', *flags]
    worker = lambda i, *argv: Task(tmp_path / f'worker{i}.log', [*argv, *common, '--job-name', 'worker',
                                                                 '--task-index', i])
    server = lambda: Task(tmp_path / 'ps.log', ['--job-name', 'ps', *common])
    return f'127.0.0.1:{ps}', run_dir, worker, server


@pytest.mark.slow
def test_sync_cluster_matches_one_process_and_resumes_after_losing_its_parameter_server(tmp_path):
    data, run_dir = make_data(tmp_path / 'data'), tmp_path / 'cluster'
    init = initial_weights(tmp_path / 'init' / 'weights')
    ps, w0, w1 = free_ports(3)
    common = ['--dataset', 'folder', '--data-dir', data, '--input-size', 67, '--batch-size', 4, '--no-validate',
              '--dropout', 0, '--lr', 0.002, '--save-minutes', 60, '--train-dir', run_dir, '--wait-seconds', WAIT,
              '--ps-hosts', f'127.0.0.1:{ps}', '--worker-hosts', f'127.0.0.1:{w0},127.0.0.1:{w1}']
    worker = lambda i, *argv: Task(tmp_path / f'worker{i}.log', [*argv, *common, '--job-name', 'worker',
                                                                 '--task-index', i])
    server = lambda name: Task(tmp_path / f'{name}.log', ['--job-name', 'ps', *common])
    tasks = []
    try:
        # Workers started before the parameter server wait for it, then train in lock step.
        tasks += [worker(0, '-scratch', '--model_path', init, '--save-steps', 1), worker(1, '-scratch')]
        for t in tasks:
            t.wait_for(f'waiting for parameter server 127.0.0.1:{ps}')
        tasks.append(server('ps'))
        tasks[1].wait_for('worker 1 of 2 (synchronous) at step 0')
        deadline = time.time() + WAIT
        while saved_step(run_dir) < 2 and time.time() < deadline:
            time.sleep(0.2)
        assert saved_step(run_dir) >= 2, tasks[0].output()
        # A killed worker stalls the synchronous steps (the chief does not go on alone); SIGTERM then
        # saves and stops the chief, whether it waits in a step or before one.
        tasks[1].kill()
        time.sleep(3)
        tasks[0].proc.send_signal(signal.SIGTERM)
        assert tasks[0].finish(STOP) == 0, tasks[0].output()
        out = tasks[0].output()
        assert re.search(r'stopped by SIGTERM (while waiting for worker 1 \(127\.0\.0\.1:\d+, gone\)|during a step '
                         r'that did not end); checkpoint saved at step \d+', out), out
        assert 'Traceback' not in out, out
        tasks[2].kill()
        # A restart of every task resumes from the chief's last checkpoint.
        step = saved_step(run_dir)
        tasks += [server('ps2'), worker(0, '-resume', '--max-steps', step + 2, '--save-steps', 0),
                  worker(1, '-resume', '--max-steps', step + 2)]
        assert tasks[4].finish() == 0 and tasks[5].finish() == 0, tasks[4].output() + tasks[5].output()
        assert f'worker 0 of 2 (chief, synchronous) at step {step}' in tasks[4].output()
        assert saved_step(run_dir) == step + 2
        assert tf.train.latest_checkpoint(str(run_dir)) == checkpoints.latest(str(run_dir))[0]
    finally:
        for t in tasks:
            t.kill()
    # One process with the combined batch (2 x 4) over the same data, from the same weights: the same run.
    single = tmp_path / 'single'
    assert train.main([str(a) for a in ['-scratch', '--model_path', init, '--max-steps', step + 2, '--batch-size', 8,
                                        *common[:6], *common[8:15], '--train-dir', single]]) == 0
    a, b = variables(checkpoints.latest(str(single))[0]), variables(checkpoints.latest(str(run_dir))[0])
    assert a.keys() == b.keys() and len(a) > 60        # weights, momentum, step, learning rate
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-3, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_a_dead_parameter_server_stops_every_synchronous_worker_with_a_one_line_error(tmp_path):
    ps, run_dir, worker, server = small_cluster(tmp_path)
    tasks = []
    try:
        tasks += [server(), worker(0, '-scratch', '--save-steps', 1), worker(1, '-scratch')]
        tasks[2].wait_for('worker 1 of 2 (synchronous) at step 0')
        wait_for_checkpoint(run_dir, 1, tasks[1])       # a synchronous step: both workers are training
        tasks[0].proc.send_signal(signal.SIGKILL)
        killed = time.time()
        for t in tasks[1:]:                             # the chief and the other worker alike
            assert t.finish(STOP) == 1, t.output()
        assert time.time() - killed < STOP
        for t in tasks[1:]:
            out, errors = t.output(), t.error_lines()
            assert len(errors) == 1, out
            assert f'lost the parameter server ({ps})' in errors[0] and 'with -resume' in errors[0], out
            assert 'Traceback' not in out and 'the chief ended the run' not in out, out
    finally:
        for t in tasks:
            t.kill()


@pytest.mark.slow
def test_a_dead_worker_stops_the_synchronous_chief_and_a_chief_restarted_alone_is_refused(tmp_path):
    # 15 s, not 6: a worker's first steps (pipeline start-up, graph optimisation) can take several seconds
    # while the other test process shares the 2 cores, and a chief that times out then stops too early.
    ps, run_dir, worker, server = small_cluster(tmp_path, '--step-timeout', 15)
    tasks = []
    try:
        tasks += [server(), worker(0, '-scratch', '--save-steps', 1), worker(1, '-scratch')]
        tasks[2].wait_for('worker 1 of 2 (synchronous) at step 0')
        wait_for_checkpoint(run_dir, 2, tasks[1])
        before = saved_step(run_dir)
        tasks[2].proc.send_signal(signal.SIGKILL)
        assert tasks[1].finish(STOP) == 1, tasks[1].output()     # without lock_step it trains on alone
        out, errors = tasks[1].output(), tasks[1].error_lines()
        assert len(errors) == 1 and 'Traceback' not in out, out
        found = re.search(r'waited \d+ s \(--step-timeout\) for worker 1 \(127\.0\.0\.1:\d+, gone\); restart every '
                          r'task with -resume; checkpoint saved at step (\d+)', errors[0])
        assert found, out
        assert saved_step(run_dir) == int(found.group(1)) <= before + 2   # the worker's last step at most
        # The parameter server still holds the run: a chief started alone next to it is refused.
        tasks.append(worker(0, '-resume'))
        assert tasks[-1].finish() == 2, tasks[-1].output()
        errors = tasks[-1].error_lines()
        assert len(errors) == 1 and f'the parameter server ({ps}) already holds a run' in errors[0], \
            tasks[-1].output()
        assert saved_step(run_dir) == int(found.group(1))
    finally:
        for t in tasks:
            t.kill()


@pytest.mark.slow
def test_async_workers_each_add_their_steps_to_the_global_step(tmp_path):
    ps, run_dir, worker, server = small_cluster(tmp_path, '--async', '--epochs', 1)
    tasks = []
    try:
        tasks += [server(), worker(0, '-scratch'), worker(1, '-scratch')]
        for t in tasks[1:]:
            assert t.finish() == 0, t.output()
        out = tasks[1].output() + tasks[2].output()
        assert 'worker 0 of 2 (chief, asynchronous) at step 0' in out, out
        assert 'worker 1 of 2 (asynchronous) at step' in out, out
        assert 'Traceback' not in out and not tasks[1].error_lines() and not tasks[2].error_lines(), out
    finally:
        for t in tasks:
            t.kill()
    own = {int(w): int(n) for w, n in re.findall(r'worker (\d): epoch 1 done, (\d+) steps of its own', out)}
    assert own.keys() == {0, 1} and min(own.values()) >= 1, out
    prefix, meta = checkpoints.latest(str(run_dir))
    step, epoch = int(variables(prefix)['global_step']), meta['steps_per_epoch']
    assert epoch >= 2                             # global steps in an epoch: both workers' shards
    # Every step of either worker added one to the global step; at the chief's save, at most the other
    # worker's last step was still on its way (and neither started a step once the epoch was done).
    assert epoch <= meta['step'] <= step <= own[0] + own[1] <= min(step, epoch) + 1, (own, meta['step'], step)


@pytest.mark.slow
def test_every_task_of_a_finished_synchronous_run_exits_0_every_time(tmp_path):
    # Issue 42: the chief's update thread was still inside TensorFlow when the interpreter exited, and now
    # and then (a race: 1 run in 6 on a loaded machine) the chief died with SIGABRT after its last line.
    for attempt in range(3):
        ps, run_dir, worker, server = small_cluster(tmp_path / f'attempt{attempt}')
        tasks = []
        try:
            tasks += [server(), worker(0, '-scratch', '--max-steps', 4), worker(1, '-scratch', '--max-steps', 4)]
            for t in tasks[1:]:
                assert t.finish() == 0, t.output()
            tasks[0].wait_for('listening on')
            tasks[0].proc.send_signal(signal.SIGTERM)         # how a cluster manager stops the parameter server
            assert tasks[0].finish(STOP) == 0, tasks[0].output()
        finally:
            for t in tasks:
                t.kill()
        assert tasks[0].log.read_text().splitlines()[-1] == 'parameter server stopped by SIGTERM', tasks[0].output()
        lines = tasks[1].log.read_text().splitlines()
        assert 'worker 0 of 2 (chief, synchronous) at step 0' in lines, tasks[1].output()
        assert lines[-1] == f'reached --max-steps at step 4: checkpoint saved; continue with: python train.py ' \
                            f'-resume --train-dir {run_dir}', tasks[1].output()
        assert 'worker 1: done at step 4' in tasks[2].output(), tasks[2].output()
        for t in tasks:
            out = t.output()
            assert not t.error_lines() and not re.search('Traceback|terminate called|FATAL', out), out
        assert saved_step(run_dir) == 4


def inside_tensorflow(thread):
    """True while the thread waits in a Session.run."""
    frame = sys._current_frames().get(thread.ident)
    while frame and frame.f_code.co_name != '_call_tf_sessionrun':
        frame = frame.f_back
    return frame is not None


def waiting_chief():
    """A synchronous chief (cluster.Worker) whose update thread waits, inside TensorFlow, for gradients no
    worker will send (as after the last step): the Worker, its update thread, the trainer's session."""
    spec = tf.train.ClusterSpec({'ps': ['127.0.0.1:2222'], 'worker': ['127.0.0.1:2223', '127.0.0.1:2224']})
    place = cluster.Worker(SimpleNamespace(task_index=0, async_updates=False, step_timeout=60), spec,
                           SimpleNamespace(target=''))
    tokens, gradients = tf.queue.FIFOQueue(4, tf.int64), tf.queue.FIFOQueue(4, tf.float32)
    place.start_applier(SimpleNamespace(enqueue_ops=[gradients.dequeue()],
                                        cancel_op=tokens.close(cancel_pending_enqueues=True)),
                        tf.compat.v1.ConfigProto())
    thread = place.applier
    for _ in range(500):
        if inside_tensorflow(thread):
            break
        thread.join(0.01)
    assert inside_tensorflow(thread)
    return place, thread, tf.compat.v1.Session()


@pytest.mark.slow
def test_closing_the_chief_ends_its_update_thread_before_its_session_closes():
    with tf.Graph().as_default():
        place, thread, sess = waiting_chief()
        with sess:
            place.close(SimpleNamespace(sess=sess))
            assert not thread.is_alive()        # joined: nothing left inside TensorFlow when the process exits
            assert place.applier is None
            place.stop_applier()                # run_worker's finally does it again: harmless


@pytest.mark.slow
def test_an_update_thread_that_does_not_stop_ends_the_process_at_once(monkeypatch, capsys):
    """Rather than exit the interpreter with the thread inside TensorFlow (SIGABRT): one line, status 1."""
    with tf.Graph().as_default():
        place, thread, sess = waiting_chief()
        closing = place.applier_sess
        monkeypatch.setattr(place, 'applier_sess', SimpleNamespace(close=lambda: None))   # cancels nothing
        monkeypatch.setattr(cluster, 'APPLIER_STOP_SECONDS', 0.1)
        exits = []
        monkeypatch.setattr(cluster.os, '_exit', exits.append)
        place.stop_applier()
        assert exits == [1]
        err = capsys.readouterr().err
        assert err.count('error:') == 1 and 'update thread did not stop within 0.1 s' in err, err
        assert 'parameter server 127.0.0.1:2222 stuck?' in err and 'with -resume' in err, err
        closing.close()
        thread.join(10)
        assert not thread.is_alive()
        sess.close()


@pytest.mark.slow
def test_flag_errors_and_ports_in_use(capsys):
    busy = socket.socket()
    busy.bind(('127.0.0.1', 0))
    busy.listen()
    port = busy.getsockname()[1]
    free, = free_ports(1)
    small = ['--synthetic', '--num-classes', 4, '--input-size', 67]
    try:
        for argv, message in [
                (['-scratch', *small, '--job-name', 'worker', '--ps-hosts', f'127.0.0.1:{free}',
                  '--worker-hosts', f'127.0.0.1:{port}'], f'port 127.0.0.1:{port} is in use'),
                (['--job-name', 'ps', '--ps-hosts', f'127.0.0.1:{port}', '--worker-hosts', f'127.0.0.1:{free}'],
                 f'port 127.0.0.1:{port} is in use'),
                (['-scratch', *small, '--job-name', 'worker', '--task-index', 2, '--ps-hosts', 'a:1',
                  '--worker-hosts', 'a:2,b:2'], '--task-index 2 is out of range'),
                (['-scratch', *small, '--job-name', 'worker', '--worker-hosts', 'a:2'], 'needs --ps-hosts'),
                (['--job-name', 'ps', '--ps-hosts', 'localhost', '--worker-hosts', 'a:2'], "'localhost' is not host:port")]:
            assert train.main([str(a) for a in argv]) == 2, argv
            err = capsys.readouterr().err
            assert message in err and err.startswith('error:') and 'Traceback' not in err, err
    finally:
        busy.close()


# TF_CONFIG, as Kubeflow's TFJob sets it: the chief is worker 0, TF_CONFIG's workers follow it.
PS, CHIEF, WORKERS = ['ps-0:2222'], ['chief-0:2222'], ['worker-0:2222', 'worker-1:2222']
HOSTS = dict(ps_hosts='ps-0:2222', worker_hosts='chief-0:2222,worker-0:2222,worker-1:2222')


def from_tf_config(monkeypatch, value, **flags):
    monkeypatch.setenv('TF_CONFIG', value if isinstance(value, str) else json.dumps(value))
    return servers.from_tf_config(flags)


def test_tf_config_makes_its_chief_worker_0_and_its_workers_follow(monkeypatch, capsys):
    cluster_ = {'ps': PS, 'chief': CHIEF, 'worker': WORKERS, 'evaluator': ['eval-0:2222']}
    for job, index, ours in [('chief', 0, ('worker', 0)), ('worker', 0, ('worker', 1)), ('worker', 1, ('worker', 2)),
                             ('ps', 0, ('ps', 0))]:
        got = from_tf_config(monkeypatch, {'cluster': cluster_, 'task': {'type': job, 'index': index}})
        assert got == dict(HOSTS, job_name=ours[0], task_index=ours[1]), (job, index)
    assert capsys.readouterr().out.splitlines()[1] == \
        f'TF_CONFIG: its worker 0 is --job-name worker --task-index 1 --ps-hosts {HOSTS["ps_hosts"]} ' \
        f'--worker-hosts {HOSTS["worker_hosts"]}'
    # Without a chief, TF_CONFIG's worker 0 is the chief; master is the chief's older name.
    got = from_tf_config(monkeypatch, {'cluster': {'ps': PS, 'worker': WORKERS},
                                       'task': {'type': 'worker', 'index': 1}})
    assert got == dict(job_name='worker', task_index=1, ps_hosts='ps-0:2222', worker_hosts=','.join(WORKERS))
    got = from_tf_config(monkeypatch, {'cluster': {'ps': PS, 'master': CHIEF}, 'task': {'type': 'master', 'index': 0}})
    assert got == dict(job_name='worker', task_index=0, ps_hosts='ps-0:2222', worker_hosts='chief-0:2222')


def test_cluster_flags_win_over_tf_config_and_an_unset_one_is_no_cluster(monkeypatch, capsys):
    value = {'cluster': {'ps': PS, 'worker': WORKERS}, 'task': {'type': 'worker', 'index': 0}}
    assert from_tf_config(monkeypatch, value, job_name='ps', task_index=None, ps_hosts='a:1') == {}
    assert capsys.readouterr().err == 'note: TF_CONFIG is ignored: the cluster flags given (--job-name, --ps-hosts) ' \
                                      'win\n'
    for empty in ['', '  ']:
        assert from_tf_config(monkeypatch, empty) == {}
    monkeypatch.delenv('TF_CONFIG')
    assert servers.from_tf_config({}) == {}
    assert capsys.readouterr() == ('', '')


@pytest.mark.parametrize('value, message', [
    ('{"cluster": {"ps": ["a:1"]', 'TF_CONFIG is not valid JSON (Expecting'),
    ('"cluster"', 'TF_CONFIG is not of the form {"cluster": '),
    ({'cluster': {'ps': 'a:1', 'worker': ['b:1']}, 'task': {'type': 'ps', 'index': 0}},
     "The tasks for job 'ps' must be a list"),
    ({'cluster': {'ps': PS, 'worker': WORKERS}, 'task': {'type': 'worker', 'index': 'one'}},
     "TF_CONFIG is not of the form {"),
    ('{}', 'TF_CONFIG has no "cluster" of tasks'),
    ({'cluster': {'ps': PS, 'worker': WORKERS}}, 'TF_CONFIG has no "task"'),
    ({'cluster': {'ps': PS, 'worker': WORKERS}, 'task': {'type': 'worker'}}, 'TF_CONFIG has no "task"'),
    ({'cluster': {'ps': PS, 'worker': WORKERS, 'evaluator': ['e:1']}, 'task': {'type': 'evaluator', 'index': 0}},
     "TF_CONFIG's task is an evaluator, which train.py does not run"),
    ({'cluster': {'ps': PS, 'worker': WORKERS}, 'task': {'type': 'chief', 'index': 0}},
     "TF_CONFIG's task is a chief, but its cluster lists no chief (only ps, worker)"),
    ({'cluster': {'ps': PS, 'worker': WORKERS, 'tpu': ['t:1']}, 'task': {'type': 'worker', 'index': 0}},
     'TF_CONFIG\'s cluster has a job "tpu"'),
    ({'cluster': {'ps': PS, 'worker': {'1': 'b:1'}}, 'task': {'type': 'worker', 'index': 1}}, 'with gaps'),
    ({'cluster': {'ps': PS, 'chief': CHIEF, 'master': ['m:1']}, 'task': {'type': 'chief', 'index': 0}},
     "TF_CONFIG's cluster has 2 chiefs"),
    ({'cluster': {'ps': PS}, 'task': {'type': 'ps', 'index': 0}}, "TF_CONFIG's cluster has no chief or worker"),
    ({'cluster': {'chief': CHIEF, 'worker': WORKERS}, 'task': {'type': 'chief', 'index': 0}},
     "TF_CONFIG's cluster has no ps: train.py's cluster keeps the variables on parameter servers"),
    ({'cluster': {'ps': PS, 'chief': CHIEF, 'worker': WORKERS}, 'task': {'type': 'worker', 'index': 2}},
     "TF_CONFIG's task index 2 is out of range: its cluster lists 2 worker task(s), numbered from 0"),
    ({'cluster': {'ps': PS, 'worker': WORKERS}, 'task': {'type': 'ps', 'index': -1}}, "TF_CONFIG's task index -1"),
    ({'cluster': {'ps': ['ps-0'], 'worker': WORKERS}, 'task': {'type': 'ps', 'index': 0}},
     "TF_CONFIG's ps: 'ps-0' is not host:port"),
])
def test_a_tf_config_train_py_cannot_run_is_one_line(monkeypatch, value, message):
    with pytest.raises(DataError) as e:
        from_tf_config(monkeypatch, value)
    assert message in str(e.value) and '\n' not in str(e.value), str(e.value)


def test_train_py_takes_its_cluster_from_tf_config_before_anything_else(monkeypatch, capsys):
    """A parameter server needs no -scratch there either; a malformed TF_CONFIG is one error line, exit 2."""
    monkeypatch.setenv('TF_CONFIG', json.dumps({'cluster': {'ps': PS, 'worker': WORKERS},
                                                'task': {'type': 'ps', 'index': 0}}))
    args = train.parse_args([])
    assert (args.job_name, args.task_index, args.ps_hosts) == ('ps', 0, 'ps-0:2222')
    monkeypatch.setenv('TF_CONFIG', '{"cluster": ')
    assert train.main(['-scratch', '--synthetic']) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: TF_CONFIG is not valid JSON') and err.count('\n') == 1, err


@pytest.mark.slow
def test_a_cluster_started_by_tf_config_alone_trains_and_every_task_exits_0(tmp_path):
    """A parameter server, a chief and a worker, as a TFJob starts them: the same command for every task,
    no cluster flag, TF_CONFIG saying which task each one is."""
    run_dir = tmp_path / 'run'
    ps, chief, worker = (f'127.0.0.1:{port}' for port in free_ports(3))
    tasks_of = {'ps': [ps], 'chief': [chief], 'worker': [worker]}
    command = ['-scratch', '--synthetic', '--num-classes', 4, '--input-size', 67, '--batch-size', 2, '--dropout', 0,
               '--max-steps', 4, '--train-dir', run_dir, '--wait-seconds', WAIT]
    task = lambda job: Task(tmp_path / f'{job}.log', command, {'cluster': tasks_of, 'task': {'type': job, 'index': 0}})
    tasks = []
    try:
        tasks += [task('ps'), task('chief'), task('worker')]
        for t in tasks[1:]:
            assert t.finish() == 0, t.output()
        tasks[0].wait_for('listening on')
        tasks[0].proc.send_signal(signal.SIGTERM)            # as a TFJob ends its parameter servers
        assert tasks[0].finish(STOP) == 0, tasks[0].output()
    finally:
        for t in tasks:
            t.kill()
    assert f'parameter server 0 of 1 listening on {ps}' in tasks[0].output(), tasks[0].output()
    assert 'worker 0 of 2 (chief, synchronous) at step 0' in tasks[1].output(), tasks[1].output()
    assert f'TF_CONFIG: its worker 0 is --job-name worker --task-index 1 --ps-hosts {ps} --worker-hosts ' \
           f'{chief},{worker}' in tasks[2].output(), tasks[2].output()
    assert 'worker 1: done at step 4' in tasks[2].output(), tasks[2].output()
    for t in tasks:
        out = t.output()
        assert not t.error_lines() and not re.search('Traceback|terminate called|FATAL', out), out
    assert saved_step(run_dir) == 4
