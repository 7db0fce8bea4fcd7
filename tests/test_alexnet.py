"""The graph: sizes, placement on two devices, cross-tower links, paper constants."""
import re

import numpy as np
import pytest
import tensorflow as tf

import alexnet
from helpers import TWO_CPUS, build



def two_cpu_session(graph):
    """A session with two logical CPU devices, one per tower."""
    config = tf.compat.v1.ConfigProto(device_count={'CPU': 2}, allow_soft_placement=False)
    return tf.compat.v1.Session(graph=graph, config=config)


def independent_counts(size, classes):
    """Parameters and multiply-adds from the paper's layer table, written out by hand."""
    def out(n, k, s):
        return (n - k) // s + 1
    c1 = out(size, 11, 4)
    p1 = out(c1, 3, 2)
    p2 = out(p1, 3, 2)
    p5 = out(p2, 3, 2)
    convs = [  # (output size, kernel, input channels seen by one tower, kernels of both towers)
        (c1, 11, 3, 96), (p1, 5, 48, 256), (p2, 3, 256, 384), (p2, 3, 192, 384), (p2, 3, 192, 256)]
    params = sum(k * k * cin * cout + cout for _, k, cin, cout in convs)
    macs = sum(n * n * cout * k * k * cin for n, k, cin, cout in convs)
    fcs = [(p5 * p5 * 256, 4096), (4096, 4096), (4096, classes)]
    params += sum(i * o + o for i, o in fcs)
    macs += sum(i * o for i, o in fcs)
    return params, macs


def test_default_counts_match_the_paper():
    assert alexnet.count() == (60965224, 724406816)
    assert independent_counts(227, 1000) == (60965224, 724406816)


