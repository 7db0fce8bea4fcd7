"""Checkpoints that carry what is needed to use them, are checked before use, and are never half-written.

Each checkpoint `DIR/model.ckpt-STEP` (TensorFlow's .index and .data files) has a
JSON file `DIR/model.ckpt-STEP.json` beside it: dataset, class names, input size,
mean values, step, epoch, learning rate, schedule state, best metric. A save writes
the JSON (atomically), then the weights, syncs both to disk, then TensorFlow's
`checkpoint` state file (so tf.train.latest_checkpoint(DIR) finds it), and only then
deletes the oldest. A checkpoint is used only when it checks out: its index reads,
every tensor's bytes are in its .data file, and its JSON parses and names its step.
A damaged one (a kill -9 or a power loss during a save, a full disk) is skipped with
a one-line warning, and the newest good one is used.

The run folder holds the latest few checkpoints, `best/` the best by validation
top-1, and `features/` the conv1..conv5 weights for fine-tuning. It is locked by
the trainer that uses it (prepare_run_folder); -scratch --overwrite deletes an
earlier run's files only once the new run is ready (delete_run). warm_start copies
another checkpoint's weights into a new run (--model_path); a run's own JSON is
run_record's, and -resume reads its checkpoint back with restore.
"""
import glob
import json
import math
import os
import re
import shutil
import sys

import tensorflow as tf

import alexnet
from errors import DataError
from files import FolderLock, fsync_folder, write_json_atomic
from preprocessing import RESIZE_MODES

PREFIX = 'model.ckpt'
BEST_DIR = 'best'
FEATURES_DIR = 'features'
STATE_FILE = 'checkpoint'            # TensorFlow's own list of a folder's checkpoints
DEFAULT_TRAIN_DIR = os.path.join('runs', 'alexnet')
CLASSIFIER_VARIABLE = 'fc8_a/biases'   # in every checkpoint of the whole network, not in features/
FEATURE_VARIABLE = 'conv1_a/weights'   # in both
SLOT_SUFFIX = '/Momentum'              # the optimizer's state: in a run's checkpoints, not in best/ or imports
AVERAGE_SUFFIX = '/ExponentialMovingAverage'   # --ema's average of a weight (recipe.py): used in its place
WEIGHTS_FILES = ('.caffemodel', '.npy')   # import_weights.py's inputs, not checkpoints
CAFFE_SOURCE = 'caffe '               # how an imported checkpoint's JSON "source" begins (import_weights.py)
MAX_LRN_RADIUS = 1024                 # an LRN window wider than any layer's maps (the paper's n = 5: radius 2)
STEP = re.compile(re.escape(PREFIX) + r'-(\d+)$')
OWN_FILE = re.compile(re.escape(PREFIX) + r'-\d+(\.|_temp)')   # a checkpoint's files, or a save's leftovers


def prefix_of(directory, step):
    """The prefix of a folder's checkpoint of `step`."""
    return os.path.join(directory, f'{PREFIX}-{step}')


def _step(prefix):
    return int(STEP.search(prefix).group(1))


def _complete(prefix):
    return (os.path.exists(prefix + '.index') and os.path.exists(prefix + '.json')
            and glob.glob(prefix + '.data-*'))


def problem(prefix):
    """Why the checkpoint at prefix cannot be used (one phrase), or None when it checks out."""
    if not _complete(prefix):
        return 'its .index, .data or .json file is missing'
    try:
        meta = read_meta(prefix)
    except (OSError, ValueError) as e:
        return f'its JSON does not parse ({e.__class__.__name__})'
    if not isinstance(meta, dict) or meta.get('step') != _step(prefix):
        return 'its JSON is not the one of this step'
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    except (tf.errors.OpError, ValueError) as e:
        return f'its index does not read ({e.__class__.__name__})'
    expected = sum(math.prod(shapes[name]) * dtypes[name].size for name in shapes if dtypes[name] != tf.string)
    found = sum(os.path.getsize(p) for p in glob.glob(prefix + '.data-*'))
    if found < expected:
        return f'its .data holds {found} of the {expected} bytes its index names (truncated)'
    return None


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _whole(v):
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _numbers(n):
    return lambda v: isinstance(v, list) and len(v) == n and all(map(_number, v))


