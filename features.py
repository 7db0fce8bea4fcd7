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
import sys

import quiet  # noqa: F401  (first: keeps TensorFlow's start-up lines out of the output)
import numpy as np

import checkpoints
import cli
import datasets
import embedding
from datasets import DataError
from embedding import BATCH_SIZE, LAYERS
from files import check_output_file


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
    split = datasets.Split(labels=np.zeros(len(files), np.int64), files=files)
    extractor = embedding.Extractor(prefix, meta, split, a.layer, a.batch_size, devices)
    try:
        features, rows = extractor.run()      # an unreadable image: one warning line each, with its reason
    finally:
        extractor.close()
    embedding.save_npz(a.out, features=features, files=np.array([files[i] for i in rows]), layer=a.layer,
             checkpoint=prefix)
    print(f'{a.out}: {a.layer} features of {len(rows)} images, {features.shape[1]} numbers each, from {prefix}')
    return 1 if len(rows) < len(paths) else 0


if __name__ == '__main__':
    sys.exit(main())
