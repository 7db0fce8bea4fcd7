"""parallel.py: data-parallel replicas of the two-tower model in one machine."""
import argparse

import numpy as np
import pytest
import tensorflow as tf

import alexnet
import checkpoints
import parallel
import train
from datasets import DataError

SIZE, CLASSES, BATCH = 67, 4, 8


@pytest.mark.parametrize('devices,replicas,expected', [
    ('/gpu:0,/gpu:1,/gpu:2,/gpu:3', None, ('/gpu:0', '/gpu:1', '/gpu:2', '/gpu:3')),   # 2 replicas, a tower each
    ('/gpu:0,/gpu:1', 2, ('/gpu:0', '/gpu:0', '/gpu:1', '/gpu:1')),                    # both towers on one GPU
    ('/cpu:0', None, ('/cpu:0', '/cpu:0')),
    ('/gpu:0,/gpu:1', None, ('/gpu:0', '/gpu:1')),                                     # the paper's two towers
    (None, 2, ('/cpu:0', '/cpu:0', '/cpu:1', '/cpu:1')),                               # no GPU here: logical CPUs
])
def test_devices_per_replica(devices, replicas, expected):
    assert parallel.parse_devices(devices, replicas) == expected
    assert len(parallel.replica_pairs(devices, replicas)) == len(expected) // 2


@pytest.mark.parametrize('devices,replicas,message', [
    ('/gpu:0,/gpu:1,/gpu:2', None, 'two devices per replica'),
    ('/gpu:0,/gpu:1,/gpu:2', 2, 'does not fit 2 replicas'),
    (None, 0, 'at least 1'),
    ('/gpu:0,gpu1', None, 'bad device string'),
])
def test_device_errors(devices, replicas, message):
    with pytest.raises(DataError, match=message):
        parallel.parse_devices(devices, replicas)


def one_step(devices, replicas, images, labels, weights=None):
    """Build the training graph, load `weights` (or keep the fresh ones), run one step: variables before, after."""
    a = argparse.Namespace(seed=0, num_classes=CLASSES, devices=devices, replicas=replicas, init='paper',
                           weight_decay=0.0005, momentum=0.9, precision='fp32', batch_size=BATCH, dropout=0.0)
    with tf.Graph().as_default() as graph:
        tf.compat.v1.set_random_seed(0)
        step = tf.compat.v1.train.get_or_create_global_step()
        x = tf.compat.v1.placeholder(tf.float32, [BATCH, SIZE, SIZE, 3])
        y = tf.compat.v1.placeholder(tf.int64, [BATCH])
        train_op, loss, _ = train.build_train_op(a, x, y, step, 0.01)
        flat = parallel.parse_devices(devices, replicas)
        with tf.compat.v1.Session(config=alexnet.session_config('fp32', flat)) as sess:
            variables = {v.op.name: v for v in tf.compat.v1.global_variables()}
            start = {v.initial_value: weights[name] for name, v in variables.items() if weights is not None}
            sess.run(tf.compat.v1.global_variables_initializer(), start)
            before = sess.run(variables)
            for _ in range(2):
                sess.run(train_op, {x: images, y: labels})
            after = sess.run(variables)
        placed = {op.name: op.device for op in graph.get_operations()}
    return before, after, placed


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


def test_train_with_replicas_from_the_command_line(tmp_path, capsys):
    run_dir = tmp_path / 'run'
    common = ['--synthetic', '--num-classes', '4', '--input-size', '67', '--batch-size', '8',
              '--save-minutes', '60', '--train-dir', str(run_dir)]
    assert train.main(['-scratch', '--replicas', '2', '--devices', '/cpu:0,/cpu:1', '--max-steps', '2',
                       *common]) == 0
    meta = checkpoints.latest(str(run_dir))[1]
    assert meta['step'] == 2 and meta['args']['replicas'] == 2
    assert meta['devices'] == '/cpu:0,/cpu:0,/cpu:1,/cpu:1'
    capsys.readouterr()
    assert train.main(['-scratch', '--overwrite', '--replicas', '3', *common]) == 2
    assert 'does not split evenly over 3 replicas' in capsys.readouterr().err


def test_label_smoothing_matches_the_smoothed_one_hot_target():
    logits = np.random.default_rng(0).normal(0, 3, size=(6, 10)).astype(np.float32)
    labels = np.array([0, 3, 9, 2, 2, 7])
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        got = sess.run([parallel.cross_entropy(tf.constant(logits), tf.constant(labels), e) for e in (0.0, 0.1)])
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    for e, value in zip((0.0, 0.1), got):
        target = np.full((6, 10), e / 10) + (1 - e) * np.eye(10)[labels]
        assert value == pytest.approx(-(target * log_probs).sum(1).mean(), rel=1e-5)


