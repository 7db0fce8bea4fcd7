"""classify.py: image formats, the scores against an independent evaluation, output, bad inputs."""
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

import checkpoints
import classify
from conftest import TEST_DATA
from helpers import EVAL_CLASSES as CLASSES, make_run, network_probabilities, ten_crops

JPEG = TEST_DATA / 'imagenet' / 'val' / 'ILSVRC2012_val_00000001.JPEG'
GRAY_JPEG = TEST_DATA / 'imagenet' / 'val' / 'ILSVRC2012_val_00000034.JPEG'   # the grayscale one


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp('classify')
    tree, run_dir = make_run(root)
    prefix, meta = checkpoints.for_use(str(run_dir))
    return dict(tree=tree, dir=str(run_dir), prefix=prefix, meta=meta, root=root)


@pytest.fixture(scope='module')
def images(run):
    """The same picture in several formats (from the real JPEG, made small)."""
    folder = run['root'] / 'images'
    folder.mkdir()
    rgb = Image.open(JPEG).convert('RGB').resize((120, 90))
    gray = rgb.convert('L')
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 120), np.uint8)))
    made = {'rgb.png': rgb, 'rgba.png': rgba, 'gray.png': gray, 'gray_as_rgb.png': gray.convert('RGB'),
            'rgb.bmp': rgb, 'palette.gif': rgb, 'cmyk.jpg': rgb.convert('CMYK'), 'gray.jpg': gray}
    for name, image in made.items():
        image.save(folder / name)
    return {name: str(folder / name) for name in made}


def classify_json(capsys, *argv):
    code = classify.main([str(a) for a in argv] + ['--json'])
    out = capsys.readouterr().out
    return code, {r['image']: r for r in json.loads(out)}


@pytest.mark.slow
def test_every_format_is_classified_alike(run, images, capsys):
    paths = [str(JPEG), str(GRAY_JPEG), *images.values()]
    code, results = classify_json(capsys, '--train-dir', run['dir'], '--center', '--top-k', CLASSES, *paths)
    assert code == 0 and sorted(results) == sorted(paths)
    scores = {}
    for path, r in results.items():
        top = r['top']
        assert [t['class'] for t in top] == [run['meta']['class_names'][t['index']] for t in top]
        assert sorted(t['index'] for t in top) == list(range(CLASSES))
        assert sum(t['score'] for t in top) == pytest.approx(1, abs=1e-5)
        assert all(a['score'] >= b['score'] for a, b in zip(top, top[1:]))
        scores[path] = np.array([t['score'] for t in sorted(top, key=lambda t: t['index'])])
    # alpha is dropped, gray is repeated over R, G, B, and BMP holds the same pixels as PNG
    np.testing.assert_allclose(scores[images['rgba.png']], scores[images['rgb.png']], atol=1e-6)
    np.testing.assert_allclose(scores[images['gray.png']], scores[images['gray_as_rgb.png']], atol=1e-6)
    np.testing.assert_allclose(scores[images['rgb.bmp']], scores[images['rgb.png']], atol=1e-6)
    assert not np.allclose(scores[images['gray.png']], scores[images['rgb.png']], atol=1e-4)


@pytest.mark.slow
def test_scores_are_the_averaged_softmax_of_the_ten_crops(run, capsys):
    paths = sorted(str(p) for p in run['tree'].glob('test/class*/*.png'))[:3]
    code, results = classify_json(capsys, '--checkpoint', run['prefix'], '--ten-crop', '--top-k', '3', *paths)
    assert code == 0
    for path in paths:
        expected = network_probabilities(run['prefix'], CLASSES, ten_crops(path, run['meta']['mean'])).mean(0)
        top = results[path]['top']
        assert [t['index'] for t in top] == list(np.argsort(-expected)[:3])
        np.testing.assert_allclose([t['score'] for t in top], np.sort(expected)[::-1][:3], atol=1e-5)


@pytest.mark.slow
def test_text_output(run, images, capsys):
    png = images['rgb.png']
    assert classify.main(['--train-dir', run['dir'], str(JPEG), png]) == 0      # 5 random crops, top 5
    out = capsys.readouterr().out
    blocks = out.strip().split('\n\n')
    assert len(blocks) == 2
    _, results = classify_json(capsys, '--train-dir', run['dir'], str(JPEG), png)
    for block, path in zip(blocks, (str(JPEG), png)):
        lines = block.splitlines()
        assert lines[0] == f'AlexNet saw ({path}):' and len(lines) == 6
        for line, t in zip(lines[1:], results[path]['top']):
            assert re.fullmatch(r'class\d - score: \d\.\d{4}', line), line
            assert line == f'{t["class"]} - score: {t["score"]:.4f}'
    five = results[str(JPEG)]
    _, centre = classify_json(capsys, '--train-dir', run['dir'], '--center', str(JPEG))
    assert five['top'] != centre[str(JPEG)]['top']           # the random crops are not the centre crop


