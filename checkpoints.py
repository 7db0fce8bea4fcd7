"""Checkpoints that carry what is needed to use them, and are never half-written.

Each checkpoint `DIR/model.ckpt-STEP` (TensorFlow's .index and .data files) has a
JSON file `DIR/model.ckpt-STEP.json` beside it: dataset, class names, input
size, mean values, step, epoch, learning rate, schedule state, best metric. The
JSON is written first (atomically), the weights second; a checkpoint counts
only when both are complete, so a crash at any moment, even `kill -9` during a
save, leaves the previous one usable.

The run folder holds the latest few checkpoints, `best/` the best by
validation top-1, and `features/` the conv1..conv5 weights for fine-tuning.
"""
import glob
import json
import os
import re

from datasets import DataError

PREFIX = 'model.ckpt'
BEST_DIR = 'best'
FEATURES_DIR = 'features'
DEFAULT_TRAIN_DIR = os.path.join('runs', 'alexnet')


def write_json_atomic(path, obj):
    tmp = f'{path}.tmp-{os.getpid()}'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _step(prefix):
    return int(re.search(r'-(\d+)$', prefix).group(1))


def _complete(prefix):
    return (os.path.exists(prefix + '.index') and os.path.exists(prefix + '.json')
            and glob.glob(prefix + '.data-*'))


def list_checkpoints(directory):
    """Complete checkpoints in a folder, newest first."""
    prefixes = [p[:-len('.index')] for p in glob.glob(os.path.join(directory, PREFIX + '-*.index'))]
    return sorted((p for p in prefixes if _complete(p)), key=_step, reverse=True)


def save(sess, saver, directory, step, meta, keep=3):
    """Write meta then weights for `step`; keep the newest `keep` checkpoints."""
    os.makedirs(directory, exist_ok=True)
    prefix = os.path.join(directory, f'{PREFIX}-{step}')
    if _complete(prefix):      # e.g. a stop right at an epoch end: never rewrite the only copy of a step
        return prefix
    write_json_atomic(prefix + '.json', dict(meta, step=int(step)))
    saver.save(sess, os.path.join(directory, PREFIX), global_step=step, write_meta_graph=False,
               write_state=False)
    for old in list_checkpoints(directory)[keep:]:
        for path in glob.glob(old + '.*'):
            os.remove(path)
    return prefix


def read_meta(prefix):
    with open(prefix + '.json') as f:
        return json.load(f)


def latest(directory):
    """(prefix, meta) of the newest complete checkpoint in `directory`, or None."""
    found = list_checkpoints(directory)
    return (found[0], read_meta(found[0])) if found else None


def has_checkpoints(train_dir):
    return bool(list_checkpoints(train_dir) or list_checkpoints(os.path.join(train_dir, BEST_DIR)))


def for_use(train_dir=None, checkpoint=None):
    """The checkpoint test.py, classify.py and export.py use: --checkpoint, else the
    run's best, else its latest. A one-line DataError when there is none."""
    if checkpoint:
        prefix = checkpoint[:-len('.index')] if checkpoint.endswith('.index') else checkpoint
        if os.path.isdir(prefix):
            found = latest(prefix)
            if found:
                return found
        elif _complete(prefix):
            return prefix, read_meta(prefix)
        raise DataError(f'no usable checkpoint at {checkpoint}: give a folder of checkpoints or '
                        f'a prefix such as runs/alexnet/model.ckpt-1000 (with its .index and .json)')
    train_dir = train_dir or DEFAULT_TRAIN_DIR
    found = latest(os.path.join(train_dir, BEST_DIR)) or latest(train_dir)
    if not found:
        raise DataError(f'no checkpoint in {train_dir}: train first, e.g. '
                        f'`python train.py -scratch --dataset demo --train-dir {train_dir}`')
    return found
