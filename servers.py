"""A cluster's tasks (cluster.py trains on them): where they are, from the cluster flags or a cluster
manager's TF_CONFIG; this task's gRPC server; a parameter server's life; whether a task still answers.

TF_CONFIG, as Kubeflow's TFJob, SageMaker and tf.distribute set it, is read by TensorFlow's own
TFConfigClusterResolver and mapped onto the cluster flags: ps tasks are the parameter servers; a chief
task (or master, its older name) is worker 0 and TF_CONFIG's workers follow it (its worker i is worker
i + 1); without a chief, its worker 0 is the chief. Any cluster flag given wins: TF_CONFIG is then ignored.
"""
import json
import os
import socket
import sys
import time

import tensorflow as tf

import stopping
from errors import DataError

PS_POLL_SECONDS = 0.5  # how often a parameter server looks whether it was asked to stop
CLUSTER_FLAGS = {'job_name': '--job-name', 'task_index': '--task-index', 'ps_hosts': '--ps-hosts',
                 'worker_hosts': '--worker-hosts'}
TF_CONFIG_SHAPE = '{"cluster": {"ps": [...], "chief": [...], "worker": [...]}, "task": {"type": "worker", "index": 0}}'
CHIEF_JOBS = ('chief', 'master')                     # master: the chief's older name (a TFJob's Master replicas)
TF_CONFIG_JOBS = ('ps', 'worker', 'evaluator') + CHIEF_JOBS


def _hosts(text, flag):
    hosts = [h.strip() for h in (text or '').split(',') if h.strip()]
    if not hosts:
        raise DataError(f'--job-name needs {flag} host:port,... (the same list on every task)')
    return _checked_hosts(hosts, flag)


def _checked_hosts(hosts, where):
    for h in hosts:
        host, _, port = h.rpartition(':')
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise DataError(f'{where}: {h!r} is not host:port')
    return hosts


def cluster_spec(args):
    """The ClusterSpec of --ps-hosts and --worker-hosts, after checking this task's index."""
    spec = {'ps': _hosts(args.ps_hosts, '--ps-hosts'), 'worker': _hosts(args.worker_hosts, '--worker-hosts')}
    index = args.task_index or 0
    if not 0 <= index < len(spec[args.job_name]):
        raise DataError(f'--task-index {index} is out of range: --{args.job_name}-hosts lists '
                        f'{len(spec[args.job_name])} {args.job_name} task(s), numbered from 0')
    return tf.train.ClusterSpec(spec)


def from_tf_config(flags):
    """The cluster flags (job_name, task_index, ps_hosts, worker_hosts) that the TF_CONFIG environment
    variable stands for; {} when it is unset or empty, or when any cluster flag is given (flags: those
    parsed, None when not given)."""
    if not os.environ.get('TF_CONFIG', '').strip():
        return {}
    given = [flag for name, flag in CLUSTER_FLAGS.items() if flags.get(name) is not None]
    if given:
        print(f'note: TF_CONFIG is ignored: the cluster flags given ({", ".join(given)}) win', file=sys.stderr,
              flush=True)
        return {}
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    try:
        spec, job, index = resolver.cluster_spec(), resolver.task_type, resolver.task_id
    except json.JSONDecodeError as e:
        raise DataError(f'TF_CONFIG is not valid JSON ({e}): give {TF_CONFIG_SHAPE}, or unset it') from None
    except (ValueError, TypeError, KeyError, AttributeError) as e:     # JSON of another shape
        raise DataError(f'TF_CONFIG is not of the form {TF_CONFIG_SHAPE}: {e}') from None
    tasks = {name: spec.job_tasks(name) for name in spec.jobs}
    chiefs = [host for name in CHIEF_JOBS for host in tasks.get(name, [])]
    workers = chiefs + tasks.get('worker', [])
    _check_tf_config(tasks, job, index, chiefs, workers)
    ps_hosts = _checked_hosts(tasks['ps'], 'TF_CONFIG\'s ps')
    worker_hosts = _checked_hosts(workers, 'TF_CONFIG\'s chief and workers')
    ours = dict(job_name='ps' if job == 'ps' else 'worker',
                task_index=index + len(chiefs) if job == 'worker' else index,
                ps_hosts=','.join(ps_hosts), worker_hosts=','.join(worker_hosts))
    print(f'TF_CONFIG: its {job} {index} is ' + ' '.join(f'{CLUSTER_FLAGS[k]} {v}' for k, v in ours.items()),
          flush=True)
    return ours