def _lrn_constants(v):
    """The LRN's (depth radius, bias, alpha, beta) as TensorFlow takes them (alexnet.LRN)."""
    return (_numbers(4)(v) and float(v[0]).is_integer() and 0 <= v[0] <= MAX_LRN_RADIUS and v[1] > 0
            and v[2] >= 0 and v[3] >= 0)


# What the scripts read of a checkpoint's JSON: key -> (check, what it must be, required).
META_SCHEMA = {
    'dataset': (lambda v: isinstance(v, str), 'a dataset name', True),
    'class_names': (lambda v: isinstance(v, list) and v and all(isinstance(c, str) for c in v),
                    'a list of class names', True),
    'num_classes': (_whole, 'a whole number', True),
    'input_size': (_whole, 'a whole number', True),
    'resize_size': (_whole, 'a whole number', True),
    'mean': (_numbers(3), '3 numbers (R, G, B)', True),
    'args': (lambda v: isinstance(v, dict), 'the run\'s settings', False),
    'schedule': (lambda v: isinstance(v, dict) and _number(v.get('rate')) and v.get('rate') >= 0 and
                 (v.get('best') is None or _number(v['best'])) and
                 all(isinstance(v.get(k), int) and v[k] >= 0 for k in ('bad_epochs', 'drops')),
                 'the learning-rate schedule\'s state (rate, best, bad_epochs, drops)', False),
    'best': (lambda v: v is None or isinstance(v, dict) and _number(v.get('top1')) and isinstance(v.get('step'), int),
             'null or the best validation figures', False),
    'plan': (lambda v: v is None or isinstance(v, dict) and _whole(v.get('total_steps')) and
             _number(v.get('budget_seconds')), 'null or the --time-budget plan', False),
    'seconds_used': (_number, 'a number of seconds', False),
    'lrn': (lambda v: v is None or _lrn_constants(v),
            'null or 4 numbers (depth radius: a whole number from 0, bias above 0, alpha and beta from 0)', False),
    'lrn_across_towers': (lambda v: isinstance(v, bool), 'true or false', False),
    'channel_order': (lambda v: v in ('RGB', 'BGR'), '"RGB" or "BGR"', False),
    'resize_mode': (lambda v: v in RESIZE_MODES, ' or '.join(f'"{m}"' for m in RESIZE_MODES), False),
}


def meta_problem(meta):
    """What is wrong with a checkpoint's JSON (one phrase: a hand edit, usually), or None."""
    for key, (ok, what, required) in META_SCHEMA.items():
        if key not in meta:
            if required:
                return f'it has no "{key}"'
        elif not ok(meta[key]):
            return f'its "{key}" is {json.dumps(meta[key])[:60]}, not {what}'
    if len(meta['class_names']) != meta['num_classes']:
        return f'it names {len(meta["class_names"])} classes but "num_classes" is {meta["num_classes"]}'
    if meta['resize_size'] < meta['input_size']:
        return f'its "resize_size" {meta["resize_size"]} is smaller than its "input_size" {meta["input_size"]}'
    return None


def edited(prefix, why):
    """The one-line DataError for a checkpoint's JSON that is wrong in a way only a hand edit makes."""
    return DataError(f'{prefix}.json: {why} (was it edited by hand?): fix it, or move that checkpoint\'s '
                     f'files away to use an earlier one')


def _checked_meta(prefix):
    """The JSON of a checkpoint that checks out, or a one-line DataError saying what to fix in it."""
    meta = read_meta(prefix)
    why = meta_problem(meta)
    if why:
        raise edited(prefix, why)
    return _with_caffe_lrn(prefix, meta)


def _with_caffe_lrn(prefix, meta):
    """Caffe's weights imported before "lrn_across_towers" was recorded: their LRN is Caffe's, across both
    towers, so it is taken as that, with a word on how to record it."""
    if 'lrn_across_towers' in meta or not str(meta.get('source', '')).startswith(CAFFE_SOURCE):
        return meta
    _warn(f'{prefix}.json was imported before "lrn_across_towers" was recorded: its LRN is taken as Caffe\'s, '
          f'across both towers; import the weights file again (python import_weights.py FILE --train-dir '
          f'{os.path.dirname(prefix) or "."} --overwrite) to record it')
    return dict(meta, lrn_across_towers=True)


def _warn(message):
    print(f'warning: {message}', file=sys.stderr, flush=True)


