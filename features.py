"""AlexNet as a feature extractor: the fc7 (or pool5) vectors of many images, into one .npz file.

    python features.py --train-dir runs/bvlc_alexnet photos/ -r -o feats.npz
    python -c "import numpy as np; f = np.load('feats.npz'); print(f['features'].shape, f['files'][:3])"

Each image is read as classify.py reads it and its centre crop goes through the
network; fc7 is taken after its ReLU and before dropout (the paper's "last
4096-dimensional hidden layer", Section 6.1), pool5 flattened with tower a's maps
first. The file holds `features` float32 [N, D], `files` (the N image paths, in
the order of the rows), `layer` and `checkpoint`; an unreadable image (missing,
empty, not an image; a pipe is never opened) is left out with one `error:` line
giving the reason, as classify.py gives it (exit status 1); when none can be read,
nothing is written. -o is checked before any work: never one of
the images, nor an existing file that is not an .npz. The paper's Figure 4 (right),
nearest neighbours in fc7, is `visualize.py neighbours`, which reads the same vectors.
"""
import sys
import warnings

import quiet  # noqa: F401  (first: keeps TensorFlow's start-up lines out of the output)
import numpy as np

import checkpoints
import cli
import datasets
import decoding
import embedding
from errors import DataError
from embedding import BATCH_SIZE, LAYERS
from files import check_output_file, printable


def parser():
    p = cli.Parser(description='Write the fc7 (or pool5) features of images to an .npz file.')
    p.add_argument('images', nargs='+', metavar='IMAGE', help='image files (JPEG, PNG, BMP, GIF) or folders of them')
    p.add_argument('-r', '--recursive', action='store_true', help='also the images in the folders\' sub-folders')
    p.add_argument('-o', '--out', required=True, help='the .npz file to write')
    p.add_argument('--layer', choices=LAYERS, default='fc7', help='fc7 (after ReLU, before dropout; default) or pool5')
    p.add_argument('-b', '--batch-size', type=cli.whole(1), default=BATCH_SIZE, help=f'images a step (default {BATCH_SIZE})')
    cli.add_checkpoint_flags(p)
    cli.add_devices_flag(p)
    return p


def parse_args(argv):
    return parser().parse_args(argv)


def main(argv=None):
    cli.one_line_warnings()
    a = parse_args(argv)
    paths = datasets.image_paths(a.images, a.recursive)     # files, and (path, why) for what cannot be read
    files = [p for p in paths if not isinstance(p, tuple)]
    try:
        check_output_file(a.out, '-o', 'npz', files)
        prefix, meta = checkpoints.for_use(a.train_dir, a.checkpoint)
        devices = cli.devices(a.devices)
    except DataError as e:
        return cli.fail(e)
    features, rows = extract(prefix, meta, files, a, devices)
    report_unread(paths, {files[i] for i in rows})
    if not len(rows):                         # each image had its error line; an earlier file is left as it was
        print(f'nothing written to {printable(a.out)}: no image could be read', file=sys.stderr)
        return 1
    try:
        embedding.save_npz(a.out, features=features, files=np.array([files[i] for i in rows]), layer=a.layer,
                           checkpoint=prefix)
    except OSError as e:
        return cli.fail(f'-o {printable(a.out)} could not be written: {e.strerror or e}', 1)
    print(f'{printable(a.out)}: {a.layer} features of {len(rows)} images, {features.shape[1]} numbers each, '
          f'from {printable(prefix)}')
    return 1 if len(rows) < len(paths) else 0


def extract(prefix, meta, files, a, devices):
    """(features [M, D], the M row numbers of files read): embedding.Extractor's, without its warning for each
    image it drops (report_unread names them as classify.py does)."""
    if not files:
        return None, []
    split = datasets.Split(labels=np.zeros(len(files), np.int64), files=files)
    extractor = embedding.Extractor(prefix, meta, split, a.layer, a.batch_size, devices)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', datasets.UnreadableImageWarning)
            return extractor.run()
    finally:
        extractor.close()


def report_unread(paths, read):
    """One `error:` line for each of paths not read, in order, with why (classify.py's words)."""
    for path in paths:
        path, why = path if isinstance(path, tuple) else (path, None)
        if path not in read:
            why = why or decoding.why_not_an_image(path) or 'failed inside the input pipeline'
            print(f'error: {printable(path)}: {why}', file=sys.stderr)


if __name__ == '__main__':
    sys.exit(main())
