"""Classify images with a trained AlexNet.

    python classify.py lussari.jpg                 # best checkpoint of runs/alexnet, 5 random crops
    python classify.py *.png --ten-crop --top-k 3
    python classify.py photo.jpg --center --json   # machine-readable output
    python classify.py photos/ -r --csv photos.csv  # a folder (and its sub-folders): one CSV row an image

prints, for each image, its top-k classes and their scores (the softmax averaged over
the crops, Section 4.1):

    AlexNet saw (lussari.jpg):
    alp - score: 0.5758
    church, church building - score: 0.0517

Any common format is read (JPEG, PNG, BMP, GIF; grayscale, RGBA, CMYK). A folder is
classified image by image, sorted by path. An image that cannot be read (missing,
empty, not an image; a pipe is never opened) gets one `error:` line and the others
are still classified (exit 1). --csv and --plot are checked before any work (never
one of the images, nor an existing file of another kind) and written whole, only
when an image was classified (else a line without `error:` says nothing was
written). A file name that is not UTF-8 is printed with \\xNN escapes and written
to the CSV as its bytes.
"""
import csv
import io
import json
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')   # decoding errors are reported per image, below
import quiet  # noqa: F401  (first: keeps TensorFlow's start-up lines out of the output)
import numpy as np
import tensorflow as tf

import alexnet
import checkpoints
import cli
import decoding
import evaluate
import parallel
import plots
import preprocessing
import progress
from errors import DataError
from datasets import image_paths
from files import check_output_file, printable, write_whole

PROGRESS_ABOVE = 10      # images: more than this many get a progress bar

def parser():
    p = cli.Parser(description='Classify images with a trained AlexNet.')
    p.add_argument('images', nargs='+', metavar='IMAGE', help='image files (JPEG, PNG, BMP, GIF) or folders of them')
    p.add_argument('-r', '--recursive', action='store_true', help='also the images in the folders\' sub-folders')
    cli.add_checkpoint_flags(p)
    cli.add_crop_flags(p)
    cli.add_top_k_flag(p, 'classes shown per image')
    p.add_argument('--seed', type=cli.whole(0), default=0, help='seed of the random crops (default 0)')
    cli.add_devices_flag(p)
    p.add_argument('--json', action='store_true', help='print a JSON list of {image, top: [{class, index, score}]}')
    p.add_argument('--csv', metavar='FILE', help='also write one row per image (image, then each top-k class and '
                   'score) to this CSV file')
    p.add_argument('--plot', metavar='PNG', help='also draw each image with its top-k as bars (the paper\'s Figure 4) '
                   'into this PNG file')
    return p


def parse_args(argv):
    return parser().parse_args(argv)


class Classifier:
    """The graph, built once: encoded bytes -> decoded image -> crops -> averaged softmax."""

    def __init__(self, prefix, meta, mode='random', num_random=cli.RANDOM_CROPS, seed=0, devices=None):
        self.class_names = meta['class_names']
        devices = parallel.tower_devices(devices)      # None: two GPUs, one GPU or the CPU
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.contents = tf.compat.v1.placeholder(tf.string, [], name='contents')
            with tf.device('/cpu:0'):
                image = decoding.decode_image(self.contents)
                crops = preprocessing.eval_crops(image, meta['input_size'], meta['mean'], meta['resize_size'],
                                                 mode=mode, num_random=num_random, seed=seed,
                                                 **preprocessing.model_input(meta))
            self.probs = evaluate.crop_probabilities(crops[None], meta['num_classes'], devices,
                                                     alexnet.lrn_of(meta))[0]
            self.sess = tf.compat.v1.Session(config=parallel.session_config('fp32', devices))
            evaluate.restore_weights(self.sess, prefix)

    def probabilities(self, path):
        """Class probabilities [C] of one image file; DataError (one line) when it cannot be read."""
        contents = decoding.file_contents(path)
        try:
            return self.sess.run(self.probs, {self.contents: contents})
        except tf.errors.InvalidArgumentError as e:      # the decoder's reason, without the graph context
            raise decoding.not_an_image(e) from None

    def top(self, probs, k):
        """[{class, index, score}] of the k highest probabilities (ties: lower index first)."""
        order = np.argsort(-probs, kind='stable')[:k]
        return [{'class': self.class_names[i], 'index': int(i), 'score': float(probs[i])} for i in order]

    def close(self):
        self.sess.close()