def test_main_prints_table_and_last_line(capsys):
    assert alexnet.main([]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == 'params 60965224 macs 724406816'
    assert any(line.startswith('conv3') and 'both towers' in line for line in lines)
    assert alexnet.main(['--input-size', '131', '--num-classes', '11']) == 0
    params, macs = independent_counts(131, 11)
    assert capsys.readouterr().out.strip().splitlines()[-1] == f'params {params} macs {macs}'


@pytest.mark.parametrize('size,classes', [(131, 11), (67, 2), (300, 37)])
def test_graph_variables_match_the_counts(size, classes):
    graph, _, logits = build(size, classes)
    with graph.as_default():
        n_params = sum(int(np.prod(v.shape)) for v in tf.compat.v1.global_variables())
    assert n_params == independent_counts(size, classes)[0] == alexnet.count(size, classes)[0]
    assert logits.shape.as_list() == [2, classes]


def test_odd_class_count_splits_unevenly():
    graph, _, _ = build(num_classes=11)
    with graph.as_default():
        shapes = {v.op.name: v.shape.as_list() for v in tf.compat.v1.global_variables()}
    assert shapes['fc8_a/biases'] == [6] and shapes['fc8_b/biases'] == [5]
    assert shapes['fc6_a/weights'] == [256, 2048]      # pool5 1x1x256 for a 67-pixel input


def test_too_small_input_fails_clearly():
    with pytest.raises(ValueError, match='too small.*at least 67'):
        build(input_size=66)
    assert alexnet.main(['--input-size', '50']) == 2


TAG = re.compile(r'^([a-z]+\d)_([ab])(/|$)')


def tag(op_name):
    """('conv3', 'a') for 'conv3_a/Conv2D'; None for ops outside the towers."""
    m = TAG.match(op_name)
    return (m.group(1), m.group(2)) if m else None


@pytest.mark.slow
def test_every_tower_op_runs_on_its_own_device():
    graph, images, logits = build(training=True)
    options = tf.compat.v1.RunOptions(output_partition_graphs=True)
    placed = {}                                   # op name -> device it ran on
    with two_cpu_session(graph) as sess:
        for fetch, feed in ((tf.compat.v1.variables_initializer(graph.get_collection('variables')), None),
                            (logits, {images: np.zeros([2, 67, 67, 3], np.float32)})):
            run_metadata = tf.compat.v1.RunMetadata()
            sess.run(fetch, feed, options=options, run_metadata=run_metadata)
            for partition in run_metadata.partition_graphs:
                placed.update({node.name: node.device for node in partition.node})
    tower_ops = [op for op in graph.get_operations() if tag(op.name)]
    assert len(tower_ops) > 100
    expected = {'a': 'CPU:0', 'b': 'CPU:1'}
    for op in tower_ops:
        want = expected[tag(op.name)[1]]
        if op.device:
            assert op.device.upper().endswith(want), (op.name, op.device)
        else:                                     # initialisers: colocated with their variable
            assert all(tag(g.decode()[5:])[1] == tag(op.name)[1] for g in op.colocation_groups()), op.name
        if op.name in placed:                     # constant-folded ops never reach a partition
            assert placed[op.name].endswith(want), (op.name, placed[op.name])
    # Both devices really did work: the heavy ops of each tower (fused with bias and ReLU
    # by the graph optimiser, hence the name) ran there.
    for layer in ('conv1', 'conv2', 'conv3', 'conv5', 'fc6', 'fc7'):
        assert placed[f'{layer}_a/Relu'].endswith('CPU:0'), layer
        assert placed[f'{layer}_b/Relu'].endswith('CPU:1'), layer


@pytest.mark.parametrize('training,data_format', [(False, 'NHWC'), (True, 'NHWC'), (True, 'NCHW')])
def test_towers_exchange_activations_only_at_conv3_and_the_fc_layers(training, data_format):
    graph, _, _ = build(training=training, data_format=data_format)
    crossings = set()
    for op in graph.get_operations():
        mine = tag(op.name)
        if not mine:
            continue
        for inp in op.inputs:
            theirs = tag(inp.op.name)
            if theirs and theirs[1] != mine[1]:
                crossings.add(mine[0])
                assert op.type == 'ConcatV2', (op.name, inp.op.name)
    assert crossings == {'conv3', 'fc6', 'fc7', 'fc8'}

    def reads(layer, tower):
        """Towers of the previous layer's outputs that this layer's main op reads."""
        main = [op for op in graph.get_operations()
                if tag(op.name) == (layer, tower) and op.type in ('Conv2D', 'MatMul')][0]
        seen, towers, stack = set(), set(), [main]
        while stack:
            op = stack.pop()
            for inp in op.inputs:
                t = tag(inp.op.name)
                if t == (layer, tower):
                    if inp.op.name not in seen:
                        seen.add(inp.op.name)
                        stack.append(inp.op)
                elif t:
                    towers.add(t[1])
        return towers

    for tower in 'ab':
        for layer in ('conv2', 'conv4', 'conv5'):
            assert reads(layer, tower) == {tower}, layer
        for layer in ('conv3', 'fc6', 'fc7', 'fc8'):
            assert reads(layer, tower) == {'a', 'b'}, layer


def paper_lrn(a, k=2.0, n=5, alpha=1e-4, beta=0.75):
    """b_i = a_i / (k + alpha * sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a_j^2)^beta, Section 3.3."""
    channels = a.shape[-1]
    b = np.empty_like(a)
    for i in range(channels):
        lo, hi = max(0, i - n // 2), min(channels - 1, i + n // 2)
        b[..., i] = a[..., i] / (k + alpha * np.sum(a[..., lo:hi + 1] ** 2, axis=-1)) ** beta
    return b


def test_normalisation_is_the_papers_formula():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 30, size=(2, 5, 5, 48)).astype(np.float32)   # large values: alpha matters
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        got = sess.run(alexnet.lrn('lrn', tf.constant(a)))
    want = paper_lrn(a.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-4)
    assert np.abs(want - a / 2 ** 0.75).max() > 1e-2     # the sum really changes the result
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:   # channels first: the same numbers
        got = sess.run(alexnet.lrn('lrn', tf.constant(a.transpose(0, 3, 1, 2)), data_format='NCHW'))
    np.testing.assert_allclose(got.transpose(0, 2, 3, 1), want, rtol=1e-4)


def test_lrn_of_a_checkpoint():
    assert alexnet.lrn_of({}) == alexnet.PAPER_LRN
    assert alexnet.lrn_of({'lrn': [2, 1.0, 2e-05, 0.75], 'lrn_across_towers': True}) == alexnet.CAFFE_LRN
    assert alexnet.lrn_of({'lrn': [2, 1.0, 2e-05, 0.75]}) == alexnet.CAFFE_LRN._replace(across_towers=False)
    assert alexnet.lrn_record(alexnet.CAFFE_LRN) == {'lrn': [2, 1.0, 2e-05, 0.75], 'lrn_across_towers': True}
    for constants in (alexnet.PAPER_LRN, alexnet.CAFFE_LRN):
        assert alexnet.lrn_of(alexnet.lrn_record(constants)) == constants


@pytest.mark.slow
def test_lrn_across_towers_is_one_lrn_over_all_maps_and_only_the_edge_maps_cross():
    """Caffe's LRN (alexnet.CAFFE_LRN, across_towers): each tower's output equals its half of one LRN over
    both towers' maps, in NHWC and NCHW, with the fast LRN and TensorFlow's op, values and gradients;
    on two devices only depth_radius maps travel each way. The paper's (PAPER_LRN) stays per tower."""
    rng = np.random.default_rng(1)
    a = rng.normal(0, 60, size=(2, 3, 3, 96)).astype(np.float64)
    caffe = alexnet.CAFFE_LRN
    k, n, alpha, beta = caffe.bias, 2 * caffe.depth_radius + 1, caffe.alpha, caffe.beta   # TensorFlow's alpha: Caffe's / n
    whole, halves = paper_lrn(a, k, n, alpha, beta), np.concatenate(
        [paper_lrn(a[..., :48], k, n, alpha, beta), paper_lrn(a[..., 48:], k, n, alpha, beta)], -1)
    assert np.abs(whole - halves)[..., 46:50].max() > 1e-2 * np.abs(whole).max()    # the boundary differs
    results = {}
    for fmt in ('NHWC', 'NCHW'):
        for portable in (False, True):
            for constants, want in ((caffe, whole), (caffe._replace(across_towers=False), halves)):
                graph = tf.Graph()
                with graph.as_default():
                    x = tf.constant(a.astype(np.float32) if fmt == 'NHWC' else a.transpose(0, 3, 1, 2).astype(np.float32))
                    maps = dict(zip('ab', tf.split(x, 2, axis=-1 if fmt == 'NHWC' else 1)))
                    out = alexnet.tower_lrn('lrn1', maps, TWO_CPUS, portable, fmt, constants)
                    y = tf.concat([out['a'], out['b']], -1 if fmt == 'NHWC' else 1)
                    grad = tf.gradients(tf.reduce_sum(y * tf.sin(x)), x)[0]
                    with two_cpu_session(graph) as sess:
                        got, g = sess.run([y, grad])
                    crossing = [op for op in graph.get_operations() if op.type == 'StridedSlice' and
                                '_edge' in op.name and op.device.endswith('CPU:1')]
                if fmt == 'NCHW':
                    got, g = got.transpose(0, 2, 3, 1), g.transpose(0, 2, 3, 1)
                np.testing.assert_allclose(got, want, rtol=1e-4, err_msg=f'{fmt} portable={portable}')
                results[fmt, portable, constants.across_towers] = g
                if constants.across_towers:      # tower a reads b's first 2 maps, cut where b lives
                    assert len(crossing) == 1 and crossing[0].outputs[0].shape[-1 if fmt == 'NHWC' else 1] == 2
    for key, g in results.items():
        np.testing.assert_allclose(g, results['NHWC', True, key[2]], rtol=1e-3, atol=1e-4, err_msg=str(key))


@pytest.mark.slow
def test_initialisation_statistics():
    graph, _, _ = build(input_size=227, num_classes=1000)
    with graph.as_default(), two_cpu_session(graph) as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        values = {v.op.name: sess.run(v) for v in tf.compat.v1.global_variables()}
    ones = {'conv2', 'conv4', 'conv5', 'fc6', 'fc7'}
    for name, value in values.items():
        layer = name.split('_')[0]
        if name.endswith('biases'):
            np.testing.assert_array_equal(value, 1.0 if layer in ones else 0.0, err_msg=name)
        else:
            assert abs(value.mean()) < 0.01 * 5 / np.sqrt(value.size), name
            assert abs(value.std() - 0.01) < 0.0005, (name, value.std())
    assert len(values) == 32     # 8 layers x 2 towers x (weights, biases)


@pytest.mark.slow
def test_he_initialisation_scales_with_fan_in():
    graph, _, _ = build(input_size=99, num_classes=10, init='he')
    with graph.as_default(), two_cpu_session(graph) as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        weights = {v.op.name: sess.run(v) for v in tf.compat.v1.global_variables() if v.op.name.endswith('weights')}
    fan_ins = {'conv1': 11 * 11 * 3, 'conv2': 5 * 5 * 48, 'conv3': 3 * 3 * 256, 'conv4': 3 * 3 * 192,
               'conv5': 3 * 3 * 192, 'fc6': 2 * 2 * 256, 'fc7': 4096, 'fc8': 4096}
    for name, value in weights.items():
        layer = name.split('_')[0]
        if layer == 'fc8':           # the output layer starts at zero: uniform first predictions
            np.testing.assert_array_equal(value, 0.0, err_msg=name)
            continue
        want = np.sqrt(2.0 / fan_ins[layer]) if layer != 'conv1' else np.sqrt(1.0 / 363) / alexnet.PIXEL_STD
        assert abs(value.std() / want - 1) < 0.05, (name, value.std(), want)
    with pytest.raises(ValueError, match='unknown init'):
        build(init='glorot')


@pytest.mark.slow
def test_evaluation_is_deterministic_and_training_is_not():
    x = np.random.default_rng(1).normal(0, 50, size=(2, 67, 67, 3)).astype(np.float32)
    for training, same in ((False, True), (True, False)):
        graph, images, logits = build(training=training, seed=3)
        with two_cpu_session(graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            first, second = sess.run(logits, {images: x}), sess.run(logits, {images: x})
        assert np.array_equal(first, second) == same, training


@pytest.mark.slow
def test_gradients_reach_every_variable():
    graph, images, logits = build(training=True, seed=4)
    with graph.as_default():
        labels = tf.constant([1, 7])
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        variables = tf.compat.v1.trainable_variables()
        grads = tf.gradients(loss, variables)
    assert all(g is not None for g in grads)
    x = np.random.default_rng(2).normal(0, 50, size=(2, 67, 67, 3)).astype(np.float32)
    with two_cpu_session(graph) as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        values = sess.run(grads, {images: x})
    for v, g in zip(variables, values):
        assert np.abs(g).sum() > 0, v.op.name


def tf_lrn(name, inputs):
    """The straightforward graph: TensorFlow's own LRN op with the paper's constants."""
    return tf.nn.local_response_normalization(inputs, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, name=name)


@pytest.mark.slow
def test_fast_normalisation_matches_tensorflows_op_with_gradients():
    rng = np.random.default_rng(5)
    a = rng.normal(0, 40, size=(3, 4, 4, 48)).astype(np.float32)
    g = rng.normal(0, 1, size=a.shape).astype(np.float32)
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        x = tf.constant(a)
        outs = [fn('lrn', x) for fn in (alexnet.lrn, tf_lrn)]
        grads = [tf.gradients(o, x, grad_ys=tf.constant(g))[0] for o in outs]
        (fast, ref), (fast_grad, ref_grad) = sess.run([outs, grads])
    np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fast_grad, ref_grad, rtol=1e-4, atol=1e-6)
    assert np.abs(ref_grad - g / 2 ** 0.75).max() > 1e-2     # the window term matters here
    # on CPUs the reformulation; on GPUs, or for export (portable), TensorFlow's op
    for devices, portable, want in ((TWO_CPUS, False, 0), (('/gpu:0', '/gpu:1'), False, 4), (TWO_CPUS, True, 4)):
        with tf.Graph().as_default() as graph:
            alexnet.inference(tf.zeros([1, 67, 67, 3]), 10, devices=devices, portable=portable)
        assert sum(op.type == 'LRN' for op in graph.get_operations()) == want, (devices, portable)


@pytest.mark.parametrize('constants', [alexnet.CAFFE_LRN, alexnet.LRN(1, 1.5, 3e-4, 0.6)],
                         ids=['caffe', 'pow-fallback'])
@pytest.mark.parametrize('data_format', ['NHWC', 'NCHW'])
def test_fast_normalisation_with_other_constants_matches_tensorflows_op(constants, data_format):
    """lrn_constants reach both paths: the fast one (s^-0.75 trick, tf.pow for another beta) equals
    TensorFlow's op with the same constants, values and gradient."""
    rng = np.random.default_rng(8)
    a = rng.normal(0, 60, size=(3, 4, 4, 48)).astype(np.float32)   # Caffe's smaller alpha needs larger values
    g = rng.normal(0, 1, size=a.shape).astype(np.float32)
    to_fmt = (lambda t: tf.transpose(t, [0, 3, 1, 2])) if data_format == 'NCHW' else (lambda t: t)
    from_fmt = (lambda t: tf.transpose(t, [0, 2, 3, 1])) if data_format == 'NCHW' else (lambda t: t)
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        x = tf.constant(a)
        fast = from_fmt(alexnet.lrn('lrn', to_fmt(x), data_format=data_format, lrn_constants=constants))
        ref = tf.nn.local_response_normalization(x, *constants[:4])
        grads = [tf.gradients(o, x, grad_ys=tf.constant(g))[0] for o in (fast, ref)]
        fast, ref, (fast_grad, ref_grad) = sess.run([fast, ref, grads])
        paper = sess.run(alexnet.lrn('paper', x))
    np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fast_grad, ref_grad, rtol=1e-4, atol=1e-6)
    assert np.abs(ref_grad - g / constants.bias ** constants.beta).max() > 1e-2   # the window term matters
    assert np.abs(paper - ref).max() > 1e-2                                        # not the paper's constants