@pytest.mark.slow
def test_bad_inputs_get_one_line_each_and_the_others_are_classified(run, images, tmp_path, capfd):
    data = JPEG.read_bytes()
    (tmp_path / 'truncated.jpg').write_bytes(data[:len(data) // 2])
    (tmp_path / 'empty.png').write_bytes(b'')
    (tmp_path / 'notes.jpg').write_text('not an image\n')
    (tmp_path / 'no_images').mkdir()                        # a folder is classified image by image: none here
    bad = [str(tmp_path / 'missing.jpg'), str(tmp_path / 'truncated.jpg'), str(tmp_path / 'empty.png'),
           str(tmp_path / 'notes.jpg'), str(tmp_path / 'no_images')]
    argv = [bad[0], str(JPEG), *bad[1:3], images['rgb.png'], *bad[3:]]
    assert classify.main(['--train-dir', run['dir'], '--center', *argv]) == 1
    out, err = capfd.readouterr()
    assert out.count('AlexNet saw') == 2 and f'AlexNet saw ({JPEG}):' in out
    assert 'Traceback' not in err
    errors = [line for line in err.splitlines() if line.startswith('error:')]
    assert [e.split(': ')[1] for e in errors] == bad
    assert 'no such file' in errors[0] and 'not a readable image' in errors[1]
    assert 'empty file' in errors[2] and 'not a readable image' in errors[3] and 'folder' in errors[4]


def test_no_checkpoint_gives_the_hint(tmp_path, capsys):
    assert classify.main(['--train-dir', str(tmp_path / 'run'), str(JPEG)]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: no checkpoint in') and 'train.py -scratch' in err and err.count('\n') == 1
    assert classify.main(['--checkpoint', str(tmp_path / 'model.ckpt-5'), str(JPEG)]) == 2
    assert capsys.readouterr().err.startswith('error: no usable checkpoint at')


@pytest.mark.slow
def test_plot_draws_each_image_with_its_top_classes(run, tmp_path, capsys):
    png = tmp_path / 'figure.png'
    assert classify.main(['--train-dir', run['dir'], '--center', str(JPEG), str(GRAY_JPEG), '--plot', str(png)]) == 0
    assert f'figure written to {png}' in capsys.readouterr().out
    with Image.open(png) as image:
        assert image.format == 'PNG' and image.width > 400 and image.height > 300
        pixels = np.asarray(image.convert('RGB'))
    assert (np.abs(pixels.astype(int) - [214, 39, 40]).sum(-1) < 30).sum() > 500     # the red bars are drawn
    assert classify.main(['--train-dir', run['dir'], str(JPEG), '--plot', str(tmp_path / 'no' / 'f.png')]) == 2
    assert capsys.readouterr().err.startswith('error: --plot')


@pytest.mark.slow
def test_a_folder_is_classified_in_order_into_a_csv_with_a_line_for_each_bad_file(run, images, tmp_path, capsys):
    folder = tmp_path / 'photos'
    (folder / 'sub').mkdir(parents=True)
    for i, name in enumerate(('b.png', 'a.png', 'sub/c.png')):
        Image.open(images['rgb.png']).save(folder / name)
    (folder / 'broken.jpg').write_bytes(b'\xff\xd8 not a jpeg')
    (folder / 'notes.txt').write_text('not an image, not listed')
    out_csv = tmp_path / 'photos.csv'
    code = classify.main(['--train-dir', run['dir'], '--center', '-k', '3', str(folder), '--csv', str(out_csv)])
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith('error:')]
    assert code == 1 and len(errors) == 1 and 'broken.jpg' in errors[0] and 'Traceback' not in captured.err
    rows = out_csv.read_text().splitlines()
    assert rows[0] == 'image,class_1,score_1,class_2,score_2,class_3,score_3'
    assert [r.split(',')[0] for r in rows[1:]] == [str(folder / 'a.png'), str(folder / 'b.png')]   # sorted
    probs = classify.Classifier(run['prefix'], run['meta'], 'center').probabilities(str(folder / 'a.png'))
    best = int(np.argmax(probs))
    assert rows[1].split(',')[1:3] == [run['meta']['class_names'][best], f'{probs[best]:.6f}']
    assert classify.main(['--train-dir', run['dir'], '--center', '-r', str(folder), '--json']) == 1
    assert [r['image'] for r in json.loads(capsys.readouterr().out)] == \
        [str(folder / n) for n in ('a.png', 'b.png', 'sub/c.png')]


@pytest.mark.slow
def test_a_folder_without_images_and_a_csv_in_no_folder_are_one_line(run, tmp_path, capsys):
    (tmp_path / 'empty').mkdir()
    assert classify.main(['--train-dir', run['dir'], str(tmp_path / 'empty'), str(JPEG)]) == 1
    captured = capsys.readouterr()
    assert 'a folder without images (add -r' in captured.err and 'AlexNet saw' in captured.out
    assert classify.main(['--train-dir', run['dir'], str(JPEG), '--csv', str(tmp_path / 'no' / 'x.csv')]) == 2
    assert 'there is no folder' in capsys.readouterr().err and not (tmp_path / 'no').exists()


@pytest.mark.slow                # the module's trained run
def test_an_output_that_is_an_image_or_a_file_of_another_kind_is_refused_before_any_work(run, tmp_path, capsys):
    photos = tmp_path / 'photos'
    photos.mkdir()
    pngs = sorted(run['tree'].glob('test/class1/*.png'))[:3]
    for i, png in enumerate(pngs, 1):
        (photos / f'p{i}.png').write_bytes(png.read_bytes())
    np.savez(tmp_path / 'feats.npz', features=np.zeros([2, 3], np.float32))
    before = {p: p.read_bytes() for p in tmp_path.rglob('*') if p.is_file()}
    p1, p2, p3 = (str(photos / f'p{i}.png') for i in (1, 2, 3))
    for argv, message in (
            (['--csv', p1, p2, p3], f'--csv {p1} exists and is a PNG image, not text'),   # a shell pattern after --csv
            (['--plot', p1, p1, p2], f'--plot {p1} is one of the files to read'),
            (['--plot', p2, str(photos)], f'--plot {p2} is one of the files to read'),     # in a folder read
            (['--csv', str(tmp_path / 'feats.npz'), p1], f'--csv {tmp_path}/feats.npz exists and is an .npz of arrays'),
            (['--csv', str(tmp_path / 'out'), '--plot', str(tmp_path / 'out'), p1], '--csv and --plot both name')):
        assert classify.main(['--train-dir', run['dir'], *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f'error: {message}') and err.count('\n') == 1, err
    assert {p: p.read_bytes() for p in tmp_path.rglob('*') if p.is_file()} == before


def test_nothing_is_written_when_no_image_is_classified(run, tmp_path, capsys):
    photos = tmp_path / 'photos'
    photos.mkdir()                                       # its images were moved away since the last run
    (tmp_path / 'photos.csv').write_text('image,class_1,score_1\nphotos/a.png,class3,0.500000\n')
    before = sorted(os.listdir(tmp_path)), (tmp_path / 'photos.csv').read_text()
    out = ['--csv', str(tmp_path / 'photos.csv'), '--plot', str(tmp_path / 'photos-figure.png')]
    assert classify.main(['--train-dir', run['dir'], str(photos), *out]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f'error: {photos}: a folder without images (add -r for its sub-folders)'     # the one error
    assert err[1] == f'nothing written to {tmp_path}/photos.csv and {tmp_path}/photos-figure.png: no image ' \
                     f'could be classified' and len(err) == 2
    assert (sorted(os.listdir(tmp_path)), (tmp_path / 'photos.csv').read_text()) == before


@pytest.mark.slow
def test_names_that_are_not_utf8_and_links_that_loop_or_pipes_in_a_folder(run, tmp_path, capsys):
    folder = tmp_path / 'latin'
    folder.mkdir()
    png = sorted(run['tree'].glob('test/class1/*.png'))[0].read_bytes()
    with open(os.path.join(os.fsencode(folder), b'caf\xe9.png'), 'wb') as f:     # Latin-1, not UTF-8
        f.write(png)
    (folder / 'ok.png').write_bytes(png)
    (folder / 'loop.png').symlink_to('loop.png')
    os.mkfifo(folder / 'pipe.png')
    cafe = os.fsdecode(os.path.join(os.fsencode(folder), b'caf\xe9.png'))
    problems = [f'error: {folder}/loop.png: a symbolic link that loops: not read',
                f'error: {folder}/pipe.png: not a regular file (a pipe, device or socket): not read']
    figure = tmp_path / 'figure.png'
    assert classify.main(['--train-dir', run['dir'], '--center', '-k', '2', str(folder), '--plot', str(figure)]) == 1
    out, err = capsys.readouterr()        # capsys's stdout, like a UTF-8 terminal's, cannot take surrogates
    assert [line for line in err.splitlines() if line.startswith('error:')] == problems
    assert f'AlexNet saw ({folder}/caf\\xe9.png):' in out and f'AlexNet saw ({folder}/ok.png):' in out
    assert f'figure written to {figure}' in out and figure.read_bytes().startswith(b'\x89PNG')
    table = tmp_path / 'latin.csv'
    assert classify.main(['--train-dir', run['dir'], '--center', '-k', '2', '-r', str(folder), '--json',
                          '--csv', str(table)]) == 1
    out, err = capsys.readouterr()
    results = json.loads(out)
    assert [r['image'] for r in results] == [cafe, str(folder / 'ok.png')]      # os.fsencode: the name's bytes
    assert [line for line in err.splitlines() if line.startswith('error:')] == problems
    rows = table.read_bytes().splitlines()
    assert rows[1].startswith(os.fsencode(folder) + b'/caf\xe9.png,') and rows[1].split(b',')[1:] == \
        rows[2].split(b',')[1:] and len(rows) == 3