def csv_text(results, k):
    """One row per image: image, class_1, score_1, ... class_k, score_k."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(['image'] + [f'{what}_{i}' for i in range(1, k + 1) for what in ('class', 'score')])
    for r in results:
        writer.writerow([r['image']] + [v for t in r['top'] for v in (t['class'], f'{t["score"]:.6f}')])
    return text.getvalue()


def classify_all(classifier, paths, a):
    """(results, number that failed): each image's top-k, printed as it comes unless --json or --csv."""
    results, failed = [], 0
    quiet_lines = a.json or a.csv
    bar = progress.bar(total=len(paths), desc='classify', unit='img', disable=len(paths) <= PROGRESS_ABOVE)
    for path in paths:
        try:
            if isinstance(path, tuple):       # a folder without images
                path, problem = path
                raise DataError(problem)
            top = classifier.top(classifier.probabilities(path), a.top_k)
        except DataError as e:
            bar.write(f'error: {printable(path)}: {e}', file=sys.stderr)
            failed += 1
            continue
        finally:
            bar.update(1)
        results.append({'image': path, 'top': top})
        if not quiet_lines:
            bar.write(f'AlexNet saw ({printable(path)}):\n' + '\n'.join(f'{t["class"]} - score: {t["score"]:.4f}' for t in top) + '\n')
    bar.close()
    return results, failed


def check_outputs(a, images):
    """--csv and --plot, before any work: each a new file or an earlier output of its kind, never one of the
    images nor the other output."""
    if a.csv and a.plot and os.path.realpath(a.csv) == os.path.realpath(a.plot):
        raise DataError(f'--csv and --plot both name {a.csv}: give each its own file')
    for flag, path, kind in (('--csv', a.csv, 'text'), ('--plot', a.plot, 'png')):
        if path:
            check_output_file(path, flag, kind, images)


def write_outputs(a, results, k):
    """The CSV (image names as the file system's bytes: each row names its file exactly) and the figure."""
    said = sys.stderr if a.json else sys.stdout
    if a.csv:
        write_output(a.csv, '--csv', lambda f: f.write(os.fsencode(csv_text(results, k))))
        print(f'{len(results)} rows written to {printable(a.csv)}', file=said)
    if a.plot:
        write_output(a.plot, '--plot', lambda f: plots.predictions_figure(results, f))
        print(f'figure written to {printable(a.plot)}', file=said)


def write_output(path, flag, write):
    """files.write_whole; a DataError when the file system refuses (full, read-only)."""
    try:
        write_whole(path, write)
    except OSError as e:
        raise DataError(f'{flag} {printable(path)} could not be written: {e.strerror or e}') from None


def main(argv=None):
    cli.one_line_warnings()
    a = parse_args(argv)
    paths = image_paths(a.images, a.recursive)      # files, and (path, why) for what cannot be read
    try:
        mode, num_crops, _ = cli.crop_mode(a)
        check_outputs(a, [p for p in paths if isinstance(p, str)])
        prefix, meta = checkpoints.for_use(a.train_dir, a.checkpoint)
        devices = cli.devices(a.devices)
    except DataError as e:
        return cli.fail(e)
    has_files = any(isinstance(p, str) for p in paths)
    classifier = Classifier(prefix, meta, mode, num_crops, a.seed, devices) if has_files else None
    try:
        results, failed = classify_all(classifier, paths, a)
    finally:
        if classifier:
            classifier.close()
    if a.json:
        print(json.dumps(results, indent=1))
    if not results:                     # each image had its error line; an earlier CSV or figure is kept
        outputs = ' and '.join(printable(p) for p in (a.csv, a.plot) if p)
        if outputs:
            print(f'nothing written to {outputs}: no image could be classified', file=sys.stderr)
        return 1
    try:
        write_outputs(a, results, min(a.top_k, len(meta['class_names'])))
    except DataError as e:
        return cli.fail(e, 1)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
