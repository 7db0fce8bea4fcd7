"""recipe.py: the paper's update (Section 5) on R replicas, label smoothing, fp16 loss scaling, bf16."""
import numpy as np
import pytest
import tensorflow as tf

import evaluate
import parallel
import recipe
import settings

SIZE, CLASSES, BATCH = 67, 4, 8


def a_recipe(**values):
    """The Recipe of a run with these settings, the others settings.py's defaults."""
    return recipe.Recipe.of(settings.settled(values))


def one_step(devices, replicas, images, labels, weights=None):
    """Build the training graph, load `weights` (or keep the fresh ones), run one step: variables before, after."""
    a = a_recipe(seed=0, num_classes=CLASSES, devices=devices, replicas=replicas, init='paper',
                      weight_decay=0.0005, momentum=0.9, precision='fp32', batch_size=BATCH, dropout=0.0)
    with tf.Graph().as_default() as graph:
        tf.compat.v1.set_random_seed(0)
        step = tf.compat.v1.train.get_or_create_global_step()
        x = tf.compat.v1.placeholder(tf.float32, [BATCH, SIZE, SIZE, 3])
        y = tf.compat.v1.placeholder(tf.int64, [BATCH])
        train_op, loss, _ = recipe.build_train_op(a, x, y, step, 0.01)
        flat = parallel.parse_devices(devices, replicas)
        with tf.compat.v1.Session(config=parallel.session_config('fp32', flat)) as sess:
            variables = {v.op.name: v for v in tf.compat.v1.global_variables()}
            start = {v.initial_value: weights[name] for name, v in variables.items() if weights is not None}
            sess.run(tf.compat.v1.global_variables_initializer(), start)
            before = sess.run(variables)
            for _ in range(2):
                sess.run(train_op, {x: images, y: labels})
            after = sess.run(variables)
        placed = {op.name: op.device for op in graph.get_operations()}
    return before, after, placed


@pytest.mark.slow
def test_replicas_step_equals_one_model_on_the_whole_batch():
    rng = np.random.default_rng(0)
    images = rng.normal(0, 60, [BATCH, SIZE, SIZE, 3]).astype(np.float32)
    labels = rng.integers(0, CLASSES, BATCH)
    before, single, _ = one_step('/cpu:0', 1, images, labels)
    for devices, replicas in (('/cpu:0,/cpu:1,/cpu:2,/cpu:3', None),    # 2 replicas x 2 towers on 4 devices
                              ('/cpu:0,/cpu:1', 2)):                    # 2 replicas, both towers on each
        start, after, placed = one_step(devices, replicas, images, labels, before)
        assert start.keys() == single.keys() and len(single) > 60    # one set of weights and momentum
        for name in single:
            np.testing.assert_array_equal(start[name], before[name], err_msg=name)
            np.testing.assert_allclose(after[name], single[name], rtol=1e-4, atol=2e-6, err_msg=name)
        assert not np.allclose(after['fc8_a/weights'], before['fc8_a/weights'])   # it did learn
        assert single['global_step'] == after['global_step'] == 2
        towers = parallel.replica_pairs(devices, replicas)[1]                    # replica 1's towers
        assert placed['replica1/conv1_a/Conv2D'].endswith(f'CPU:{towers[0][-1]}')
        assert placed['replica1/conv1_b/Conv2D'].endswith(f'CPU:{towers[1][-1]}')


def test_label_smoothing_matches_the_smoothed_one_hot_target():
    logits = np.random.default_rng(0).normal(0, 3, size=(6, 10)).astype(np.float32)
    labels = np.array([0, 3, 9, 2, 2, 7])
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        got = sess.run([recipe.cross_entropy(tf.constant(logits), tf.constant(labels), e) for e in (0.0, 0.1)])
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    for e, value in zip((0.0, 0.1), got):
        target = np.full((6, 10), e / 10) + (1 - e) * np.eye(10)[labels]
        assert value == pytest.approx(-(target * log_probs).sum(1).mean(), rel=1e-5)


@pytest.mark.slow
def test_fp16_loss_scaling_skips_overflowed_steps_and_grows_back():
    """--precision fp16 (GPUs): the loss scaling is plain graph code, so it is checked here on the CPU."""
    rng = np.random.default_rng(0)
    images = rng.normal(0, 60, [BATCH, SIZE, SIZE, 3]).astype(np.float32)
    labels = rng.integers(0, CLASSES, BATCH)
    initial, fp32, _ = one_step('/cpu:0', 1, images, labels)     # two fp32 steps
    a = a_recipe(seed=0, num_classes=CLASSES, devices='/cpu:0', replicas=1, init='paper',
                      weight_decay=0.0005, momentum=0.9, precision='fp16', batch_size=BATCH, dropout=0.0)
    with tf.Graph().as_default():
        tf.compat.v1.set_random_seed(0)
        step = tf.compat.v1.train.get_or_create_global_step()
        x = tf.compat.v1.placeholder(tf.float32, [BATCH, SIZE, SIZE, 3])
        y = tf.compat.v1.placeholder(tf.int64, [BATCH])
        train_op, _, _ = recipe.build_train_op(a, x, y, step, 0.01)
        variables = {v.op.name: v for v in tf.compat.v1.global_variables()}
        scale, good = variables.pop('loss_scale'), variables.pop('loss_scale_good_steps')
        feed = {x: images, y: labels}
        with tf.compat.v1.Session() as sess:         # the CPU has no fp16 rewrite: the maths stay fp32
            sess.run(tf.compat.v1.global_variables_initializer(),
                     {v.initial_value: initial[name] for name, v in variables.items()})
            before = sess.run(variables)
            broken = images.copy()
            broken[0, 0, 0, 0] = np.inf               # non-finite gradients, as on an fp16 overflow:
            sess.run(train_op, {x: broken, y: labels})   # nothing may change but the step and the scale
            after = sess.run(variables)
            assert after.pop('global_step') == before['global_step'] + 1
            for name, value in after.items():
                np.testing.assert_array_equal(value, before[name], err_msg=name)
            assert sess.run(scale) == recipe.LOSS_SCALE_START / 2
            sess.run([scale.assign(recipe.LOSS_SCALE_START), good.assign(recipe.LOSS_SCALE_GROWTH_STEPS - 2)])
            sess.run(train_op, feed)                  # good steps: the same maths as fp32
            assert sess.run([scale, good]) == [recipe.LOSS_SCALE_START, recipe.LOSS_SCALE_GROWTH_STEPS - 1]
            sess.run(train_op, feed)                  # the growth interval is complete: the scale doubles
            assert sess.run([scale, good]) == [2 * recipe.LOSS_SCALE_START, 0]
            scaled = sess.run(variables)
    for name, value in fp32.items():              # skipped + 2 good steps = 2 fp32 steps
        if name != 'global_step':
            np.testing.assert_allclose(scaled[name], value, rtol=1e-4, atol=2e-6, err_msg=name)


