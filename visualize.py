"""Pictures of what a trained AlexNet learnt: its conv1 kernels (Figure 3) and nearest neighbours (Figure 4).

    python visualize.py kernels --train-dir runs/alexnet -o conv1.png
    python visualize.py kernels --checkpoint runs/bvlc_alexnet/model.ckpt-0 -o conv1.png [--scale 4]
    python visualize.py neighbours --train-dir runs/cifar10 --gallery train --queries test -o neighbours.png
    python visualize.py neighbours --train-dir runs/bvlc_alexnet --gallery photos/ query.jpg -o neighbours.png

`neighbours` draws the paper's Figure 4 (right): for each query image, the six gallery
images whose fc7 vectors are nearest in Euclidean distance (embedding.py), with their
distances. The gallery is a folder of images or a split of the run's dataset (train,
val, test); its vectors are cached (--cache) so a second query costs only its own
forward pass. The queries are image files, or --count images drawn from a split
(--queries); --class-share N prints how many of N queries' neighbours share their class.

`kernels` draws the 96 conv1 kernels as the paper's Figure 3: tower a's 48 (conv1_a/weights,
[11, 11, 3, 48]) in the rows above tower b's 48, each kernel stretched to its own min..max,
enlarged (nearest neighbour) and separated by a thin gap, in RGB (a checkpoint whose JSON says
"channel_order": "BGR", as imported Caffe weights, has its kernels' channels flipped first).
It prints, per tower, how colour-specific its kernels are:

    tower a: colour share 0.12 (48 kernels)

the share of a kernel's variance that is not in its grey component (the kernel minus its
per-pixel channel mean, squared and summed, over the kernel's squared deviations from its
mean), averaged over the tower: 0 for grey kernels, 2/3 for a zero-mean kernel in a single
channel, 1 at most. The paper (Section 3.2) saw one GPU's kernels colour-agnostic and the
other's colour-specific. The checkpoint is found as test.py finds it (checkpoints.for_use), and an
--ema run's kernels are its averages, as every command restores them.
"""
import quiet  # noqa: F401  (first: keeps TensorFlow's start-up lines out of the output)

import glob
import os
import sys

import numpy as np

import alexnet
import checkpoints
import cli
import datasets
import embedding
import plots
import settings
from errors import DataError
from files import check_output_file

SCALE = 4            # each kernel pixel becomes SCALE x SCALE pixels
MAX_SCALE = 64       # conv1's kernels at 64: a picture of 11,298 x 4,248 pixels
PER_ROW = 16         # kernels per row: 3 rows per tower
GAP = 2              # pixels between kernels (and around them)
TOWER_GAP = 8        # extra pixels between the towers' blocks
BACKGROUND = 255     # white gaps
SPLITS = ('train', 'val', 'test')     # the dataset splits a gallery or the queries can be
OUTPUT_KINDS = {'.jpg': ('jpeg',), '.jpeg': ('jpeg',), '.pdf': ('pdf',), '.svg': ('svg',)}   # -o may replace; else PNG


def colour_share(kernels):
    """[n] shares of each kernel's variance outside its grey component, for kernels [h, w, 3, n]."""
    k = np.asarray(kernels, np.float64)
    grey = k.mean(axis=2, keepdims=True)                     # per-pixel channel mean
    colour = ((k - grey) ** 2).sum(axis=(0, 1, 2))
    total = ((k - k.mean(axis=(0, 1, 2), keepdims=True)) ** 2).sum(axis=(0, 1, 2))
    return np.divide(colour, total, out=np.zeros_like(colour), where=total > 0)


