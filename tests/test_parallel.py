"""parallel.py: the towers' devices, replicas in one machine, batches prefetched to a device."""
import numpy as np
import pytest
import tensorflow as tf

import checkpoints
import parallel
import train
from errors import DataError
from helpers import build


def test_bad_tower_devices_fail_clearly():
    with pytest.raises(ValueError, match='bad device string'):
        parallel.tower_devices('/tpu:0,/gpu:1')
    with pytest.raises(ValueError, match='bad device string'):
        parallel.tower_devices('gpu0,gpu1')
    with pytest.raises(ValueError, match='two tower devices'):
        parallel.tower_devices('/gpu:0,/gpu:1,/gpu:2')
    assert parallel.tower_devices('/cpu:0') == ('/cpu:0', '/cpu:0')
    assert parallel.tower_devices(None) == ('/cpu:0', '/cpu:0')    # no GPU on the test machine


@pytest.mark.slow
def test_session_config_allows_soft_placement_and_sets_precision():
    assert parallel.session_config().allow_soft_placement
    rewrite = parallel.session_config('bf16').graph_options.rewrite_options
    assert rewrite.auto_mixed_precision_onednn_bfloat16 == rewrite.ON
    with pytest.raises(ValueError, match='unknown precision'):
        parallel.session_config('int4')
    # a graph placed on a GPU runs on the CPU with that config
    graph, images, logits = build(devices=('/gpu:0', '/gpu:1'))
    with tf.compat.v1.Session(graph=graph, config=parallel.session_config()) as sess:
        sess.run(tf.compat.v1.variables_initializer(graph.get_collection('variables')))
        assert sess.run(logits, {images: np.zeros([2, 67, 67, 3], np.float32)}).shape == (2, 10)


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


@pytest.mark.slow
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


def test_input_device_is_the_models_when_there_is_one_replica():
    assert parallel.input_device('/gpu:0,/gpu:1') == '/gpu:0'
    assert parallel.input_device('/cpu:1') == '/cpu:1'
    assert parallel.input_device('/gpu:0,/gpu:1,/gpu:2,/gpu:3') == '/cpu:0'   # replicas take parts from the host


@pytest.mark.slow
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