@pytest.mark.slow
def test_inference_passes_the_lrn_constants_to_every_lrn():
    for constants, want in ((None, alexnet.PAPER_LRN), (alexnet.CAFFE_LRN, alexnet.CAFFE_LRN),
                            ([2, 1.0, 2e-05, 0.75], alexnet.CAFFE_LRN)):   # a JSON list works too
        with tf.Graph().as_default() as graph:
            extra = {} if constants is None else dict(lrn_constants=constants)
            alexnet.inference(tf.zeros([1, 67, 67, 3]), 10, devices=TWO_CPUS, portable=True, **extra)
        ops = [op for op in graph.get_operations() if op.type == 'LRN']
        assert len(ops) == 4
        for op in ops:
            got = alexnet.LRN(*(op.get_attr(k) for k in ('depth_radius', 'bias', 'alpha', 'beta')))
            np.testing.assert_allclose(got[:4], want[:4], rtol=1e-6, err_msg=op.name)
    assert alexnet.CAFFE_LRN.alpha * (2 * alexnet.CAFFE_LRN.depth_radius + 1) == pytest.approx(1e-4)


def test_data_format_follows_the_devices_and_is_checked():
    assert alexnet.default_data_format(TWO_CPUS) == 'NHWC'
    assert alexnet.default_data_format(('/gpu:0', '/gpu:0')) == 'NCHW'
    assert alexnet.default_data_format(('/cpu:0', '/gpu:1')) == 'NCHW'
    with pytest.raises(ValueError, match='NHWC or NCHW'):
        build(data_format='NWHC')
    with tf.Graph().as_default() as graph:
        alexnet.inference(tf.zeros([1, 67, 67, 3]), 10, devices=('/gpu:0', '/gpu:1'))
    assert graph.get_operation_by_name('conv2_b/Conv2D').get_attr('data_format') == b'NCHW'
    graph, _, _ = build()
    assert graph.get_operation_by_name('conv2_b/Conv2D').get_attr('data_format') == b'NHWC'


