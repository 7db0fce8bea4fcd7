"""Where things run in one machine, and in what precision: the towers' devices, R replicas of the
two-tower model, the batches, the session config.

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
from tensorflow.core.protobuf import rewriter_config_pb2

from errors import DataError

PRECISIONS = ('fp32', 'bf16', 'fp16')   # what session_config and the recipe run in (docs/performance.md)


# --- the two towers' devices -------------------------------------------------
def default_tower_devices():
    """Two GPUs: one tower each; one GPU: both on it; no GPU: both on the CPU."""
    gpus = tf.config.list_logical_devices('GPU')
    if len(gpus) >= 2:
        return '/gpu:0', '/gpu:1'
    if len(gpus) == 1:
        return '/gpu:0', '/gpu:0'
    return '/cpu:0', '/cpu:0'


def tower_devices(devices):
    """Check tower devices ('/gpu:0,/gpu:1', a list, or None for the default)."""
    if devices is None or devices == '':
        return default_tower_devices()
    if isinstance(devices, str):
        devices = [d.strip() for d in devices.split(',')]
    devices = tuple(devices)
    if len(devices) == 1:
        devices = devices * 2
    if len(devices) != 2:
        raise ValueError(f'expected two tower devices such as /gpu:0,/gpu:1, got {",".join(devices)}')
    for device in devices:
        try:
            spec = tf.DeviceSpec.from_string(device)
        except (ValueError, TypeError):
            spec = None
        if spec is None or spec.device_type is None or spec.device_type.upper() not in ('CPU', 'GPU'):
            raise ValueError(f'bad device string {device!r}: write /cpu:0, /gpu:0, /gpu:1, ...')
    return devices


# --- replicas ----------------------------------------------------------------
def parse_devices(devices=None, replicas=None):
    """Tower devices of every replica, flat (a0, b0, a1, b1, ...): 2 per replica.

    R devices with R replicas put both towers of each replica on its device; 2R
    devices give each tower its own. Without --replicas, the count of pairs is R."""
    if replicas is not None and replicas < 1:
        raise DataError(f'--replicas must be at least 1, got {replicas}')
    if devices in (None, ''):
        if (replicas or 1) == 1:
            return tuple(tower_devices(None))
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
        return tuple(d for i in range(replicas) for d in tower_devices(listed[2 * i:2 * i + 2]))
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


# --- the batches --------------------------------------------------------------
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


# --- the session: placement and precision -------------------------------------
def cpu_has_bf16():
    """True when this CPU has bf16 instructions (AVX512_BF16 or AMX-BF16), read from /proc/cpuinfo; True
    where that cannot be read (not Linux): then nothing is said."""
    try:
        with open('/proc/cpuinfo') as f:
            flags = f.read()
    except OSError:
        return True
    return 'avx512_bf16' in flags or 'amx_bf16' in flags


def auto_precision(devices):
    """--precision auto: fp16 when a tower is on a GPU, bf16 on a CPU with bf16 instructions, else fp32
    (bf16 emulated is about 10 times slower than fp32)."""
    if any('GPU' in d.upper() for d in devices):
        return 'fp16'
    return 'bf16' if cpu_has_bf16() else 'fp32'


BF16_EMULATED_NOTE = ('note: this CPU has no bf16 instructions (AVX512_BF16 or AMX-BF16): bf16 runs emulated, '
                      'about 10 times slower than fp32 here; use --precision fp32')


def session_config(precision='fp32', devices=None):
    """Session config: soft placement (a GPU checkpoint loads on a CPU), precision, and
    as many logical CPU devices as the towers name (/cpu:0,/cpu:1 gives two)."""
    cpus = [tf.DeviceSpec.from_string(d).device_index or 0 for d in (devices or [])
            if (tf.DeviceSpec.from_string(d).device_type or '').upper() == 'CPU']
    config = tf.compat.v1.ConfigProto(allow_soft_placement=True,
                                      device_count={'CPU': max(cpus, default=0) + 1})
    on = rewriter_config_pb2.RewriterConfig.ON
    rewrite = config.graph_options.rewrite_options
    if precision == 'bf16':   # oneDNN rewrites the graph to bf16; LRN stays fp32 behind casts
        rewrite.auto_mixed_precision_onednn_bfloat16 = on
    elif precision == 'fp16':  # CUDA fp16 rewrite (GPU only); recipe.py adds loss scaling
        rewrite.auto_mixed_precision = on
    elif precision != 'fp32':
        raise ValueError(f'unknown precision {precision!r}: use fp32, bf16 or fp16')
    return config