def test_fp16_loss_scaling_skips_overflowed_steps_and_grows_back():
    """--precision fp16 (GPUs): the loss scaling is plain graph code, so it is checked here on the CPU."""
    rng = np.random.default_rng(0)
    images = rng.normal(0, 60, [BATCH, SIZE, SIZE, 3]).astype(np.float32)
    labels = rng.integers(0, CLASSES, BATCH)
    initial, fp32, _ = one_step('/cpu:0', 1, images, labels)     # two fp32 steps
    a = argparse.Namespace(seed=0, num_classes=CLASSES, devices='/cpu:0', replicas=1, init='paper',
                           weight_decay=0.0005, momentum=0.9, precision='fp16', batch_size=BATCH, dropout=0.0)
    with tf.Graph().as_default():
        tf.compat.v1.set_random_seed(0)
        step = tf.compat.v1.train.get_or_create_global_step()
        x = tf.compat.v1.placeholder(tf.float32, [BATCH, SIZE, SIZE, 3])
        y = tf.compat.v1.placeholder(tf.int64, [BATCH])
        train_op, _, _ = train.build_train_op(a, x, y, step, 0.01)
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
            assert sess.run(scale) == parallel.LOSS_SCALE_START / 2
            sess.run([scale.assign(parallel.LOSS_SCALE_START), good.assign(parallel.LOSS_SCALE_GROWTH_STEPS - 2)])
            sess.run(train_op, feed)                  # good steps: the same maths as fp32
            assert sess.run([scale, good]) == [parallel.LOSS_SCALE_START, parallel.LOSS_SCALE_GROWTH_STEPS - 1]
            sess.run(train_op, feed)                  # the growth interval is complete: the scale doubles
            assert sess.run([scale, good]) == [2 * parallel.LOSS_SCALE_START, 0]
            scaled = sess.run(variables)
    for name, value in fp32.items():              # skipped + 2 good steps = 2 fp32 steps
        if name != 'global_step':
            np.testing.assert_allclose(scaled[name], value, rtol=1e-4, atol=2e-6, err_msg=name)


def test_input_device_is_the_models_when_there_is_one_replica():
    assert parallel.input_device('/gpu:0,/gpu:1') == '/gpu:0'
    assert parallel.input_device('/cpu:1') == '/cpu:1'
    assert parallel.input_device('/gpu:0,/gpu:1,/gpu:2,/gpu:3') == '/cpu:0'   # replicas take parts from the host


@pytest.mark.parametrize('initializable', [False, True])
def test_batches_are_prefetched_to_another_device(initializable):
    """Batches for /cpu:1 are copied there by tf.data and come out as they do on the host."""
    def pipeline():
        with tf.device('/cpu:0'):
            return tf.data.Dataset.range(10).map(lambda i: (tf.fill([3], tf.cast(i, tf.float32)), i)).batch(2)

    graph = tf.Graph()
    with graph.as_default():
        here, init_here = parallel.batches_on(pipeline(), '/cpu:0', initializable)
        there, init_there = parallel.batches_on(pipeline(), '/cpu:1', initializable)
    assert there[0].device.endswith('CPU:1') and (init_there is not None) == initializable
    on_cpu1 = {op.type for op in graph.get_operations() if op.device.endswith('CPU:1')}
    assert {'GeneratorDataset', 'PrefetchDataset'} <= on_cpu1        # tf.data's copy, and the buffer there
    config = tf.compat.v1.ConfigProto(device_count={'CPU': 2}, allow_soft_placement=False)
    options = tf.compat.v1.RunOptions(output_partition_graphs=True)
    with tf.compat.v1.Session(graph=graph, config=config) as sess:
        for _ in range(2 if initializable else 1):      # re-initialised: the pass starts over
            if initializable:
                sess.run([init_here, init_there])
            for _ in range(5):
                metadata = tf.compat.v1.RunMetadata()
                a, b = sess.run([here, there], options=options, run_metadata=metadata)
                np.testing.assert_array_equal(a[0], b[0])
                np.testing.assert_array_equal(a[1], b[1])
            with pytest.raises(tf.errors.OutOfRangeError):
                sess.run(there)
    placed = {node.name: node.device for g in metadata.partition_graphs for node in g.node}
    assert placed[here[0].op.name].endswith('CPU:0') and placed[there[0].op.name].endswith('CPU:1')


def test_bf16_steps_keep_the_weight_decay_and_the_update_in_fp32():
    """oneDNN's bf16 rewrite runs the convolutions in bf16, but every gradient reaches the weight decay
    and the momentum update in fp32 (read off the graph that ran)."""
    a = argparse.Namespace(seed=0, num_classes=CLASSES, devices='/cpu:0', replicas=1, init='paper',
                           weight_decay=0.0005, momentum=0.9, precision='bf16', batch_size=BATCH, dropout=0.0)
    with tf.Graph().as_default():
        step = tf.compat.v1.train.get_or_create_global_step()
        x = tf.random.normal([BATCH, SIZE, SIZE, 3], 0, 60)
        y = tf.random.uniform([BATCH], 0, CLASSES, tf.int64)
        train_op, _, _ = train.build_train_op(a, x, y, step, 0.01)
        metadata = tf.compat.v1.RunMetadata()
        with tf.compat.v1.Session(config=alexnet.session_config('bf16', ['/cpu:0'])) as sess:
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