def _check_tf_config(tasks, job, index, chiefs, workers):
    """A one-line DataError for a TF_CONFIG that train.py cannot run as this task."""
    unknown = [name for name in tasks if name not in TF_CONFIG_JOBS]
    if not tasks:
        raise DataError(f'TF_CONFIG has no "cluster" of tasks: give {TF_CONFIG_SHAPE}, or unset it to train on one '
                        f'machine')
    if unknown:
        raise DataError(f'TF_CONFIG\'s cluster has a job "{unknown[0]}": train.py runs ps, chief and worker tasks')
    if job is None or index is None:
        raise DataError('TF_CONFIG has no "task": {"type": ..., "index": ...} saying which task this is')
    if job == 'evaluator':
        raise DataError('TF_CONFIG\'s task is an evaluator, which train.py does not run: the chief validates every '
                        'epoch; leave the evaluator out (a TFJob\'s Evaluator replicas), or evaluate a checkpoint '
                        'with test.py')
    if job not in tasks:
        raise DataError(f'TF_CONFIG\'s task is a {job}, but its cluster lists no {job} (only {", ".join(tasks)})')
    if any(host is None for hosts in tasks.values() for host in hosts):
        raise DataError('TF_CONFIG\'s cluster numbers its tasks with gaps: give each job a list of host:port')
    if len(chiefs) > 1:
        raise DataError(f'TF_CONFIG\'s cluster has {len(chiefs)} chiefs: give one (or none: then its worker 0 is '
                        f'the chief)')
    if not workers:
        raise DataError('TF_CONFIG\'s cluster has no chief or worker: give at least one')
    if not tasks.get('ps'):
        raise DataError('TF_CONFIG\'s cluster has no ps: train.py\'s cluster keeps the variables on parameter '
                        'servers; add one (a TFJob\'s PS replica), or unset TF_CONFIG to train on one machine')
    if not 0 <= index < len(tasks[job]):
        raise DataError(f'TF_CONFIG\'s task index {index} is out of range: its cluster lists {len(tasks[job])} '
                        f'{job} task(s), numbered from 0')


def check_port(address):
    """A one-line error when another process already listens on this task's port."""
    host, port = address.rsplit(':', 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(('', int(port)))          # gRPC listens on every interface
    except OSError as e:
        raise DataError(f'port {address} is in use: {e.strerror}; stop the process holding it or give this '
                        f'task another port (in --ps-hosts / --worker-hosts, on every task)') from None
    finally:
        s.close()


def start_server(args):
    spec = cluster_spec(args)
    index = args.task_index or 0
    address = spec.task_address(args.job_name, index)
    check_port(address)
    try:
        server = tf.distribute.Server(spec, job_name=args.job_name, task_index=index, start=True)
    except (tf.errors.OpError, RuntimeError) as e:
        raise DataError(f'could not start the {args.job_name} {index} server on {address}: '
                        f'{str(e).splitlines()[0]}') from None
    print(f'note: TensorFlow\'s gRPC server on {address} has no authentication and listens on every interface: '
          f'whoever reaches the port can run TensorFlow ops as this user; keep the cluster\'s ports private '
          f'(firewall, private network or SSH tunnel: README, Scaling out)', file=sys.stderr, flush=True)
    return spec, server


def serve(args):
    """A parameter server: hold the variables until Ctrl-C or SIGTERM, then exit 0 (a second one ends it at once)."""
    spec, server = start_server(args)
    stop = stopping.StopRequest()
    print(f'parameter server {args.task_index or 0} of {spec.num_tasks("ps")} listening on '
          f'{spec.task_address("ps", args.task_index or 0)}; stop it with Ctrl-C or SIGTERM when training is done',
          flush=True)
    try:
        while not stop.signal:
            time.sleep(PS_POLL_SECONDS)
    finally:
        stop.restore()
    print(f'parameter server stopped by {stop.signal}', flush=True)
    return 0


def wait_for_parameter_servers(spec, seconds):
    """Block until every parameter server accepts connections, saying so every few seconds."""
    deadline = time.time() + seconds
    for address in spec.job_tasks('ps'):
        host, port = address.rsplit(':', 1)
        said = 0
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=2).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise DataError(f'no parameter server answered at {address} within {seconds:g} s: start it '
                                    f'(python train.py --job-name ps ...) or raise --wait-seconds') from None
                if time.time() - said > 5:
                    print(f'waiting for parameter server {address} ...', flush=True)
                    said = time.time()
                time.sleep(0.5)


def answers(address):
    """True when a task's host:port accepts connections."""
    host, port = address.rsplit(':', 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        return True
    except OSError:
        return False


def describe_workers(spec, indices):
    """'worker 1 (host:port, gone)': each with whether its port still answers."""
    tasks = spec.job_tasks('worker')
    state = lambda address: 'its port answers: is it stuck?' if answers(address) else 'gone'
    return ', '.join(f'worker {i} ({tasks[i]}, {state(tasks[i])})' for i in indices)


def unreachable_parameter_server(spec):
    """The first parameter server that no longer accepts connections (it died), or None."""
    return next((address for address in spec.job_tasks('ps') if not answers(address)), None)
