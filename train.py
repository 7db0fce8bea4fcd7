"""Train AlexNet with the paper's recipe (Section 5).

    python train.py -scratch --dataset demo          # a few minutes, offline
    python train.py -scratch --data-dir ILSVRC2012   # the paper's run
    python train.py -resume                          # continue exactly where it stopped

SGD, batch 128, momentum 0.9, weight decay 0.0005, learning rate 0.01 divided
by 10 when the validation error stops improving. Checkpoints, TensorBoard logs
and the best model go into the run folder (--train-dir, default runs/alexnet).
"""
import sys

import quiet  # noqa: F401  (first: keeps TensorFlow's start-up lines out of the output)
import budget
import checkpoints
import cli
import cluster
import data
import datasets
import servers
import settings
import trainer
from errors import DataError, Diverged


class Parser(cli.Parser):
    """A bad flag value gets one line; only a missing -scratch/-resume gets the usage too."""
    def error(self, message):
        if '-scratch' in message:
            self.print_usage(sys.stderr)
        super().error(message)


def parser():
    p = Parser(description='Train AlexNet (two towers) with the paper\'s recipe.', argument_default=None)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument('-scratch', action='store_true', help='start a new run')
    mode.add_argument('-resume', action='store_true', help='continue the run in --train-dir')
    p.add_argument('--overwrite', action='store_true', help='let -scratch delete an earlier run\'s checkpoints')
    p.add_argument('--preset', choices=tuple(settings.PRESETS), help=settings.presets_help())
    settings.add_flags(p)
    return p


def parse_args(argv):
    p = parser()
    args = p.parse_args(argv)
    vars(args).update(servers.from_tf_config(vars(args)))    # a cluster manager's task, when no cluster flag is given
    if not (args.scratch or args.resume) and args.job_name != 'ps':    # a parameter server needs neither
        p.error('one of the arguments -scratch -resume is required')
    return args


def settle_args(args):
    """The run's settings (settings.py): the defaults, the run's recorded ones on -resume, then those given;
    checked. Also the checkpoint resumed (its JSON), or None."""
    if args.preset and args.resume:
        raise DataError(f'--preset chooses a new run\'s settings; -resume continues with those the run recorded: '
                        f'leave --preset {args.preset} out')
    given = settings.with_preset(args.preset, settings.given(args))
    helper = args.job_name == 'worker' and (args.task_index or 0) > 0   # not the chief
    train_dir = given.get('train_dir', settings.DEFAULTS['train_dir'])
    found = checkpoints.latest(train_dir) if args.resume else None
    if args.resume and not found and not helper:    # a worker elsewhere has its flags; the chief restores
        raise DataError(checkpoints.only_best(train_dir) or f'nothing to resume in {train_dir}: start a run '
                        f'with -scratch (or point --train-dir at an earlier run)')
    unresumable = found and checkpoints.resume_problem(train_dir, *found)    # best/, features/, imports
    if unresumable:
        raise DataError(unresumable)
    meta, recorded = (found[1] if found else None), None
    if meta:
        wrong = settings.recorded_problem(meta['args'])
        if wrong:
            raise checkpoints.edited(found[0], f'its args\' {wrong}')
    settings.resolve_auto(given, meta and meta['args'])
    if meta:
        changed = settings.resume_problem(given, meta['args'])
        if changed:
            raise DataError(changed)
        recorded = dict(meta['args'], train_dir=train_dir)    # where the run is now, wherever it was made
    a = settings.settled(given, recorded)
    if args.scratch and a.model_path:
        unusable = checkpoints.model_path_problem(a.model_path)
        if unusable:
            raise DataError(unusable)
        vars(a).update(inherited_from(a.model_path))
    a.scratch, a.resume, a.overwrite = args.scratch, args.resume, args.overwrite
    a.explicit_lr = args.resume and 'lr' in given
    return settings.check(a), meta


INHERITED = ('lrn', 'lrn_across_towers', 'channel_order', 'resize_mode')   # what a network expects of its input, kept by fine-tuning


def inherited_from(model_path):
    """What a new run keeps of the checkpoint it starts from (--model_path): the LRN constants, channel
    order and resize mode its network was trained with, and its mean when it was imported (Caffe's)."""
    try:
        meta = checkpoints.find(checkpoint=model_path)[1]
    except DataError:
        return {}                  # a bare TensorFlow checkpoint: nothing recorded (warm_start checks it)
    kept = {key: meta[key] for key in INHERITED if meta.get(key) is not None}
    mean = meta.get('args', {}).get('mean') or (meta.get('mean') if meta.get('source') else None)
    if mean:
        kept['mean'] = list(mean)
    return kept


def check_same_classes(ds, meta):
    """-resume: the dataset must have the checkpoint's classes, in its order (a renamed class folder
    would silently permute the labels)."""
    if list(ds.class_names) != list(meta['class_names']):
        changed = [f'{i}: {old!r} -> {new!r}' for i, (old, new) in
                   enumerate(zip(meta['class_names'], ds.class_names)) if old != new][:3]
        raise DataError(f'the {ds.name} data has other classes than the run ({len(ds.class_names)} now, '
                        f'{len(meta["class_names"])} in the checkpoint'
                        f'{"; " + ", ".join(changed) if changed else ""}): give the run\'s data, or start '
                        f'a new run with -scratch')


def load_data(a, meta=None):
    """The run's Dataset (on -resume, checked against the checkpoint's classes, with its mean)."""
    if a.synthetic:
        names = [f'class_{i}' for i in range(a.num_classes)]
        return datasets.Dataset('synthetic', names, mean=(0.0, 0.0, 0.0))
    ds = data.load_dataset(a.dataset, a.data_dir, val_size=a.val_size, seed=a.seed, md5=a.md5)
    if meta:
        check_same_classes(ds, meta)
        ds.mean = tuple(meta['mean'])     # measured once, by the first run: a resumed run sees the same pixels
    elif a.mean:
        ds.mean = tuple(a.mean)           # the pretrained network's (--model_path), not this data's
    if ds.num_classes < 2:
        raise DataError(f'the {ds.name} data has {ds.num_classes} class ({", ".join(ds.class_names)}): a '
                        f'classifier needs at least 2 class folders')
    if ds.train is None or len(ds.train) < a.batch_size:
        raise DataError(f'the {ds.name} training set has {len(ds.train) if ds.train else 0} images, '
                        f'fewer than one batch of {a.batch_size}: lower --batch-size')
    a.dataset, a.num_classes = ds.name, ds.num_classes
    return ds


def train(a, meta):
    """Load the data, then train here (trainer.py) or as one task of a cluster (cluster.py)."""
    ds = load_data(a, meta)
    if a.job_name:
        return cluster.run_worker(a, meta, ds)
    return trainer.run(a, meta, ds)


def main(argv=None):
    started = budget.process_start() if argv is None else budget.now()    # what --time-budget counts from
    cli.one_line_warnings()
    try:
        args = parse_args(argv)
        if args.job_name == 'ps':
            return servers.serve(args)
        a, meta = settle_args(args)
        a.started = started
        return train(a, meta)
    except DataError as e:
        return cli.fail(e)
    except Diverged as e:
        return cli.fail(e, code=1)


if __name__ == '__main__':
    sys.exit(main())
