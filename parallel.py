"""Data parallelism in one machine: R replicas of the two-tower model.

The paper splits one model over two GPUs (model parallelism, Section 3.2). With
more devices, train.py builds R copies of that two-tower model, each on its own
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


def _replica_scope(r):
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


LOSS_SCALE_START = 2.0 ** 15       # fp16: the loss is multiplied by this before the gradients...
LOSS_SCALE_GROWTH_STEPS = 2000     # ...which doubles after this many steps without overflow (halves on one)


def _in_fp32(gradient):
    """The gradient, behind an op that oneDNN's bf16 rewrite does not pull into bf16, so that the weight
    decay and the update after it stay in fp32. Otherwise the rewrite sees a gradient from a bf16 op
    and does `g + wd * w` in bf16, with casts there and back: a coarser sum, two more passes over the
    61M weights, and a bf16 step 3-5% slower (bench.py)."""
    return tf.raw_ops.EnsureShape(input=gradient, shape=gradient.shape)


def cross_entropy(logits, labels, label_smoothing=0.0):
    """Mean cross-entropy; with label smoothing e, the target puts 1 - e on the label and e spread
    evenly over all classes (Szegedy et al. 2016)."""
    if not label_smoothing:
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    log_probs = tf.nn.log_softmax(logits)
    picked = tf.gather(log_probs, labels, axis=1, batch_dims=1)
    return -tf.reduce_mean((1.0 - label_smoothing) * picked + label_smoothing * tf.reduce_mean(log_probs, 1))


def build_train_op(a, images, labels, global_step, learning_rate, wrap_optimizer=None):
    """Loss, accuracy [top-1, top-k] (k = 5, or the class count if fewer), and one momentum update with weight decay from the averaged gradients of
    every replica (Section 5). wrap_optimizer (e.g. a SyncReplicasOptimizer) wraps the optimizer."""
    pairs = replica_pairs(a.devices, getattr(a, 'replicas', None))
    n = len(pairs)
    if a.batch_size % n:
        raise DataError(f'--batch-size {a.batch_size} does not split evenly over {n} replicas')
    parts = zip(tf.split(images, n), tf.split(labels, n)) if n > 1 else [(images, labels)]
    scale = None
    if a.precision == 'fp16':    # dynamic loss scaling: fp16 gradients underflow otherwise
        scale = tf.compat.v1.get_variable('loss_scale', [], initializer=tf.constant_initializer(LOSS_SCALE_START),
                                          trainable=False)
        good_steps = tf.compat.v1.get_variable('loss_scale_good_steps', [], tf.int64, trainable=False,
                                               initializer=tf.compat.v1.zeros_initializer())
    k = min(5, a.num_classes)
    variables, grads, xents, accuracies = None, [], [], []
    for r, (pair, (x, y)) in enumerate(zip(pairs, parts)):
        with _replica_scope(r):
            # dropout masks: a function of the step (and the replica), so a resumed run draws the same
            seed = tf.stack([tf.constant(a.seed + 65536 * r, tf.int64), global_step])
            logits = tf.cast(alexnet.inference(x, a.num_classes, training=True, devices=pair, dropout_seed=seed,
                                               dropout_rate=getattr(a, 'dropout', alexnet.DROPOUT_RATE),
                                               init=getattr(a, 'init', 'paper'),
                                               data_format=getattr(a, 'data_format', None)), tf.float32)
            xent = cross_entropy(logits, y, getattr(a, 'label_smoothing', 0.0))
            variables = variables or tf.compat.v1.trainable_variables()
            grads.append(tf.compat.v1.gradients(xent * scale if scale is not None else xent, variables,
                                      colocate_gradients_with_ops=True))
            xents.append(xent)
            accuracies.append(tf.stack([tf.reduce_mean(tf.cast(tf.math.in_top_k(targets=y, predictions=logits, k=j),
                                                               tf.float32)) for j in (1, k)]))
    averaged, he_init = [], getattr(a, 'init', 'paper') == 'he'
    for v, gs in zip(variables, zip(*grads)):
        with tf.device(v.device), tf.name_scope('decayed_gradients'):   # where the variable lives, then one update
            g = tf.add_n(gs) * (1.0 / n) if n > 1 else gs[0]
            if scale is not None:
                g = g / scale
            if a.precision == 'bf16':
                g = _in_fp32(g)
            if v.op.name.endswith('weights'):
                if he_init and v.op.name.startswith('conv1'):
                    g = g * alexnet.HE_CONV1_GRADIENT_SCALE
                g = g + a.weight_decay * v    # the paper's 0.0005 * w: the gradient of wd/2 |w|^2
            averaged.append(g)
    momentum = a.momentum
    if scale is not None:
        # A step whose gradients overflowed changes nothing but the step count: zero gradients, rate 0 and
        # momentum 1 leave the weights and the velocity as they were. Then the scale halves; after
        # LOSS_SCALE_GROWTH_STEPS good steps in a row it doubles.
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in averaged])
        averaged = [tf.where(finite, g, tf.zeros_like(g)) for g in averaged]
        learning_rate = tf.where(finite, tf.cast(learning_rate, tf.float32), 0.0)
        momentum = tf.where(finite, tf.constant(a.momentum, tf.float32), 1.0)
        grow = tf.logical_and(finite, good_steps + 1 >= LOSS_SCALE_GROWTH_STEPS)
        new_scale = tf.where(finite, tf.where(grow, scale * 2, scale), scale / 2)
        new_good = tf.where(tf.logical_and(finite, tf.logical_not(grow)), good_steps + 1, tf.zeros_like(good_steps))
    optimizer = tf.compat.v1.train.MomentumOptimizer(learning_rate, momentum)
    if wrap_optimizer is not None:
        optimizer = wrap_optimizer(optimizer)
    train_op = optimizer.apply_gradients(zip(averaged, variables), global_step)
    if scale is not None:
        with tf.control_dependencies([train_op]):
            train_op = tf.group(tf.compat.v1.assign(scale, new_scale), tf.compat.v1.assign(good_steps, new_good))
    mean = (lambda xs: tf.add_n(xs) / n) if n > 1 else (lambda xs: xs[0])
    return train_op, mean(xents), mean(accuracies)
