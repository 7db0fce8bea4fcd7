"""The learning rate: divided by 10 when validation stalls (the paper), at fixed epochs, or
one-cycle (a linear warm-up to --lr, then a linear decay to zero at the last step).

Its state (rate, best validation top-1, epochs without improvement, drops so
far) goes into every checkpoint, so a resumed run keeps counting. The one-cycle
rate is a pure function of the step, so it resumes exactly too.
"""
from errors import DataError

LR_DROP_FACTOR = 10.0   # "divide the learning rate by 10 when the validation error rate stopped improving" (Section 5)


class LearningRate:
    """kind: 'plateau' (the paper: / 10 after `patience` epochs without a validation top-1 gain of
    `min_improvement`, at most `max_drops` times), 'step' (/ 10 at each epoch of `lr_steps`, '30,60,80')
    or 'onecycle' (per step: up over `warmup_epochs`, down to 0 at `epochs`). state: a checkpoint's."""

    def __init__(self, kind='plateau', base=0.01, epochs=90, patience=2, min_improvement=0.001, max_drops=3,
                 warmup_epochs=0.0, lr_steps='', state=None):
        self.kind, self.base, self.epochs = kind, base, epochs
        self.patience, self.min_improvement, self.max_drops = patience, min_improvement, max_drops
        self.warmup_epochs = warmup_epochs or 0
        try:
            self.steps = sorted(int(s) for s in str(lr_steps).split(',') if s.strip())
        except ValueError:
            raise DataError(f'--lr-steps wants epochs separated by commas, e.g. 30,60,80; got {lr_steps}') from None
        if self.kind == 'step' and not self.steps:
            raise DataError('--lr-schedule step needs --lr-steps, e.g. --lr-steps 30,60,80')
        if self.kind == 'onecycle' and not 0 <= self.warmup_epochs < self.epochs:
            raise DataError(f'--warmup-epochs must be at least 0 and fewer than --epochs ({self.epochs}), '
                            f'got {self.warmup_epochs} (--dataset demo and the presets set one): give a smaller '
                            f'--warmup-epochs, or more --epochs')
        self.rate, self.best, self.bad_epochs, self.drops = base, None, 0, 0
        self.total_steps = None          # set by a --time-budget plan (budget.py)
        if state:
            self.rate, self.best = state['rate'], state['best']
            self.bad_epochs, self.drops = state['bad_epochs'], state['drops']

    @classmethod
    def of(cls, a, state=None):
        """The schedule of a run's settings (settings.py) and a checkpoint's schedule state."""
        return cls(kind=a.lr_schedule, base=a.lr, epochs=a.epochs, patience=a.patience,
                   min_improvement=a.min_improvement, max_drops=a.max_drops, warmup_epochs=a.warmup_epochs,
                   lr_steps=a.lr_steps, state=state)

    @property
    def per_step(self):
        """True when the rate changes every step (one-cycle), not at epoch ends."""
        return self.kind == 'onecycle'

    def at_step(self, step, steps_per_epoch):
        """One-cycle: the rate for `step`, rising linearly from 0 over --warmup-epochs to --lr, then
        falling linearly to 0 at the end of --epochs (or at total_steps, a --time-budget plan's). Also
        sets self.rate."""
        warmup = self.warmup_epochs * steps_per_epoch
        total = self.total_steps or self.epochs * steps_per_epoch
        if step < warmup:
            self.rate = self.base * (step + 1) / warmup
        else:
            self.rate = self.base * max(0.0, (total - step) / max(1.0, total - warmup))
        return self.rate

    def end_epoch(self, epoch, val_top1=None):
        """Update after `epoch` epochs are done; val_top1 is None without validation."""
        if self.kind == 'onecycle':
            return
        if self.kind == 'step':
            self.drops = sum(epoch >= s for s in self.steps)
            self.rate = self.base / LR_DROP_FACTOR ** self.drops
            return
        if val_top1 is None:     # the plateau rule needs a validation set
            return
        if self.best is None or val_top1 > self.best + self.min_improvement:
            self.best, self.bad_epochs = val_top1, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience and self.drops < self.max_drops:
            self.rate /= LR_DROP_FACTOR
            self.drops += 1
            self.bad_epochs = 0

    def state(self):
        return dict(kind=self.kind, rate=self.rate, best=self.best, bad_epochs=self.bad_epochs,
                    drops=self.drops)
