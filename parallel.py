"""Where things run in one machine: the towers' devices, R replicas of the two-tower model, the batches.

The paper splits one model over two GPUs (model parallelism, Section 3.2). With
more devices, recipe.py builds R copies of that two-tower model, each on its own
pair of devices (or both towers on one device), gives each 1/R of the batch,
averages their gradients (tf.add_n, then / R) and applies one momentum update
to the one set of variables they share:

    --devices /gpu:0,/gpu:1,/gpu:2,/gpu:3      2 replicas, towers a,b on gpus 0,1 and 2,3
    --replicas 4 --devices /gpu:0,/gpu:1,/gpu:2,/gpu:3    4 replicas, both towers on each GPU
    --replicas 2                               default devices: pairs of GPUs, one GPU each, or /cpu:N

One step of R replicas equals one step of a single model on the whole batch (up
to float rounding, and dropout, whose masks differ per replica).
"""
import contextlib

import tensorflow as tf

import alexnet
from datasets import DataError


def parse_devices(devices=None, replicas=None):
    """Tower devices of every replica, flat (a0, b0, a1, b1, ...): 2 per replica.

    R devices with R replicas put both towers of each replica on its device; 2R
    devices give each tower its own. Without --replicas, the count of pairs is R."""
    if replicas is not None and replicas < 1:
        raise DataError(f'--replicas must be at least 1, got {replicas}')
    if devices in (None, ''):
        if (replicas or 1) == 1:
            return tuple(alexnet.parse_devices(None))
        gpus = len(tf.config.list_logical_devices('GPU'))
        if gpus >= 2 * replicas:
            listed = [f'/gpu:{i}' for i in range(2 * replicas)]
        else:           # one GPU per replica (shared when there are fewer), or logical CPU devices
            listed = [f'/gpu:{r % gpus}' if gpus else f'/cpu:{r}' for r in range(replicas)]
    else:
        listed = [d.strip() for d in devices.split(',')] if isinstance(devices, str) else list(devices)
    if replicas is None:
        if len(listed) % 2 and len(listed) != 1:
            raise DataError(f'--devices {",".join(listed)}: give two devices per replica '
                            f'(tower a, tower b), or say how many with --replicas')
        replicas = max(1, len(listed) // 2)
    if len(listed) == replicas:
        listed = [d for d in listed for _ in range(2)]
    if len(listed) != 2 * replicas:
        raise DataError(f'--devices {",".join(listed)} does not fit {replicas} replicas: give '
                        f'{replicas} devices (both towers on each) or {2 * replicas} (one per tower)')
    try:
        return tuple(d for i in range(replicas) for d in alexnet.parse_devices(listed[2 * i:2 * i + 2]))
    except ValueError as e:
        raise DataError(str(e)) from None


def replica_pairs(devices, replicas=None):
    """[(tower a device, tower b device)] for each replica."""
    flat = parse_devices(devices, replicas)
    return [flat[i:i + 2] for i in range(0, len(flat), 2)]


def replica_scope(r):
    """Replica 0 builds the variables with the single model's names; the others reuse them."""
    if r == 0:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(tf.compat.v1.variable_scope(tf.compat.v1.get_variable_scope(), reuse=True))
    stack.enter_context(tf.compat.v1.name_scope(f'replica{r}'))
    return stack


PREFETCH_BATCHES = 2               # batches held on the device ahead of the step that uses them


def input_device(devices):
    """Where the training batches go ahead of time: the device of the model when there is one
    replica (its tower a: a GPU, or a CPU), else the host (each replica takes its part from there)."""
    pairs = replica_pairs(devices)
    return pairs[0][0] if len(pairs) == 1 else '/cpu:0'


def batches_on(data, device, initializable=False):
    """(next batch, iterator initializer or None) of a tf.data pipeline built on the CPU. Batches for
    another device are copied there by tf.data (prefetch_to_device) while the current step runs;
    the CPU's own device needs no copy."""
    spec = tf.DeviceSpec.from_string(device)
    if (spec.device_type or 'CPU').upper() == 'CPU' and not spec.device_index:
        device = '/cpu:0'
    else:
        data = data.apply(tf.data.experimental.prefetch_to_device(device, PREFETCH_BATCHES))
    with tf.device(device):
        if initializable:
            iterator = tf.compat.v1.data.make_initializable_iterator(data)
            return iterator.get_next(), iterator.initializer
        return tf.compat.v1.data.make_one_shot_iterator(data).get_next(), None
