"""Training on several machines with TensorFlow's gRPC runtime, the classic TF1 way.

Parameter servers (--job-name ps) hold the variables; workers (--job-name worker)
each build the whole model (all its --replicas) on their own devices, read their
own shard of the data, and send gradients. Synchronous by default: every step
averages all workers' gradients (SyncReplicasOptimizer), so W workers with
--batch-size B train like one process with batch W x B; --async lets each worker
update on its own. Worker 0 is the chief: it initialises or restores the
variables, saves checkpoints (checkpoints.py, so -resume works), writes the
TensorBoard logs and validates; the others wait for it. Start every task with the
same flags, changing only --job-name and --task-index:

    # machine A (10.0.0.1): the parameter server, and worker 0 (the chief)
    python train.py --job-name ps --task-index 0 --ps-hosts 10.0.0.1:2222 --worker-hosts 10.0.0.1:2223,10.0.0.2:2223
    python train.py -scratch --data-dir ILSVRC2012 --job-name worker --task-index 0 \\
        --ps-hosts 10.0.0.1:2222 --worker-hosts 10.0.0.1:2223,10.0.0.2:2223
    # machine B (10.0.0.2): worker 1
    python train.py -scratch --data-dir ILSVRC2012 --job-name worker --task-index 1 \\
        --ps-hosts 10.0.0.1:2222 --worker-hosts 10.0.0.1:2223,10.0.0.2:2223

Three levels of parallelism, each inside the next:

    machines  ps 0 (variables)  <-- gradients / weights -->  worker 0 (chief)   worker 1   ...
    replicas  each worker: --replicas R copies, 1/R of its batch each (parallel.py)
    towers    each replica: towers a and b on two devices, as in the paper (alexnet.py)

A worker started before the parameter server waits for it (--wait-seconds). If
the parameter server dies, the workers stop with an error; restart every task
with -resume and the chief continues from its last checkpoint. Synchronous
workers keep in lock step (lock_step): one that is gone or stuck stops the run
after --step-timeout, with a checkpoint and one line naming it. A chief started
next to a parameter server that still holds a run is refused.

Where the tasks are (these flags, or a cluster manager's TF_CONFIG), each task's
gRPC server and a parameter server's life are in servers.py.
"""
import os
import re
import sys
import threading
import time

import tensorflow as tf
from tqdm import tqdm

import checkpoints
import parallel
import preprocessing
import servers
import stopping
import trainer
from errors import DataError

STEPS_AHEAD = 1        # how many steps a synchronous worker may run ahead of the slowest (see lock_step)
POLL_SECONDS = 0.1     # how often a worker that is ahead looks at the others' step counts
LOOK_TIMEOUT = 30      # seconds a look at those counts may take (a parameter server that does not answer)
APPLIER_STOP_SECONDS = 60    # how long the chief's update thread may take to end once its session is closed
LOST = (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError, tf.errors.OutOfRangeError,
        tf.errors.NotFoundError, tf.errors.FailedPreconditionError, tf.errors.InternalError,
        tf.errors.DeadlineExceededError)


def _end_progress_bars():
    """Finish the progress bar on screen, so that an error message starts a line of its own."""
    for bar in list(getattr(tqdm, '_instances', ())):
        try:
            bar.close()
        except Exception:       # a bar is only cosmetics: never let it hide the error
            pass


class _Greedy:
    """Each new variable goes to the parameter server holding the fewest bytes (fc6 alone is ~70%)."""

    def __init__(self, tasks):
        self.load = [0] * tasks

    def __call__(self, op):
        try:
            size = tf.TensorShape(op.get_attr('shape')).num_elements() or 1
        except (ValueError, TypeError):
            size = 1
        task = self.load.index(min(self.load))
        self.load[task] += size
        return task


def device_setter(spec, task):
    """Variables on the parameter servers' CPUs, everything else on this worker (its tower devices)."""
    setter = tf.compat.v1.train.replica_device_setter(cluster=spec, worker_device=f'/job:worker/task:{task}',
                                                      ps_strategy=_Greedy(spec.num_tasks('ps')))

    def place(op):
        device = setter(op)
        if device.startswith('/job:ps'):
            return tf.DeviceSpec.from_string(device).replace(device_type='CPU', device_index=0).to_string()
        return device
    return place


