"""A word when training does not learn: once, early in a run, when the training loss still sits at ln C
(the loss of a uniform guess over C classes) and top-1 at chance, one warning says so and what to try.

    if learning.due(first_step, step, steps_per_epoch, warmup_steps) and learning.stuck(loss, top1, classes):
        warnings.warn(learning.advice(loss, top1, classes, step, lr, ...), learning.NotLearning)

epochs.end asks at the epoch end that reaches the due step, on the chief, with the mean loss and top-1
of the epoch's last steps; --synthetic runs (random labels by design) are never checked.
"""
import math
import shlex

import recipe

# Enough steps that a run which learns has left ln C. The demo's recipe (28 steps an epoch, one-cycle with 3
# epochs of warm-up) is still at 0.99 ln 10 and top-1 14% after 2 epochs (56 steps), 0.93 ln 10 and 19% after
# 3, 0.90 and 21% after 4 (112 steps: where it is checked); the tests' tree leaves ln 4 in its first 8
# steps with --init he. The check is at the first epoch end at or after this step (and after a one-cycle
# warm-up, whose rate is not yet --lr), not earlier in a long epoch: the paper's initialisation sits on a
# plateau for its first few hundred ImageNet steps and then learns; one epoch of ImageNet is far past that,
# and CIFAR-10's recipe is at about 50% validation top-1 after its first (docs/experiments.md).
MIN_STEPS = 100
# "Within a hair of ln C": a run that learns is well below it by then; a run at chance stays within the
# batches' noise of it, or above it after too high a rate.
LOSS_HAIR = 0.02
# "At chance": top-1 below 1.5 x 1/C. A run that learns is above it; the top-1 of the last steps of a run at
# chance is noisy, but a few hundred images put 1.5 x chance several standard deviations above chance.
CHANCE_FACTOR = 1.5
# A rate this far below the paper's 0.01 barely moves the weights in the steps before the check: the
# advice is a higher one, whatever the loss (the paper's initialisation starts above ln C).
SMALL_RATE = recipe.LEARNING_RATE / 10


class NotLearning(UserWarning):
    """The training loss is still at ln C and top-1 at chance."""


def due(first_step, step, steps_per_epoch, warmup_steps=0):
    """True at the one epoch end that is checked: the one that reaches the first epoch boundary at or after
    MIN_STEPS and the warm-up's end (its epoch started at first_step, it ends at step). Once a run, across
    -resume too."""
    boundary = steps_per_epoch * math.ceil(max(MIN_STEPS, warmup_steps) / steps_per_epoch)
    return first_step < boundary <= step


def stuck(loss, top1, num_classes):
    """True when the loss is not below ln C by more than a hair and top-1 is at chance."""
    return loss >= (1 - LOSS_HAIR) * math.log(num_classes) and top1 < CHANCE_FACTOR / num_classes


def advice(loss, top1, num_classes, step, lr, init='he', dataset=None, data_dir=None):
    """The warning's one line: what was seen and what to try, for a run with --lr lr, --init init (None: a
    warm start, whose init does not matter) on `dataset` ('cifar10', 'imagenet', 'folder', 'demo')."""
    uniform = math.log(num_classes)
    seen = (f'training is not learning: after {step} steps the loss is {loss:.3f} (ln {num_classes} = '
            f'{uniform:.3f}, a uniform guess) and training top-1 {100 * top1:.1f}% (chance '
            f'{100 / num_classes:.1f}%)')
    tries = [rate_advice(loss, num_classes, lr)]
    if init == 'paper':
        tries.append('--init he (the paper\'s N(0, 0.01) initialisation can sit at chance for many epochs on '
                     'small data: docs/departures.md)')
    labels = label_check(dataset, data_dir)
    if labels:
        tries.append(labels)
    return f'{seen}. Try: ' + '; '.join(tries) + ' (docs/training.md: when training does not learn)'


def rate_advice(loss, num_classes, lr):
    """Which way to move --lr: up when it is small (SMALL_RATE); down when the loss rose above ln C, or is
    flat at a larger rate (too high a rate leaves dead ReLUs and a flat loss)."""
    if lr < SMALL_RATE:
        return f'a 10x higher --lr ({lr * 10:g}; at {lr:g} the weights barely move)'
    if loss > (1 + LOSS_HAIR) * math.log(num_classes):
        return f'a 10x lower --lr ({lr / 10:g}; the loss is above ln {num_classes})'
    return f'a 10x lower --lr ({lr / 10:g}; too high a rate can leave dead ReLUs and a flat loss)'


def label_check(dataset, data_dir):
    """The words on checking the labels with the dataset's own tool, or None (the demo's are the repo's)."""
    where = shlex.quote(data_dir) if data_dir else None
    if dataset == 'cifar10':
        return (f'check the labels: `python cifar10_utils.py{" --data-dir " + where if where else ""}` prints '
                f'the images of each class in each split')
    if dataset == 'imagenet':
        return (f'check the data: `python imagenet_utils.py --data-dir {where or "ILSVRC2012"} --verify` prints '
                f'its layout, classes and split sizes and lists unreadable images')
    if dataset == 'folder':
        return (f'check the labels: each folder of {where or "DIR"}/train/ is one class and should hold only '
                f'that class\'s images (`ls {where or "DIR"}/train/*/ | head`)')
    return None
