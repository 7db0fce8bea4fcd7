"""The paper's training recipe (Section 5): its constants, the loss, weight decay and the momentum update.

    "We trained our models using stochastic gradient descent with a batch size of 128
    examples, momentum of 0.9, and weight decay of 0.0005."

build_train_op turns a batch into one such update, averaged over the in-machine
replicas (parallel.py places them), with the departures a run may ask for (label
smoothing, --init he's conv1 gradient scale, bf16, fp16 with dynamic loss scaling).
What it needs is a `Recipe`; the learning rate is a tensor (schedule.py sets it).
"""
from dataclasses import dataclass, fields

import tensorflow as tf

import alexnet
import checkpoints
import parallel
from errors import DataError

BATCH_SIZE = 128          # "batch size of 128 examples"
EPOCHS = 90               # "roughly 90 cycles through the training set"
LEARNING_RATE = 0.01      # "initialized at 0.01"
MOMENTUM = 0.9            # "momentum of 0.9"
WEIGHT_DECAY = 0.0005     # "weight decay of 0.0005"

LOSS_SCALE_START = 2.0 ** 15       # fp16: the loss is multiplied by this before the gradients...
LOSS_SCALE_GROWTH_STEPS = 2000     # ...which doubles after this many steps without overflow (halves on one)


@dataclass(frozen=True)
class Recipe:
    """Everything build_train_op reads: the model, the update rule, the precision and where it runs. The
    values are a run's settled settings (Recipe.of): their defaults are settings.py's, declared there once."""
    num_classes: int
    devices: str                       # tower devices, two per replica (parallel.parse_devices); None: default
    replicas: int                      # None: as many as the devices give
    batch_size: int
    momentum: float
    weight_decay: float
    precision: str                     # fp32, bf16 (oneDNN) or fp16 (GPUs, loss scaling)
    init: str                          # alexnet.INITS
    dropout: float
    label_smoothing: float
    seed: int                          # dropout masks are a function of (seed, replica, step)
    data_format: str                   # alexnet.DATA_FORMATS; None: by device
    lrn: tuple                         # the LRN (alexnet.LRN, alexnet.lrn_of)
    train_layers: str                  # e.g. 'fc7,fc8': only these layers are updated; None: all
    ema: float                         # decay of the weights' moving average (0: none; a departure)

    @classmethod
    def of(cls, settings):
        """The Recipe of an object with these names as attributes (train.py's settled flags)."""
        values = {f.name: getattr(settings, f.name) for f in fields(cls) if f.name != 'lrn'}
        return cls(lrn=alexnet.lrn_of(vars(settings)), **values)


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


def _accuracy(logits, labels, k):
    """[top-1, top-k] hit rates of one batch, ties going to the lower class as in evaluation (evaluate.py):
    tf.math.in_top_k counts every tied class as a hit, so a network whose logits are all equal (--init he
    starts fc8 at zero) would score 100%."""
    _, top = tf.math.top_k(tf.cast(logits, tf.float32), k)          # equal values: the lower index first
    hits = tf.equal(top, tf.cast(labels, top.dtype)[:, None])
    return tf.stack([tf.reduce_mean(tf.cast(tf.reduce_any(hits[:, :j], axis=1), tf.float32)) for j in (1, k)])


def layers_of(train_layers):
    """The layer names of --train-layers ('fc7,fc8'), checked; None: every layer."""
    if not train_layers:
        return None
    names = [n.strip() for n in str(train_layers).split(',') if n.strip()]
    unknown = [n for n in names if n not in alexnet.LAYERS]
    if unknown or not names:
        raise DataError(f'--train-layers {train_layers}: {", ".join(unknown) or "no layer"} is not a layer; '
                        f'name some of {",".join(alexnet.LAYERS)}')
    return names


def trained_variables(train_layers=None):
    """The variables the update changes: all trainable ones, or those of the named layers (both towers).
    The others stay exactly as they are: no gradient, no weight decay, no momentum slot."""
    layers = layers_of(train_layers)
    variables = tf.compat.v1.trainable_variables()
    return variables if layers is None else [v for v in variables if v.op.name.split('_')[0] in layers]


