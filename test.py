"""Evaluate a trained AlexNet on the dataset it was trained on (Section 4.1's testing).

    python test.py                           # best checkpoint of runs/alexnet, 5 random crops
    python test.py --ten-crop                # the paper's 10 crops: 4 corners + centre, and reflections
    python test.py --center                  # one centre crop (Caffe's convention: 57.1% / 80.2%)
    python test.py --checkpoint runs/alexnet/model.ckpt-1000 --split val --json result.json

Each image's crops go through the network together and their softmax outputs are
averaged; top-1 and top-5 are counted over the test split (or the validation split
when the dataset has no test split, as ImageNet).
"""
import sys

import quiet  # noqa: F401  (first: keeps TensorFlow's start-up lines out of the output)
import tensorflow as tf

import alexnet
import checkpoints
import cli
import data
import evaluate
import parallel
import preprocessing
import settings
from errors import DataError
from files import check_output_file, write_json_atomic

BATCH_SIZE = 32           # images per step (each with all its crops)


def parser():
    p = cli.Parser(description='Evaluate a trained AlexNet checkpoint: top-1 and top-5.')
    cli.add_checkpoint_flags(p)
    p.add_argument('--dataset', choices=data.DATASET_CHOICES,
                   help='dataset to evaluate on (default: the one the checkpoint was trained on)')
    p.add_argument('-p', '--data-dir', help='its folder (default: the one used in training)')
    p.add_argument('--split', choices=('val', 'test'),
                   help='split to evaluate (default: test when the dataset has one, else val)')
    cli.add_crop_flags(p)
    cli.add_top_k_flag(p, 'k of the top-k rate')
    p.add_argument('-b', '--batch-size', type=cli.whole(1), default=BATCH_SIZE,
                   help=f'images per step, each with all its crops (default {BATCH_SIZE})')
    cli.add_devices_flag(p)
    p.add_argument('--precision', choices=parallel.PRECISIONS, default='fp32',
                   help='fp32 (default), bf16 (oneDNN CPUs) or fp16 (GPUs)')
    p.add_argument('--seed', type=cli.whole(0), default=0, help='seed of the random crops (default 0)')
    p.add_argument('--json', help='also write the results to this JSON file')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    return p


def parse_args(argv):
    return parser().parse_args(argv)


def load_split(a, meta):
    """The split to evaluate, from the checkpoint's dataset (or --dataset / --data-dir)."""
    name = a.dataset or meta['dataset']
    if name == 'synthetic':
        if not a.data_dir:
            raise DataError('the checkpoint was trained on synthetic images, which have no test set: '
                            'give --dataset and --data-dir to evaluate it on real ones')
        name = 'auto'
    ds = settings.run_dataset(meta, a.data_dir, name)
    if meta['dataset'] == 'synthetic':          # its class names are placeholders: only the count must match
        matches = ds.num_classes == meta['num_classes']
    else:
        matches = list(ds.class_names) == list(meta['class_names'])
    if not matches:
        raise DataError(f'the {ds.name} dataset has {ds.num_classes} classes that are not the '
                        f'{meta["num_classes"]} classes the checkpoint was trained on: give the matching '
                        '--dataset / --data-dir')
    which = a.split or ('test' if ds.test is not None else 'val')
    split = getattr(ds, which)
    if split is None or len(split) == 0:
        raise DataError(f'the {ds.name} dataset has no {which} split: choose --split '
                        f'{"val" if which == "test" else "test"}')
    return ds.name, which, split


def eval_data(split, meta, a):
    """(crops float32 [B, n, s, s, 3], labels [B]) batches of the split, as the checkpoint's training saw images."""
    mode, n, _ = cli.crop_mode(a)
    return preprocessing.eval_dataset(split, a.batch_size, meta['input_size'], meta['mean'], meta['resize_size'],
                                      mode=mode, num_random=n, seed=a.seed, **preprocessing.model_input(meta))


def evaluate_checkpoint(a):
    """Run the evaluation; returns the figures as a dict (what --json writes)."""
    prefix, meta = checkpoints.for_use(a.train_dir, a.checkpoint)
    if a.json:          # before the evaluation, not after it
        check_output_file(a.json, '--json', 'json', cli.checkpoint_files(prefix))
    mode, n, words = cli.crop_mode(a)
    devices = cli.devices(a.devices)
    name, which, split = load_split(a, meta)
    print(f'{prefix}: {name} {which} split, {len(split)} images, {words}, towers on {",".join(devices)}')
    with tf.Graph().as_default():
        with tf.device('/cpu:0'):
            data = eval_data(split, meta, a)
            crops, labels = tf.compat.v1.data.make_one_shot_iterator(data).get_next()
        probs = evaluate.crop_probabilities(crops, meta['num_classes'], devices, alexnet.lrn_of(meta))
        with tf.compat.v1.Session(config=parallel.session_config(a.precision, devices)) as sess:
            evaluate.restore_weights(sess, prefix)
            r = evaluate.run(sess, probs, labels, total=len(split), top_k=a.top_k,
                             show_progress=not a.no_progress, desc=f'{which} ({words})')
    return dict(top1=r['top1'], topk=r['topk'], k=r['k'], loss=r['loss'], images=r['count'],
                skipped=list(split.skipped), checkpoint=prefix, step=meta.get('step'), dataset=name,
                split=which, crops=mode, num_crops=n, crop_words=words, seed=a.seed)


def main(argv=None):
    cli.one_line_warnings()
    a = parse_args(argv)
    try:
        r = evaluate_checkpoint(a)
    except DataError as e:
        return cli.fail(e)
    if r['images'] == 0:
        return cli.fail(f'no readable images in the {r["dataset"]} {r["split"]} split')
    if a.json:
        write_json_atomic(a.json, r)
        print(f'results written to {a.json}')
    print(f'top-1 {100 * r["top1"]:.2f}% top-{r["k"]} {100 * r["topk"]:.2f}% '
          f'({r["images"]} images, {r["crop_words"]})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
