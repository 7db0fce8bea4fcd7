"""Evaluation shared by train.py (validation), test.py, classify.py, export.py and features.py.

Crops of each image go through the network as one batch, their softmax outputs
are averaged (the paper's Section 4.1 averages 10 crops), and top-k hits are
counted in NumPy.
"""
import numpy as np
import tensorflow as tf

import alexnet
import checkpoints
import parallel
import preprocessing
import progress


def crop_probabilities(crops, num_classes, devices=None, lrn=alexnet.PAPER_LRN):
    """Average softmax over crops: float [B, n, s, s, 3] -> [B, num_classes]."""
    size, n = int(crops.shape[2]), int(crops.shape[1])
    flat = tf.reshape(crops, [-1, size, size, 3])
    logits = alexnet.inference(flat, num_classes, training=False, devices=devices, lrn_constants=lrn)
    probs = tf.nn.softmax(tf.cast(logits, tf.float32))
    return tf.reduce_mean(tf.reshape(probs, [-1, n, num_classes]), axis=1)


def restore_weights(sess, prefix):
    """Only the model's weights, by name (their --ema averages where a run's latest checkpoint has them):
    works with the latest checkpoints and best/ ones alike."""
    tf.compat.v1.train.Saver(checkpoints.saved_weights(prefix, tf.compat.v1.trainable_variables())).restore(
        sess, prefix)


def top_k_hits(probs, labels, k):
    """Bool [B]: is the label among the k highest probabilities (ties: lower index first)?"""
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind='stable')[:, :k]
    return (top == np.asarray(labels)[:, None]).any(axis=1)


def run(sess, probs, labels, init_op=None, total=None, top_k=5, show_progress=True, desc='eval',
        feed_dict=None):
    """Run an evaluation iterator to its end. Returns dict(top1, topk, loss, count, k)."""
    if init_op is not None:
        sess.run(init_op, feed_dict)
    hits1 = hitsk = count = 0
    loss = 0.0
    bar = progress.bar(total=total, desc=desc, unit='img', disable=not show_progress, leave=False)
    while True:
        try:
            p, y = sess.run([probs, labels], feed_dict)
        except tf.errors.OutOfRangeError:
            break
        hits1 += int(top_k_hits(p, y, 1).sum())
        hitsk += int(top_k_hits(p, y, top_k).sum())
        loss -= float(np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)).sum())
        count += len(y)
        bar.set_postfix_str(f'top-1 {100 * hits1 / count:.2f}% top-{top_k} {100 * hitsk / count:.2f}%', refresh=False)
        bar.update(len(y))
    bar.close()
    n = max(count, 1)
    return dict(top1=hits1 / n, topk=hitsk / n, loss=loss / n, count=count,
                k=min(top_k, int(probs.shape[1])))


def validation(a, ds, split=None, averages=None):
    """Centre-crop validation of a training run (a: its settings) on the held-out split (or `split`, a part
    of it), sharing the training weights, or with `averages` ({name: variable}, --ema's) in their place:
    the tensors run() takes, or None without validation."""
    split = ds.val if split is None else split
    if not a.validate or split is None:
        return None
    with tf.device('/cpu:0'):
        data = preprocessing.eval_dataset(split, a.batch_size, a.input_size, ds.mean, a.resize_size,
                                          mode='center', seed=a.seed, **preprocessing.model_input(vars(a)))
    devices = a.devices.split(',')[:2]
    (crops, labels), init = parallel.batches_on(data, devices[0], initializable=True)

    def averaged(getter, name, *args, **kwargs):
        return averages[name] if averages and name in averages else getter(name, *args, **kwargs)

    with tf.compat.v1.variable_scope(tf.compat.v1.get_variable_scope(), reuse=True, custom_getter=averaged):
        probs = crop_probabilities(crops, a.num_classes, devices, alexnet.lrn_of(vars(a)))
    return dict(probs=probs, labels=labels, init=init, total=len(split))