def grid_size(count, size, scale=SCALE, per_row=PER_ROW, gap=GAP, tower_gap=TOWER_GAP):
    """(height, width) of the picture of two towers of `count` kernels of size x size."""
    cell, rows = size * scale, -(-count // per_row)
    block = rows * cell + (rows + 1) * gap
    return 2 * block + tower_gap, per_row * cell + (per_row + 1) * gap


def kernel_grid(towers, scale=SCALE, per_row=PER_ROW, gap=GAP, tower_gap=TOWER_GAP):
    """uint8 RGB picture of the towers' kernels ([h, w, 3, n] each, RGB), tower a's rows first."""
    size, count = towers[0].shape[0], towers[0].shape[3]
    height, width = grid_size(count, size, scale, per_row, gap, tower_gap)
    picture = np.full((height, width, 3), BACKGROUND, np.uint8)
    cell, rows = size * scale, -(-count // per_row)
    block = rows * cell + (rows + 1) * gap
    for t, kernels in enumerate(towers):
        for i in range(kernels.shape[3]):
            k = kernels[..., i].astype(np.float64)
            lo, hi = k.min(), k.max()
            k = (k - lo) / (hi - lo) if hi > lo else np.full_like(k, 0.5)
            k = np.repeat(np.repeat(np.round(k * 255).astype(np.uint8), scale, 0), scale, 1)
            top = t * (block + tower_gap) + gap + (i // per_row) * (cell + gap)
            left = gap + (i % per_row) * (cell + gap)
            picture[top:top + cell, left:left + cell] = k
    return picture


def read_conv1(prefix, meta):
    """(both towers' conv1 kernels [h, w, 3, n] in RGB, are they --ema averages?): the averages where the
    checkpoint has them, as every command restores them (checkpoints.saved_weights)."""
    import tensorflow as tf
    try:
        reader = tf.train.load_checkpoint(prefix)
        names = checkpoints.variable_names(prefix)
        wanted = [f'conv1_{t}/weights' for t in alexnet.TOWERS]
        wanted = [name + checkpoints.AVERAGE_SUFFIX if name + checkpoints.AVERAGE_SUFFIX in names else name
                  for name in wanted]
        towers = [reader.get_tensor(name) for name in wanted]
    except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError) as e:
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f'{prefix}: no conv1_a/weights and conv1_b/weights to read ({message})') from None
    for t, k in zip(alexnet.TOWERS, towers):
        if k.ndim != 4 or k.shape[2] != 3 or k.shape[0] != k.shape[1]:
            raise DataError(f'{prefix}: conv1_{t}/weights has shape {list(k.shape)}, wanted [s, s, 3, n]')
    if str(meta.get('channel_order', 'RGB')).upper() == 'BGR':
        towers = [k[:, :, ::-1] for k in towers]
    return towers, any(name.endswith(checkpoints.AVERAGE_SUFFIX) for name in wanted)


def checkpoint_files(prefix):
    """The files of a checkpoint (.index, .data-*, .json), which -o must never replace."""
    return glob.glob(glob.escape(prefix) + '.*')


def check_output(path, inputs):
    """-o, before the work: it replaces none of the files read, and no file but a picture of its kind."""
    kinds = OUTPUT_KINDS.get(os.path.splitext(path)[1].lower(), ('png',))
    check_output_file(path, '-o', kinds, inputs)


def write_png(path, picture):
    from skimage import io
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise DataError(f'{path}: no folder {folder}')
    try:
        io.imsave(path, picture, check_contrast=False)
    except (ValueError, TypeError) as e:        # e.g. an extension no image writer knows
        raise DataError(f'{path}: cannot write the picture ({e}); give a .png name') from None


def kernels(a):
    prefix, meta = checkpoints.find(a.train_dir, a.checkpoint)       # conv1 is enough: features/ too
    check_output(a.output, checkpoint_files(prefix))
    towers, averaged = read_conv1(prefix, meta)
    picture = kernel_grid(towers, scale=a.scale)
    write_png(a.output, picture)
    print(f'{a.output}: conv1 kernels of {prefix}{" (their --ema averages)" if averaged else ""}, '
          f'{picture.shape[1]}x{picture.shape[0]} pixels'
          + (' (BGR kernels shown in RGB)' if str(meta.get('channel_order', '')).upper() == 'BGR' else ''))
    for t, k in zip(alexnet.TOWERS, towers):
        print(f'tower {t}: colour share {colour_share(k).mean():.2f} ({k.shape[3]} kernels)')
    return 0


def split_of(ds, name):
    """The Split called name (train, val, test) of a dataset, or a DataError naming the splits it has."""
    split = getattr(ds, name)
    if split is None or not len(split):
        have = [n for n in SPLITS if getattr(ds, n) is not None and len(getattr(ds, n))]
        raise DataError(f'the {ds.name} data has no {name} split: choose one of {", ".join(have)}')
    return split


def run_dataset(meta, data_dir=None):
    """The run's dataset (the data its JSON names, or data_dir) and where it is, for the cache key."""
    where = data_dir or meta.get('data_dir')
    ds = settings.run_dataset(meta, where)
    return ds, f'{ds.name} data in {os.path.realpath(where) if where else "its default place"}'


def cache_folder(path):
    """--cache, checked before any work: a folder, or one that can be made."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise DataError(f'--cache {path} is a file: give a folder for the gallery\'s vectors')
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise DataError(f'--cache {path}: cannot make or write a folder under {parent}: give a folder you can write')
    return path


def gallery_and_queries(a, meta):
    """(gallery Split, where the gallery is (for the cache key), query Split), checked before any image is read."""
    ds = None
    if os.path.isdir(a.gallery):
        files = datasets.image_files(a.gallery, recursive=True)
        if not files:
            raise DataError(f'--gallery {a.gallery}: no images in it')
        gallery, source = datasets.Split(labels=np.zeros(len(files), np.int64), files=files), \
            f'folder {os.path.realpath(a.gallery)}'
    elif a.gallery not in SPLITS:
        raise DataError(f'--gallery {a.gallery}{" is a file" if os.path.exists(a.gallery) else ": no such folder"}: '
                        f'give a folder of images or a split of the run\'s data ({", ".join(SPLITS)})')
    else:
        ds, where = run_dataset(meta, a.data_dir)
        gallery, source = split_of(ds, a.gallery), f'{where}: {a.gallery}'
    if a.class_share and (a.images or ds is None):
        raise DataError('--class-share needs the classes of both: a gallery split (train, val, test) and '
                        'queries drawn from --queries, not image files or folders')
    for path in a.images:
        cli.input_file(path, what='an image file')
    if a.images:
        return gallery, source, datasets.Split(labels=np.full(len(a.images), -1, np.int64), files=list(a.images))
    return gallery, source, split_of(ds or run_dataset(meta, a.data_dir)[0], a.queries)


def picture(split, i):
    """uint8 RGB [h, w, 3] of a split's image i, for the figure."""
    return split.images[i] if split.images is not None else plots.thumbnail(split.files[i])


def query_vectors(prefix, meta, queries, a):
    """(the queries asked (a Split), their vectors, the rows of them read, which of them are shown): the image
    files, or --count (and --class-share's) drawn from the split. Computed before the gallery, so that
    queries none of which can be read stop the command before the gallery's work."""
    pick = np.random.default_rng(a.seed).permutation(len(queries))
    shown = pick[:a.count] if not a.images else np.arange(len(queries))
    asked = shown if not a.class_share else np.union1d(shown, pick[:a.class_share])
    chosen = datasets.Split(labels=queries.labels[asked], files=[queries.files[i] for i in asked] if queries.files
                            else None, images=queries.images[asked] if queries.images is not None else None)
    extractor = embedding.Extractor(prefix, meta, chosen)
    try:
        vectors, rows = extractor.run(show_progress=False)
    finally:
        extractor.close()
    if not np.isin(asked[rows], shown).any():
        raise DataError(f'none of the {len(shown)} query images could be read: give images AlexNet can decode')
    return chosen, vectors, rows, np.isin(asked, shown)


def neighbours(a):
    prefix, meta = checkpoints.for_use(a.train_dir, a.checkpoint)
    cache = cache_folder(a.cache) if a.cache else os.path.join(os.path.dirname(prefix), 'gallery_cache')
    gallery, source, queries = gallery_and_queries(a, meta)
    check_output(a.output, checkpoint_files(prefix) + (gallery.files or gallery.records or [])
                 + (queries.files or queries.records or []))
    chosen, q_vectors, q_rows, is_shown = query_vectors(prefix, meta, queries, a)
    vectors, rows = embedding.gallery_vectors(prefix, meta, gallery, source, cache)
    found, dist = embedding.nearest(q_vectors, vectors)
    figure_rows = [(picture(chosen, r), [(picture(gallery, rows[j]), d) for j, d in zip(f, ds)])
                   for r, f, ds in zip(q_rows, found, dist) if is_shown[r]]
    plots.neighbours_figure(figure_rows, a.output)
    print(f'{a.output}: the {embedding.NEIGHBOURS} nearest of {len(rows)} gallery images (fc7) for '
          f'{len(figure_rows)} queries, from {prefix}')
    if a.class_share:
        same = gallery.labels[rows[found]] == chosen.labels[q_rows][:, None]
        print(f'class share: {100 * same.mean():.1f}% of the {found.shape[1]} neighbours of {len(q_rows)} '
              f'{a.queries} images have the query\'s class')
    return 0


def parser():
    p = cli.Parser(description="Pictures of a trained AlexNet's weights.")
    sub = p.add_subparsers(dest='command', required=True)
    k = sub.add_parser('kernels', help="conv1's 96 kernels as the paper's Figure 3, and each tower's colour share")
    k.add_argument('--train-dir', help=f'run folder (default {checkpoints.DEFAULT_TRAIN_DIR}): its best/ '
                                       'checkpoint, else its latest')
    k.add_argument('--checkpoint', help='a checkpoint prefix (runs/alexnet/model.ckpt-1000) or folder')
    k.add_argument('-o', '--output', default='conv1.png', help='PNG to write (default conv1.png)')
    k.add_argument('--scale', type=cli.whole(1, MAX_SCALE), default=SCALE,
                   help=f'enlargement of each kernel (default {SCALE}, at most {MAX_SCALE})')
    n = sub.add_parser('neighbours', help='the paper\'s Figure 4 (right): the gallery images nearest each query in fc7')
    cli.add_checkpoint_flags(n)
    n.add_argument('images', nargs='*', metavar='QUERY', help='query image files (default: --count from --queries)')
    n.add_argument('--gallery', required=True, help='a folder of images, or a split of the run\'s dataset: train, '
                   'val or test')
    n.add_argument('--queries', default='test', choices=SPLITS,
                   help='the dataset split queries are drawn from (default test)')
    n.add_argument('--count', type=cli.whole(1), default=5, help='queries drawn (default 5, as in the paper)')
    n.add_argument('--class-share', type=cli.whole(0), default=0, metavar='N',
                   help='also print the share of neighbours with the query\'s class over N queries')
    n.add_argument('--seed', type=cli.whole(0), default=0, help='which queries are drawn (default 0)')
    n.add_argument('--data-dir', help='the dataset\'s folder, when it is not where the run found it')
    n.add_argument('--cache', help='folder of the gallery\'s cached vectors (default: gallery_cache beside the '
                   'checkpoint)')
    n.add_argument('-o', '--output', default='neighbours.png', help='PNG to write (default neighbours.png)')
    return p


def parse_args(argv):
    return parser().parse_args(argv)


def main(argv=None):
    cli.one_line_warnings()
    a = parse_args(argv)
    try:
        check_output_file(a.output, '-o')
        return kernels(a) if a.command == 'kernels' else neighbours(a)
    except DataError as e:
        print(f'error: {e}', file=sys.stderr)
    except OSError as e:
        print(f'error: {e.filename or a.output}: {e.strerror or e}', file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main())