def logits_and_gradients(options, weights=None):
    """(weights, [logits, every gradient], variable names and shapes) of the 99x99 graph built with options,
    its variables set to weights (the graph's own initial ones, seed 7, when None)."""
    x = np.random.default_rng(6).normal(0, 60, size=(2, 99, 99, 3)).astype(np.float32)   # pool5 2x2
    graph, images, logits = build(99, seed=7, **options)
    with graph.as_default():
        variables = tf.compat.v1.trainable_variables()
        loss = tf.reduce_sum(logits * np.arange(1, 11, dtype=np.float32))
        grads = tf.gradients(loss, variables)
    with two_cpu_session(graph) as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        if weights is None:
            weights = sess.run(variables)
        for v, value in zip(variables, weights):
            v.load(value, sess)
        result = sess.run([logits] + grads, {images: x})
    return weights, result, [(v.op.name, v.shape.as_list()) for v in variables]


@pytest.fixture(scope='module')
def straightforward():
    """The reference, built once for every variant below: TensorFlow's LRN op (portable) in NHWC."""
    return logits_and_gradients(dict(portable=True))


@pytest.mark.slow
@pytest.mark.parametrize('variant', [dict(portable=True), dict(portable=False), dict(data_format='NCHW'),
                                     dict(data_format='NCHW', portable=True)])
def test_network_matches_the_straightforward_graph(variant, straightforward):
    """Logits and every gradient equal those of the graph built with TensorFlow's LRN op (portable)
    in NHWC: the fast LRN, the NCHW layout (either LRN) and the checkpoint's variables all agree."""
    weights, reference, reference_shapes = straightforward
    _, result, shapes = logits_and_gradients(variant, weights)
    assert reference_shapes == shapes                    # the same checkpoint serves both graphs
    for name, ref, fast in zip(['logits'] + [name for name, _ in shapes], reference, result):
        scale = np.abs(ref).max()
        assert scale > 0, name
        np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-4 * scale, err_msg=name)