def _replica_gradients(recipe, images, labels, global_step, scale):
    """(variables, [gradients of each replica], [loss of each], [accuracy of each]): every replica's
    forward and backward pass on its 1/R of the batch, on its own devices (parallel.py)."""
    pairs = parallel.replica_pairs(recipe.devices, recipe.replicas)
    n = len(pairs)
    if recipe.batch_size % n:
        raise DataError(f'--batch-size {recipe.batch_size} does not split evenly over {n} replicas')
    parts = zip(tf.split(images, n), tf.split(labels, n)) if n > 1 else [(images, labels)]
    k = min(5, recipe.num_classes)
    variables, grads, xents, accuracies = None, [], [], []
    for r, (pair, (x, y)) in enumerate(zip(pairs, parts)):
        with parallel.replica_scope(r):
            # dropout masks: a function of the step (and the replica), so a resumed run draws the same
            seed = tf.stack([tf.constant(recipe.seed + 65536 * r, tf.int64), global_step])
            logits = tf.cast(alexnet.inference(x, recipe.num_classes, training=True, devices=pair, dropout_seed=seed,
                                               dropout_rate=recipe.dropout, init=recipe.init,
                                               data_format=recipe.data_format,
                                               lrn_constants=recipe.lrn or alexnet.PAPER_LRN), tf.float32)
            xent = cross_entropy(logits, y, recipe.label_smoothing)
            variables = variables or trained_variables(recipe.train_layers)
            grads.append(tf.compat.v1.gradients(xent * scale if scale is not None else xent, variables,
                                                colocate_gradients_with_ops=True))
            xents.append(xent)
            accuracies.append(_accuracy(logits, y, k))
    return variables, grads, xents, accuracies


def _decayed(recipe, variables, grads, scale):
    """The replicas' mean gradient of each variable, unscaled, plus the paper's weight decay 0.0005 * w
    on the weights, computed where the variable lives."""
    n, out = len(grads), []
    for v, gs in zip(variables, zip(*grads)):
        with tf.device(v.device), tf.name_scope('decayed_gradients'):
            g = tf.add_n(gs) * (1.0 / n) if n > 1 else gs[0]
            if scale is not None:
                g = g / scale
            if recipe.precision == 'bf16':
                g = _in_fp32(g)
            if v.op.name.endswith('weights'):
                if recipe.init == 'he' and v.op.name.startswith('conv1'):
                    g = g * alexnet.HE_CONV1_GRADIENT_SCALE
                g = g + recipe.weight_decay * v    # the gradient of wd/2 |w|^2
            out.append(g)
    return out


def _loss_scale():
    """fp16's dynamic loss scale and its count of good steps (variables, saved with the run)."""
    scale = tf.compat.v1.get_variable('loss_scale', [], initializer=tf.constant_initializer(LOSS_SCALE_START),
                                      trainable=False)
    good_steps = tf.compat.v1.get_variable('loss_scale_good_steps', [], tf.int64, trainable=False,
                                           initializer=tf.compat.v1.zeros_initializer())
    return scale, good_steps


def _averaged_after(train_op, variables, decay, global_step):
    """train_op, then --ema's update of each weight's moving average (a variable beside it, named
    weight + checkpoints.AVERAGE_SUFFIX): average = d * average + (1 - d) * weight, with d = min(decay, (1 + s) / (10 + s))
    at step s (after the update), so that early averages do not remember the random start (TensorFlow's
    ExponentialMovingAverage with num_updates, as its cifar10 tutorial used)."""
    with tf.control_dependencies([train_op]):
        step = tf.identity(global_step.read_value())
        average = tf.compat.v1.train.ExponentialMovingAverage(decay, num_updates=step,
                                                              name=checkpoints.AVERAGE_SUFFIX.strip('/'))
        return average.apply(variables)


def averages():
    """{weight's name: its --ema moving average} in this graph (empty without --ema)."""
    suffix = checkpoints.AVERAGE_SUFFIX
    return {v.op.name[:-len(suffix)]: v for v in tf.compat.v1.global_variables() if v.op.name.endswith(suffix)}


def build_train_op(recipe, images, labels, global_step, learning_rate, wrap_optimizer=None):
    """(train_op, loss, accuracy [top-1, top-k]) (k = 5, or the class count if fewer): one momentum update
    with weight decay from the averaged gradients of every replica (Section 5). wrap_optimizer (e.g. a
    SyncReplicasOptimizer, cluster.py) wraps the optimizer."""
    scale = good_steps = None
    if recipe.precision == 'fp16':    # dynamic loss scaling: fp16 gradients underflow otherwise
        scale, good_steps = _loss_scale()
    variables, grads, xents, accuracies = _replica_gradients(recipe, images, labels, global_step, scale)
    averaged = _decayed(recipe, variables, grads, scale)
    momentum = recipe.momentum
    if scale is not None:
        # A step whose gradients overflowed changes nothing but the step count: zero gradients, rate 0 and
        # momentum 1 leave the weights and the velocity as they were. Then the scale halves; after
        # LOSS_SCALE_GROWTH_STEPS good steps in a row it doubles.
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in averaged])
        averaged = [tf.where(finite, g, tf.zeros_like(g)) for g in averaged]
        learning_rate = tf.where(finite, tf.cast(learning_rate, tf.float32), 0.0)
        momentum = tf.where(finite, tf.constant(recipe.momentum, tf.float32), 1.0)
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
    if recipe.ema:
        train_op = _averaged_after(train_op, variables, recipe.ema, global_step)
    n = len(grads)
    mean = (lambda xs: tf.add_n(xs) / n) if n > 1 else (lambda xs: xs[0])
    return train_op, mean(xents), mean(accuracies)