class Worker:
    """Where the steps run on a cluster: this task's part of a between-graph replicated run. It is a
    trainer.Trainer's place (the methods of trainer.OneMachine): the variables on the parameter servers,
    this worker's shard of the data, the chief's restore, SyncReplicasOptimizer, the lock step."""

    def __init__(self, a, spec, server):
        self.a, self.spec, self.server, self.task = a, spec, server, a.task_index
        self.workers = spec.num_tasks('worker')
        self.is_chief = self.task == 0
        self.sync = not a.async_updates and self.workers > 1
        self.sync_opt, self.applier, self.applier_sess, self.stopping = None, None, None, False
        self.worker_steps = None       # sync: every worker's step count, on the parameter server (lock_step)
        self.step_timeout = a.step_timeout if self.sync else None
        self.cpu = f'/job:worker/task:{self.task}/device:CPU:0'

    def device_scope(self):
        return tf.compat.v1.device(device_setter(self.spec, self.task))

    def steps_per_epoch(self, a, ds):
        """Global steps per epoch: each worker reads 1/W of the data; async, every worker's steps count."""
        if a.synthetic:
            return trainer.SYNTHETIC_EPOCH_STEPS
        return preprocessing.steps_per_epoch(ds.train, a.batch_size, self.workers) * self.updates_per_step()

    def wrap_optimizer(self, optimizer):
        if not self.sync:
            return optimizer
        self.sync_opt = tf.compat.v1.train.SyncReplicasOptimizer(optimizer, self.workers, self.workers)
        return self.sync_opt

    def inputs(self, training, meta):
        a = self.a
        shape = [a.batch_size, a.input_size, a.input_size, 3]
        with tf.device(self.cpu):
            if a.synthetic:            # a different random stream on every worker
                return (tf.random.uniform(shape, -128, 128, seed=self.task + 1),
                        tf.random.uniform(shape[:1], 0, a.num_classes, tf.int64, seed=self.task + 1))
            self.iterator = tf.compat.v1.data.Iterator.from_structure((tf.float32, tf.int64), (shape, shape[:1]))
            return self.iterator.get_next()

    def session(self, training, meta):
        """Wait for the parameter servers; the chief restores or initialises, the others wait for it."""
        a = self.a
        # Set by the chief once everything is in place (restored, warm-started); never saved in checkpoints.
        self.ready_flag = tf.compat.v1.Variable(True, trainable=False, collections=[], name='chief_ready')
        if self.sync:
            self.worker_steps = tf.compat.v1.Variable(tf.zeros([self.workers], tf.int64), trainable=False,
                                                      collections=[], name='worker_steps')
            with tf.control_dependencies([training.train_op]):
                self.count_step = tf.compat.v1.scatter_add(self.worker_steps, [self.task],
                                                           tf.constant([1], tf.int64))
        if self.sync_opt:              # SyncReplicasOptimizer's own readiness check: this file has its own
            self.sync_opt.ready_for_local_init_op.mark_used()
        servers.wait_for_parameter_servers(self.spec, a.wait_seconds)
        config = parallel.session_config(a.precision, a.devices.split(','))
        config.device_filters[:] = ['/job:ps', f'/job:worker/task:{self.task}']   # not the other workers
        sess = tf.compat.v1.Session(self.server.target, config=config)
        if self.is_chief:
            self.refuse_a_live_cluster(sess, training.global_step)
            training.restore_or_initialise(sess, meta)
            if self.sync_opt:
                sess.run(self.sync_opt.chief_init_op)
                self.start_applier(self.sync_opt.get_chief_queue_runner(), config)
                sess.run(self.worker_steps.initializer)
            sess.run(self.ready_flag.initializer)
        else:
            self.wait_for_chief(sess)
            if self.sync_opt:
                sess.run(self.sync_opt.local_step_init_op)
        step = int(sess.run(training.global_step))
        if not a.synthetic:     # this worker's shard, from the step the run is at
            data = preprocessing.train_dataset(training.ds.train, a.batch_size, a.input_size, training.ds.mean,
                                               a.resize_size, seed=a.seed, start_step=step // self.updates_per_step(),
                                               shard_index=self.task, num_shards=self.workers, cutout=a.cutout,
                                               **preprocessing.model_input(vars(a)))
            with tf.device(self.cpu):
                sess.run(self.iterator.make_initializer(data))
        print(f'worker {self.task} of {self.workers} ({"chief, " if self.is_chief else ""}'
              f'{"synchronous" if self.sync else "asynchronous"}) at step {step}', flush=True)
        return sess

    def refuse_a_live_cluster(self, sess, global_step):
        """A chief restarted alone, next to a parameter server that outlived it, would overwrite the
        variables under workers that are still training: refuse, and say to restart every task."""
        if sess.run(tf.compat.v1.is_variable_initialized(global_step)):
            raise DataError(f'the parameter server ({",".join(self.spec.job_tasks("ps"))}) already holds a run\'s '
                            f'variables: another chief is running, or this one was restarted alone; stop every '
                            f'task of the cluster (parameter servers and workers) and start them all again with '
                            f'-resume')

    def run(self, training, fetches, feed=None):
        """A step, heard by signals, in lock step with the other workers when synchronous (lock_step)."""
        if self.worker_steps is not None:
            self.lock_step(training.sess, training.stop)
            fetches = dict(fetches, counted=self.count_step)
        return stopping.run_heard(training.sess, fetches, training.stop, self.step_timeout, self.blocked_message,
                                  feed)

    def lock_step(self, sess, stop):
        """Wait until no other worker is more than STEPS_AHEAD steps behind this one. SyncReplicasOptimizer
        averages any W gradients of the current step, so without this a worker whose partner died or
        stalled would go on alone, taking the missing worker's turn (and half the data would go unseen).
        After --step-timeout the run stops, naming the worker it waited for."""
        started, options = time.time(), tf.compat.v1.RunOptions(timeout_in_ms=int(1000 * LOOK_TIMEOUT))
        while True:
            counts = sess.run(self.worker_steps, options=options)
            behind = [i for i, n in enumerate(counts) if n < counts[self.task] - STEPS_AHEAD]
            if not behind:
                return
            waited = time.time() - started
            if stop.signal:
                raise stopping.StepBlocked(f'stopped by {stop.signal} while waiting for '
                                           f'{servers.describe_workers(self.spec, behind)}', by_signal=True)
            if waited > self.step_timeout:
                raise stopping.StepBlocked(self.blocked_message(waited, behind), by_signal=False)
            time.sleep(POLL_SECONDS)

    def start_applier(self, runner, config):
        """The chief's update thread (apply_updates), in a session of its own: closing that session is what
        ends the step it waits in once the run is over (stop_applier)."""
        self.close_queue = runner.cancel_op
        self.applier_sess = tf.compat.v1.Session(self.server.target, config=config)
        self.applier = threading.Thread(target=self.apply_updates, args=(self.applier_sess, runner.enqueue_ops[0]),
                                        name='sync replicas applier', daemon=True)
        self.applier.start()

    def apply_updates(self, sess, update):
        """The chief's thread: wait for every worker's gradients, apply their average, release the workers."""
        while not self.stopping:
            try:
                sess.run(update)
            except Exception:          # stopping, or a lost server: the training loop reports it
                return

    def stop_applier(self):
        """End the update thread and join it. After the last step it waits for gradients no worker will send;
        left inside TensorFlow while the interpreter exits, it aborts the process (SIGABRT, status 134).
        Closing its session cancels that wait; if the thread still does not end, the process ends at once."""
        if not self.applier:
            return
        self.stopping = True
        try:
            self.applier_sess.close()
        except tf.errors.OpError:      # a lost server: the step it waited in has ended all the same
            pass
        self.applier.join(APPLIER_STOP_SECONDS)
        if self.applier.is_alive():
            _end_progress_bars()
            print(f'error: the chief\'s update thread did not stop within {APPLIER_STOP_SECONDS} s of the run\'s end '
                  f'(is the parameter server {",".join(self.spec.job_tasks("ps"))} stuck?); the last checkpoint is '
                  f'kept: if the run was not over, restart every task with -resume', file=sys.stderr, flush=True)
            sys.stdout.flush()
            os._exit(1)        # the interpreter's exit would abort with the thread inside TensorFlow
        self.applier = None

    def updates_per_step(self):
        """Global-step increments per step of one worker: 1 in sync mode, one per worker in async."""
        return 1 if self.sync else self.workers

    def wait_for_chief(self, sess):
        ready = tf.compat.v1.report_uninitialized_variables(tf.compat.v1.global_variables() + [self.ready_flag])
        deadline, said = time.time() + self.a.wait_seconds, 0
        while len(sess.run(ready)):
            if time.time() > deadline:
                raise DataError(f'the chief (worker 0, {self.spec.task_address("worker", 0)}) did not initialise '
                                f'the variables within {self.a.wait_seconds:g} s: start it')
            if time.time() - said > 10:
                print('waiting for the chief (worker 0) to initialise the variables ...', flush=True)
                said = time.time()
            time.sleep(0.5)

    def blocked_message(self, seconds, behind=None):
        """Which workers a synchronous step waits for: those behind (lock_step), else those whose port no
        longer answers."""
        tasks = self.spec.job_tasks('worker')
        if behind is None:
            behind = [i for i, address in enumerate(tasks) if i != self.task and not servers.answers(address)]
        who = servers.describe_workers(self.spec, behind) if behind else \
            'the other workers (their ports answer: are they stuck?)'
        return (f'a synchronous step has waited {seconds:.0f} s (--step-timeout) for {who}; restart every '
                f'task with -resume')

    def epoch_ended(self, training, losses):
        """The chief ends the epoch (validation, saves, the line); the others say their own part."""
        own = f'worker {self.task}: epoch {training.step // training.steps_per_epoch} done, {len(losses)} steps of its own'
        if self.is_chief:
            if not self.sync and self.workers > 1:    # every worker's steps count in the global step: its share
                print(own, flush=True)
            return True
        print(f'{own}, loss {sum(losses) / len(losses):.4f}', flush=True)
        return False

    def close(self, training):
        """Close the step queue (workers waiting on a step stop), then end the update thread, before the
        trainer closes its session."""
        self.stopping = True
        if self.applier:
            try:
                training.sess.run(self.close_queue, options=tf.compat.v1.RunOptions(timeout_in_ms=5000))
            except tf.errors.OpError:
                pass
        self.stop_applier()