@pytest.mark.slow
def test_bf16_steps_keep_the_weight_decay_and_the_update_in_fp32():
    """oneDNN's bf16 rewrite runs the convolutions in bf16, but every gradient reaches the weight decay
    and the momentum update in fp32 (read off the graph that ran)."""
    a = a_recipe(seed=0, num_classes=CLASSES, devices='/cpu:0', replicas=1, init='paper',
                      weight_decay=0.0005, momentum=0.9, precision='bf16', batch_size=BATCH, dropout=0.0)
    with tf.Graph().as_default():
        step = tf.compat.v1.train.get_or_create_global_step()
        x = tf.random.normal([BATCH, SIZE, SIZE, 3], 0, 60)
        y = tf.random.uniform([BATCH], 0, CLASSES, tf.int64)
        train_op, _, _ = recipe.build_train_op(a, x, y, step, 0.01)
        metadata = tf.compat.v1.RunMetadata()
        with tf.compat.v1.Session(config=parallel.session_config('bf16', ['/cpu:0'])) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run(train_op, options=tf.compat.v1.RunOptions(output_partition_graphs=True), run_metadata=metadata)
    nodes = {n.name: n for g in metadata.partition_graphs for n in g.node}
    dtype = {name: n.attr['T'].type for name, n in nodes.items() if 'T' in n.attr}
    assert dtype['conv2_a/Relu'] == tf.bfloat16.as_datatype_enum   # the rewrite ran
    updates = [n for n in nodes.values() if n.op == 'ResourceApplyMomentum']
    assert len(updates) == 32                                                  # 16 layers' weights and biases
    for update in updates:
        grad = nodes[update.input[3].split(':')[0]]              # inputs: var, accum, lr, grad, momentum
        assert dtype[update.name] == tf.float32.as_datatype_enum
        if '/weights/' in update.name:                             # g + wd * w, summed in fp32, not cast after
            assert grad.op == 'AddV2' and dtype[grad.name] == tf.float32.as_datatype_enum, (update.name, grad.name)


@pytest.mark.slow
def test_ema_is_the_hand_computed_average_of_the_steps_weights():
    """--ema: after each step, average = d * average + (1 - d) * weight, d = min(decay, (1 + s) / (10 + s)),
    starting from the weights' initial values; checked against the weights each step left."""
    decay, steps = 0.9, 4
    a = a_recipe(seed=0, num_classes=CLASSES, devices='/cpu:0,/cpu:1', init='he', batch_size=BATCH,
                      dropout=0.0, ema=decay)
    rng = np.random.default_rng(1)
    images = rng.normal(0, 60, [BATCH, SIZE, SIZE, 3]).astype(np.float32)
    labels = rng.integers(0, CLASSES, BATCH)
    with tf.Graph().as_default():
        step = tf.compat.v1.train.get_or_create_global_step()
        train_op, _, _ = recipe.build_train_op(a, tf.constant(images), tf.constant(labels), step, 0.01)
        averages = recipe.averages()
        weights = {v.op.name: v for v in tf.compat.v1.trainable_variables()}
        assert sorted(averages) == sorted(weights) and len(weights) == 32     # 8 layers x 2 towers x w, b
        with tf.compat.v1.Session(config=parallel.session_config('fp32', ['/cpu:0', '/cpu:1'])) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            expected = sess.run(weights)
            for s in range(1, steps + 1):
                sess.run(train_op)
                now = sess.run(weights)
                d = min(decay, (1 + s) / (10 + s))
                expected = {k: d * expected[k] + (1 - d) * now[k] for k in now}
            got = sess.run(averages)
        assert averages['conv1_a/weights'].device == weights['conv1_a/weights'].device    # beside its weight
    for name in weights:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-7, err_msg=name)
    assert not np.allclose(got['fc8_a/weights'], now['fc8_a/weights'])      # an average, not the weights


def test_training_accuracy_breaks_ties_as_evaluation_does():
    """All-equal logits (--init he's fc8 at zero) pick class 0, as evaluate.top_k_hits does: not 100%."""
    logits = np.array([[0., 0., 0., 0.], [0., 0., 0., 0.], [1., 3., 3., 0.], [5., 1., 1., 1.]], np.float32)
    labels = np.array([0, 2, 2, 3])
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        top1, top2 = sess.run(recipe._accuracy(tf.constant(logits), tf.constant(labels), 2))
    assert (top1, top2) == (0.25, 0.5)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert [evaluate.top_k_hits(probs, labels, k).mean() for k in (1, 2)] == [top1, top2]
