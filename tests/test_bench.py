"""bench.py: one figure a line, positive figures, the summary line last, one-line errors."""
import re

import pytest

import bench
from conftest import TEST_DATA
from helpers import encode, smooth_image

FIGURE = re.compile(r'^(training|inference|matmul|pipeline) +(\d+\.\d) (img/s|GFLOP/s|img/s/core) +\(.+\)$')
SUMMARY = re.compile(r'^train (\d+\.\d) img/s  infer (\d+\.\d) img/s  \(bf16, batch 2\)$')


@pytest.mark.slow
def test_bench_prints_every_figure_and_the_summary(capsys):
    val = TEST_DATA / 'imagenet' / 'val'
    rc = bench.main(['--input-size', '67', '--batch-size', '2', '--steps', '2', '--warmup', '1',
                     '--precision', 'bf16', '--matmul-size', '256', '--data-dir', str(val),
                     '--pipeline-seconds', '1'])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith('load average ')
    figures = [FIGURE.match(line) for line in lines[1:-1]]
    assert all(figures), lines
    kinds = [(m.group(1), m.group(3)) for m in figures]
    assert kinds == [('training', 'img/s'), ('training', 'GFLOP/s'), ('inference', 'img/s'),
                     ('inference', 'GFLOP/s'), ('matmul', 'GFLOP/s'), ('pipeline', 'img/s'),
                     ('pipeline', 'img/s/core')]
    assert all(float(m.group(2)) > 0 for m in figures)
    summary = SUMMARY.match(lines[-1])
    assert summary, lines[-1]
    assert (summary.group(1), summary.group(2)) == (figures[0].group(2), figures[2].group(2))
    assert 'of the matrix product' in lines[2] and 'of the matrix product' in lines[4]
    assert lines[1].endswith(', NHWC)') and lines[3].endswith(', NHWC)')     # the CPU's layout


def test_bad_data_dir_is_a_one_line_error(capsys, tmp_path):
    assert bench.main(['--data-dir', str(tmp_path / 'missing')]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: --data-dir') and 'missing' in err[0]
    (tmp_path / 'empty').mkdir()
    assert bench.main(['--data-dir', str(tmp_path / 'empty')]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith('error: no images')


@pytest.mark.slow
def test_bench_measures_the_nchw_layout_too(capsys):
    rc = bench.main(['--input-size', '67', '--batch-size', '2', '--steps', '1', '--warmup', '1',
                     '--matmul-size', '128', '--data-format', 'NCHW', '--skip-pipeline'])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].endswith('(fp32, batch 2)') and not any(line.startswith('pipeline') for line in lines)
    assert lines[1].startswith('training') and lines[1].endswith('median of 1, NCHW)')


@pytest.mark.slow
def test_profile_splits_the_training_step_into_its_parts(capsys):
    rc = bench.main(['--input-size', '67', '--batch-size', '2', '--steps', '1', '--warmup', '1',
                     '--matmul-size', '128', '--skip-pipeline', '--profile'])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [re.match(r'^profile +(\d+\.\d) % of op time  (.+)$', line) for line in lines if line.startswith('profile')]
    assert rows and all(rows), lines
    shares = {m.group(2): float(m.group(1)) for m in rows}
    assert abs(sum(shares.values()) - 100) < 1
    for part in ('local response normalisation (forward and gradient)', 'convolution weight gradients',
                 'convolutions (forward, with bias and ReLU)', 'weight decay and momentum update', 'dropout'):
        assert shares.get(part, 0) > 0, (part, shares)
    assert lines[-1].startswith('train ')


def test_op_categories():
    assert bench.op_category('gradients/lrn1_a/IdentityN_grad/mul', 'Mul').startswith('local response')
    assert bench.op_category('gradients/conv2_b/Conv2D_grad/Conv2DBackpropFilter',
                             '_MklNativeConv2DBackpropFilterWithBias') == 'convolution weight gradients'
    assert bench.op_category('decayed_gradients_12/add', 'AddV2') == 'weight decay and momentum update'
    assert bench.op_category('fc6_a/MatMul', '_MklNativeFusedMatMul').startswith('fully-connected')


@pytest.mark.slow
def test_pipeline_threads_and_a_folder_that_is_not_there(tmp_path, capsys):
    for i in range(3):
        encode_to = tmp_path / f'{i}.JPEG'
        encode_to.write_bytes(encode(smooth_image(300, 260, seed=i), 'JPEG'))
    assert bench.main(['--data-dir', str(tmp_path), '--pipeline-seconds', '0.5', '--batch-size', '8', '--threads', '1',
                       '--input-size', '67', '--steps', '1', '--warmup', '1', '--matmul-size', '128']) == 0
    out = capsys.readouterr().out
    assert '1 threads)' in out and 'img/s/core' in out
    assert bench.main(['--data-dir', str(tmp_path / 'nothing')]) == 2
    assert 'is not a folder' in capsys.readouterr().err