def _lost(e, a, spec):
    detail = re.search(r'grpc_message:"([^"]+)"', e.message or '') or re.search(r'(.+)', e.message or type(e).__name__)
    return (f'lost the parameter server ({",".join(spec.job_tasks("ps"))}): {type(e).__name__}, '
            f'{detail.group(1).strip()[:160]}; restart it and every worker with -resume (the chief continues '
            f'from its last checkpoint in {a.train_dir})')


def run_worker(a, meta, ds):
    """One worker's part of a cluster run (train.py --job-name worker)."""
    tf.get_logger().setLevel('ERROR')      # the TF1 APIs' deprecation notices
    spec, server = servers.start_server(a)
    chief = a.task_index == 0
    lock = checkpoints.prepare_run_folder(a) if chief else None
    if a.validate is None or not chief:
        a.validate = chief and ds.val is not None
    with tf.Graph().as_default():
        place, run = Worker(a, spec, server), None
        try:
            run = trainer.Trainer(a, meta, ds, place)
            code = run.loop()
            if not chief:
                print(f'worker {a.task_index}: done at step {run.step}')
            return code
        except tf.errors.OpError as e:
            down = servers.unreachable_parameter_server(spec)    # the error's name depends on where it struck
            if not down and not isinstance(e, LOST):
                raise
            if not chief and not down and isinstance(e, (tf.errors.OutOfRangeError, tf.errors.CancelledError)):
                print(f'worker {a.task_index}: the chief ended the run; stopping')     # it closed the step queue
                return 0
            _end_progress_bars()
            print(f'error: {_lost(e, a, spec)}', file=sys.stderr, flush=True)
            sys.stdout.flush()
            os._exit(1)      # closing a gRPC session waits for its lost steps: a dead server would hang it
        finally:
            if run:
                run.close()
            place.stop_applier()       # also when the trainer failed after starting it
            if lock:
                lock.release()