def list_checkpoints(directory):
    """Checkpoints of a folder whose files are all there, newest first (not yet checked: see latest)."""
    prefixes = [p[:-len('.index')] for p in glob.glob(os.path.join(glob.escape(directory), PREFIX + '-*.index'))]
    prefixes = [p for p in prefixes if STEP.search(p)]          # model.ckpt-final.index is not ours
    return sorted((p for p in prefixes if _complete(p)), key=_step, reverse=True)


def latest(directory, warn=True):
    """(prefix, meta) of the newest checkpoint in `directory` that checks out, or None. Damaged newer
    ones are skipped, each with a one-line warning."""
    for prefix in list_checkpoints(directory):
        why = problem(prefix)
        if why is None:
            return prefix, _checked_meta(prefix)
        if warn:
            _warn(f'skipped the damaged checkpoint {prefix}: {why}')
    return None


def read_meta(prefix):
    with open(prefix + '.json') as f:
        return json.load(f)


def has_checkpoints(train_dir):
    return bool(list_checkpoints(train_dir) or list_checkpoints(os.path.join(train_dir, BEST_DIR)))


def only_best(train_dir):
    """A run killed after its first best/ and before its first latest checkpoint: the words for the way on
    (its best/ holds weights only, so -resume cannot continue it), or None."""
    best = latest(os.path.join(train_dir, BEST_DIR), warn=False)
    if list_checkpoints(train_dir) or not best:
        return None
    return (f'{train_dir} holds only {best[0]} (the run stopped before its first checkpoint, at step '
            f'{best[1]["step"]}): start it again with -scratch --overwrite, or start a new run from those weights '
            f'with -scratch --model_path {os.path.join(train_dir, BEST_DIR)} --train-dir NEW_FOLDER')


def check_train_dir(train_dir):
    """A one-line DataError when --train-dir names a file."""
    if os.path.exists(train_dir) and not os.path.isdir(train_dir):
        raise DataError(f'--train-dir {train_dir} is a file: give a folder for the run')


def prepare_run_folder(a):
    """The run folder (a.train_dir), made and locked (one trainer at a time). -scratch refuses one with
    checkpoints unless --overwrite (a.overwrite): that run's files are deleted later, once the new run is
    ready (delete_run)."""
    check_train_dir(a.train_dir)
    if a.scratch and has_checkpoints(a.train_dir) and not a.overwrite:
        raise DataError(only_best(a.train_dir) or f'{a.train_dir} already holds checkpoints: continue it with '
                        f'-resume, choose another --train-dir, or add --overwrite to delete them')
    os.makedirs(a.train_dir, exist_ok=True)
    return FolderLock(a.train_dir)


def _clean_leftovers(directory):
    """What an interrupted save leaves: TensorFlow's *_temp folders, half-written JSON, files of a step
    without its index."""
    for path in glob.glob(os.path.join(glob.escape(directory), PREFIX + '-*_temp*')):
        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
    for path in glob.glob(os.path.join(glob.escape(directory), PREFIX + '-*.json.tmp-*')):
        os.remove(path)


def _remove(prefix):
    for path in glob.glob(glob.escape(prefix) + '.*'):
        os.remove(path)
    shutil.rmtree(prefix + '_temp', ignore_errors=True)


def _fsync(path):
    with open(path, 'rb') as f:
        os.fsync(f.fileno())


def write_state(directory, leaving=()):
    """TensorFlow's `checkpoint` file naming this folder's good checkpoints but `leaving` (about to be
    deleted), newest last, as relative paths (a moved run folder still works); written atomically."""
    good = [p for p in list_checkpoints(directory) if p not in leaving and problem(p) is None]
    if good:
        names = [os.path.basename(p) for p in reversed(good)]
        tf.compat.v1.train.update_checkpoint_state(directory, names[-1], all_model_checkpoint_paths=names)


