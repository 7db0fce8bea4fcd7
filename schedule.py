"""The learning rate: divided by 10 when validation stalls (the paper), at fixed epochs, or
one-cycle (a linear warm-up to --lr, then a linear decay to zero at the last step).

Its state (rate, best validation top-1, epochs without improvement, drops so
far) goes into every checkpoint, so a resumed run keeps counting. The one-cycle
rate is a pure function of the step, so it resumes exactly too.
"""
from datasets import DataError

LR_DROP_FACTOR = 10.0   # "divide the learning rate by 10 when the validation error rate stopped improving" (Section 5)


class LearningRate:
    def __init__(self, a, state=None):
        self.kind = a.lr_schedule
        self.base = a.lr
        self.patience = a.patience
        self.min_improvement = a.min_improvement
        self.max_drops = a.max_drops
        self.warmup_epochs = getattr(a, 'warmup_epochs', 0) or 0
        self.epochs = getattr(a, 'epochs', None)
        try:
            self.steps = sorted(int(s) for s in str(a.lr_steps).split(',') if s.strip())
        except ValueError:
            raise DataError(f'--lr-steps wants epochs separated by commas, e.g. 30,60,80; got {a.lr_steps}') from None
        if self.kind == 'step' and not self.steps:
            raise DataError('--lr-schedule step needs --lr-steps, e.g. --lr-steps 30,60,80')
        if self.kind == 'onecycle' and not 0 <= self.warmup_epochs < self.epochs:
            raise DataError(f'--warmup-epochs must be at least 0 and fewer than --epochs ({self.epochs}), '
                            f'got {self.warmup_epochs}')
        self.rate, self.best, self.bad_epochs, self.drops = a.lr, None, 0, 0
        if state:
            self.rate, self.best = state['rate'], state['best']
            self.bad_epochs, self.drops = state['bad_epochs'], state['drops']

    @property
    def per_step(self):
        """True when the rate changes every step (one-cycle), not at epoch ends."""
        return self.kind == 'onecycle'

    def at_step(self, step, steps_per_epoch):
        """One-cycle: the rate for `step`, rising linearly from 0 over --warmup-epochs to --lr, then
        falling linearly to 0 at the end of --epochs. Also sets self.rate."""
        warmup, total = self.warmup_epochs * steps_per_epoch, self.epochs * steps_per_epoch
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
