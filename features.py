"""AlexNet as a feature extractor: the fc7 (or pool5) vectors of many images, into one .npz file.

    python features.py --train-dir runs/bvlc_alexnet photos/ -r -o feats.npz
    python -c "import numpy as np; f = np.load('feats.npz'); print(f['features'].shape, f['files'][:3])"

Each image is read as classify.py reads it and its centre crop goes through the
network; fc7 is taken after its ReLU and before dropout (the paper's "last
4096-dimensional hidden layer", Section 6.1), pool5 flattened with tower a's maps
first. The file holds `features` float32 [N, D], `files` (the N image paths, in
the order of the rows), `layer` and `checkpoint`; an unreadable image is skipped
with one `warning:` line giving the reason, and is not in it (exit status 1). The paper's Figure 4 (right), nearest
neighbours in fc7, is `visualize.py neighbours`, which reads the same vectors.
"""
import os
import sys

import quiet  # noqa: F401  (first: keeps TensorFlow's start-up lines out of the output)
import numpy as np
import tensorflow as tf

import alexnet
import checkpoints
import cli
import datasets
import evaluate
import parallel
import preprocessing
import progress
from datasets import DataError
from files import check_output_file

LAYERS = ('fc7', 'pool5')      # the features alexnet.inference gives (endpoints)
BATCH_SIZE = 64                # images a step: fc7 of 64 images is 1 MB; the 227x227 crops 40 MB


def parse_args(argv):
    p = cli.Parser(description='Write the fc7 (or pool5) features of images to an .npz file.')
    p.add_argument('images', nargs='+', metavar='IMAGE', help='image files (JPEG, PNG, BMP, GIF) or folders of them')
    p.add_argument('-r', '--recursive', action='store_true', help='also the images in the folders\' sub-folders')
    p.add_argument('-o', '--out', required=True, help='the .npz file to write')
    p.add_argument('--layer', choices=LAYERS, default='fc7', help='fc7 (after ReLU, before dropout; default) or pool5')
    p.add_argument('-b', '--batch-size', type=int, default=BATCH_SIZE, help=f'images a step (default {BATCH_SIZE})')
    cli.add_checkpoint_flags(p)
    cli.add_devices_flag(p)
    return p.parse_args(argv)


class Extractor:
    """The graph, built once for a list of files: centre crops in batches -> the layer's features."""

    def __init__(self, prefix, meta, files, layer='fc7', batch_size=BATCH_SIZE, devices=None):
        self.split = datasets.Split(labels=np.arange(len(files)), files=list(files))   # labels: row numbers
        self.graph = tf.Graph()
        with self.graph.as_default():
            with tf.device('/cpu:0'):
                data = preprocessing.eval_dataset(self.split, batch_size, meta['input_size'], meta['mean'],
                                                  meta['resize_size'], mode='center',
                                                  **preprocessing.model_input(meta))
                self.iterator = tf.compat.v1.data.make_initializable_iterator(data)
                crops, self.rows = self.iterator.get_next()
            ends = {}
            size = meta['input_size']
            alexnet.inference(tf.reshape(crops, [-1, size, size, 3]), meta['num_classes'],
                              devices=parallel.tower_devices(devices), lrn_constants=evaluate.lrn_constants(meta),
                              endpoints=ends)
            self.features = ends[layer]
            self.sess = tf.compat.v1.Session(config=parallel.session_config('fp32', parallel.tower_devices(devices)))
            evaluate.restore_weights(self.sess, prefix)

    def run(self, show_progress=True):
        """(features float32 [M, D], the M row numbers read) in file order; unreadable files are skipped."""
        self.sess.run(self.iterator.initializer)
        out, rows = [], []
        bar = progress.bar(total=len(self.split), desc='features', unit='img', disable=not show_progress)
        while True:
            try:
                f, r = self.sess.run([self.features, self.rows])
            except tf.errors.OutOfRangeError:
                break
            out.append(f.astype(np.float32))
            rows.append(r)
            bar.update(len(r))
        bar.close()
        return (np.concatenate(out) if out else np.zeros([0, int(self.features.shape[-1])], np.float32),
                np.concatenate(rows) if rows else np.zeros([0], np.int64))

    def close(self):
        self.sess.close()


def save_npz(path, **arrays):
    """np.savez, written whole or not at all (a temporary file beside it, then renamed)."""
    tmp = f'{path}.tmp-{os.getpid()}.npz'
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def main(argv=None):
    cli.one_line_warnings()
    a = parse_args(argv)
    try:
        if a.batch_size < 1:
            raise DataError(f'--batch-size must be at least 1, got {a.batch_size}')
        check_output_file(a.out, '--out')
        prefix, meta = checkpoints.for_use(a.train_dir, a.checkpoint)
        devices = cli.devices(a.devices)
    except DataError as e:
        return cli.fail(e)
    paths = datasets.image_paths(a.images, a.recursive)
    for path, why in [p for p in paths if isinstance(p, tuple)]:
        print(f'error: {path}: {why}', file=sys.stderr)
    files = [p for p in paths if not isinstance(p, tuple)]
    if not files:
        return cli.fail('no image to read: give image files or folders of them')
    extractor = Extractor(prefix, meta, files, a.layer, a.batch_size, devices)
    try:
        features, rows = extractor.run()      # an unreadable image: one warning line each, with its reason
    finally:
        extractor.close()
    save_npz(a.out, features=features, files=np.array([files[i] for i in rows]), layer=a.layer,
             checkpoint=prefix)
    print(f'{a.out}: {a.layer} features of {len(rows)} images, {features.shape[1]} numbers each, from {prefix}')
    return 1 if len(rows) < len(paths) else 0


if __name__ == '__main__':
    sys.exit(main())