def save(sess, saver, directory, step, meta, keep=3):
    """Write meta then weights for `step`, sync them, name them in the state file, then keep the newest
    `keep` checkpoints. A failed save (a full disk) removes its own files and raises a DataError: the
    earlier checkpoints stay as they were."""
    os.makedirs(directory, exist_ok=True)
    prefix = prefix_of(directory, step)
    if problem(prefix) is None:      # e.g. a stop right at an epoch end: never rewrite the only copy of a step
        return prefix
    _clean_leftovers(directory)
    _remove(prefix)
    try:
        write_json_atomic(prefix + '.json', dict(meta, step=int(step)))
        saver.save(sess, os.path.join(directory, PREFIX), global_step=step, write_meta_graph=False,
                   write_state=False)
        for path in glob.glob(glob.escape(prefix) + '.*'):
            _fsync(path)
        fsync_folder(directory)
    except (OSError, tf.errors.OpError) as e:
        _remove(prefix)
        reason = e.strerror if isinstance(e, OSError) and e.strerror else (getattr(e, 'message', '') or str(e))
        kept = latest(directory, warn=False)
        raise DataError(f'could not save the checkpoint {prefix}: {reason.splitlines()[0]}; free some disk space '
                        f'and continue with -resume from '
                        f'{kept[0] if kept else "the start (no checkpoint was kept)"}') from None
    old = list_checkpoints(directory)[keep:]
    write_state(directory, leaving=old)        # never names a checkpoint about to go
    for prefix_old in old:
        _remove(prefix_old)
    return prefix


def run_files(train_dir):
    """The files and folders of this project's run in train_dir (what -scratch --overwrite deletes):
    checkpoints, their JSON, the state file, TensorBoard's event files, best/ and features/."""
    own = []
    for folder in (train_dir, os.path.join(train_dir, BEST_DIR), os.path.join(train_dir, FEATURES_DIR)):
        own += [p for p in glob.glob(os.path.join(glob.escape(folder), PREFIX + '-*'))
                if OWN_FILE.match(os.path.basename(p))]
        if os.path.isfile(os.path.join(folder, STATE_FILE)):
            own.append(os.path.join(folder, STATE_FILE))
    own += glob.glob(os.path.join(glob.escape(train_dir), 'events.out.tfevents.*'))
    return own


def delete_run(train_dir):
    """Delete this project's run files in train_dir (run_files), and best/ and features/ when that empties
    them; nothing else of the folder is touched."""
    for path in run_files(train_dir):
        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
    for sub in (BEST_DIR, FEATURES_DIR):
        folder = os.path.join(train_dir, sub)
        if os.path.isdir(folder) and not os.listdir(folder):
            os.rmdir(folder)


def repair_best(train_dir, meta):
    """Make best/ hold the checkpoint the run's JSON calls its best, when an interrupted epoch end left
    it behind (the latest saved, best/ not yet): copied from the run folder when that step is there."""
    best = meta.get('best') if meta else None
    if not best:
        return
    folder = os.path.join(train_dir, BEST_DIR)
    have = latest(folder, warn=False)
    if have and have[1]['step'] >= best['step']:
        return
    source = prefix_of(train_dir, best['step'])
    if problem(source) is not None:
        _warn(f'{folder} is behind the run (its best was step {best["step"]}, no longer kept): it updates '
              'at the next improvement')
        return
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, os.path.basename(source))
    for path in glob.glob(glob.escape(source) + '.*'):
        if not path.endswith('.json'):
            shutil.copyfile(path, target + path[len(source):] + '.tmp')
            os.replace(target + path[len(source):] + '.tmp', target + path[len(source):])
    write_json_atomic(target + '.json', dict(read_meta(source), best=best))
    for old in list_checkpoints(folder)[1:]:
        _remove(old)
    write_state(folder)
    _warn(f'{folder} was behind the run: restored its best checkpoint, step {best["step"]}')


def variable_names(prefix):
    return {name for name, _ in tf.train.list_variables(prefix)}


def run_record(a, recorded, ds, step, steps_per_epoch, schedule, best, budget):
    """A training run's checkpoint JSON (save adds the step): the settings a names in `recorded`
    (settings.DEFAULTS), its data ds, where it is, the schedule (schedule.py), the best validation figures,
    and budget.py's plan and time used."""
    return dict(args={k: getattr(a, k) for k in recorded}, dataset=ds.name, data_dir=a.data_dir,
                class_names=list(ds.class_names), class_ids=ds.class_ids, num_classes=a.num_classes,
                input_size=a.input_size, resize_size=a.resize_size, mean=[float(m) for m in ds.mean],
                epoch=step / steps_per_epoch, steps_per_epoch=steps_per_epoch,
                learning_rate=schedule.rate, schedule=schedule.state(), best=best,
                precision=a.precision, devices=a.devices, **alexnet.lrn_record(alexnet.lrn_of(vars(a))),
                channel_order=a.channel_order, resize_mode=a.resize_mode, plan=budget.plan,
                seconds_used=round(budget.used(), 1))


def restore(sess, prefix, saver, averages, train_dir):
    """Every variable of the graph from the run's checkpoint at prefix (saver: of them all). A layer that
    -resume now trains and the run did not (a longer --train-layers) has no training state there: its
    momentum starts at zero, and its --ema averages ({weight's name: its average}) at its weights, as a new
    run's do. A one-line DataError for any other variable the checkpoint lacks."""
    have = variable_names(prefix)
    missing = [v for v in tf.compat.v1.global_variables() if v.op.name not in have]
    slots = [v for v in missing if v.op.name.endswith(SLOT_SUFFIX)]
    averaged = {name: average for name, average in averages.items()    # untrained by the run
                if average.op.name not in have and name + SLOT_SUFFIX not in have}
    new_state = {v.op.name for v in slots + list(averaged.values())}
    lacking = [v.op.name for v in missing if v.op.name not in new_state]
    if lacking:
        raise DataError(f'{prefix} lacks {", ".join(lacking[:3])}: it was not written by this run\'s '
                        f'settings; start a new run with -scratch --model_path {train_dir}')
    if not missing:
        return saver.restore(sess, prefix)
    tf.compat.v1.train.Saver([v for v in tf.compat.v1.global_variables() if v.op.name in have]).restore(sess, prefix)
    weights = {v.op.name: v for v in tf.compat.v1.trainable_variables()}
    sess.run([tf.compat.v1.variables_initializer(slots)] +
             [tf.compat.v1.assign(average, weights[name]) for name, average in averaged.items()])
    print(f'momentum of the layers now trained starts at zero: {", ".join(v.op.name for v in slots)}' +
          (f'; their --ema averages start at their weights: {", ".join(v.op.name for v in averaged.values())}'
           if averaged else ''))


def whole_model(found):
    """found ((prefix, meta)), when its checkpoint holds the whole network; a one-line DataError for a
    features/ checkpoint, which holds only the convolutional layers."""
    names = variable_names(found[0])
    if FEATURE_VARIABLE in names and CLASSIFIER_VARIABLE not in names:
        raise DataError(f'{found[0]} holds only the convolutional layers (a run\'s {FEATURES_DIR}/ folder, '
                        f'for fine-tuning with --model_path): give the run folder or its {BEST_DIR}/ instead')
    return found


def resume_problem(train_dir, prefix, meta):
    """Why -resume cannot continue from this checkpoint, or None: it must hold the optimizer's state, which
    best/, features/ and imported weights do not, and its JSON the run's settings and schedule (which
    META_SCHEMA leaves optional: imports have none)."""
    if any(name.endswith(SLOT_SUFFIX) for name in variable_names(prefix)):
        if isinstance(meta.get('args'), dict) and isinstance(meta.get('schedule'), dict):
            return None
        return (f'{prefix}.json lacks the run\'s settings ("args", "schedule"): it was not written by train.py, '
                f'or was edited; restore it, or start a new run with -scratch')
    new_run = f'start a new run from these weights: python train.py -scratch --model_path {train_dir} ' \
              f'--train-dir NEW_FOLDER'
    folder = os.path.normpath(train_dir)
    if os.path.basename(folder) in (BEST_DIR, FEATURES_DIR):
        return (f'{train_dir} is a run\'s {os.path.basename(folder)}/ folder (weights, no optimizer state): resume '
                f'the run folder itself (python train.py -resume --train-dir {os.path.dirname(folder) or "."}), '
                f'or {new_run}')
    return f'{prefix} holds weights without the optimizer\'s state (imported weights): {new_run}'


def for_use(train_dir=None, checkpoint=None):
    """The checkpoint test.py, classify.py and export.py use: --checkpoint, else the
    run's best, else its latest. A one-line DataError when there is none."""
    return whole_model(find(train_dir, checkpoint))


def find(train_dir=None, checkpoint=None):
    """(prefix, meta) of --checkpoint (a prefix or a folder), else of the run's best, else its latest."""
    if checkpoint:
        prefix = checkpoint[:-len('.index')] if checkpoint.endswith('.index') else checkpoint
        if os.path.isdir(prefix):
            found, why = latest(prefix), 'no checkpoint in that folder checks out'
            if found:
                return found
        else:
            why = problem(prefix) if STEP.search(prefix) else 'it is not a model.ckpt-STEP prefix'
            if why is None:
                return prefix, _checked_meta(prefix)
        raise DataError(f'no usable checkpoint at {checkpoint}: {why}; give a folder of checkpoints or '
                        f'a prefix such as runs/alexnet/model.ckpt-1000 (with its .index and .json)')
    train_dir = train_dir or DEFAULT_TRAIN_DIR
    found = latest(os.path.join(train_dir, BEST_DIR)) or latest(train_dir)
    if not found:
        raise DataError(f'no checkpoint in {train_dir}: train first, e.g. '
                        f'`python train.py -scratch --dataset demo --train-dir {train_dir}`')
    return found


def saved_weights(prefix, variables):
    """{name in the checkpoint: variable} to restore the model's weights: a weight's --ema average where
    the checkpoint has one (a run's latest checkpoints; best/ holds the averages under the weights' names)."""
    have = variable_names(prefix)
    return {(v.op.name + AVERAGE_SUFFIX if v.op.name + AVERAGE_SUFFIX in have else v.op.name): v for v in variables}


def weights_file_problem(model_path):
    """A one-line reason when --model_path names Caffe's weights file where a checkpoint is expected, or None."""
    if model_path.endswith(WEIGHTS_FILES) and os.path.isfile(model_path):
        return (f'--model_path {model_path} is Caffe\'s weights file, not a checkpoint: import it first, '
                f'python import_weights.py {model_path} --train-dir runs/bvlc_alexnet, then give '
                f'--model_path runs/bvlc_alexnet')
    return None


def model_path_problem(model_path):
    """A one-line reason when --model_path names nothing to start from (checked before any graph is built), or
    None: a checkpoint of this project (a prefix or a run folder), or a bare TensorFlow one."""
    weights = weights_file_problem(model_path)
    if weights:
        return weights
    try:
        find(checkpoint=model_path)
        return None
    except DataError:
        pass
    prefix = model_path[:-len('.index')] if model_path.endswith('.index') else model_path
    if os.path.isdir(model_path):
        prefix = tf.train.latest_checkpoint(model_path) or os.path.join(model_path, PREFIX)
    index = prefix + '.index'
    if os.path.isfile(index) and os.path.getsize(index) > 0:
        return None                  # a bare TensorFlow checkpoint: warm_start reads what it has
    return (f'--model_path {model_path}: no checkpoint there: give a run folder (e.g. runs/bvlc_alexnet) or a '
            f'checkpoint prefix such as runs/alexnet/model.ckpt-1000')


def warm_start(sess, model_path, class_names=None, train_layers=None):
    """Copy every model weight of matching name and shape from another checkpoint; fc8 only when the
    checkpoint has the same classes (class_names). A one-line DataError when a layer left at its random
    start would not be trained (--train-layers, train_layers: the layer names)."""
    try:
        found, meta = find(checkpoint=model_path)
    except DataError:
        found, meta = model_path, {}
    try:
        available = dict(tf.train.list_variables(found))
    except (tf.errors.OpError, ValueError):
        raise DataError(weights_file_problem(model_path) or f'--model_path {model_path}: no checkpoint there') \
            from None
    same_classes = class_names is None or meta.get('class_names') in (None, list(class_names))
    model_vars = tf.compat.v1.trainable_variables()
    wanted = saved_weights(found, model_vars)
    take = {name: v for name, v in wanted.items() if available.get(name) == v.shape.as_list() and
            (same_classes or not v.op.name.startswith('fc8'))}
    taken = {v.op.name for v in take.values()}
    skipped = sorted(v.op.name for v in model_vars if v.op.name not in taken)
    untrained = sorted({n.split('_')[0] for n in skipped} - set(train_layers)) if train_layers else []
    if untrained:
        raise DataError(f'--train-layers leaves {", ".join(untrained)} at its random start ({model_path} has no '
                        f'weights for it{"" if same_classes else ": other classes"}): add it to --train-layers')
    tf.compat.v1.train.Saver(take).restore(sess, found)
    print(f'weights from {found}: {len(take)} tensors' + (f', kept fresh: {", ".join(skipped)}' if skipped else ''))
