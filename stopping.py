"""How a run stops: Ctrl-C and SIGTERM, steps that do not end, and a training stream that does.

A signal asks the run to finish its step, save and exit 0 (StopRequest); a second
one ends the process at once. Steps run in a helper thread (run_heard), so the
signal is heard even while a step waits inside TensorFlow, on data that does not
come or on workers that are gone: such a step is given up with StepBlocked, and the
trainer saves and exits (abandon). A training stream that ends (no image could be
read for long) is one line (stalled).
"""
import os
import signal
import sys
import threading
import time

import decoding

BLOCKED_STEP_GRACE = 10.0      # seconds a step may go on after Ctrl-C / SIGTERM before the run gives it up
POLL_SECONDS = 0.2             # how often the main thread looks up from a running step


class StepBlocked(Exception):
    """A step did not end: after a signal (by_signal) or past its timeout."""

    def __init__(self, message, by_signal):
        super().__init__(message)
        self.by_signal = by_signal


class StopRequest:
    """SIGINT / SIGTERM: finish the step, save a checkpoint, exit 0; a second signal ends the process."""

    def __init__(self):
        self.signal = None
        self.previous = {sig: signal.signal(sig, self.handle) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handle(self, signum, frame):
        if self.signal:                 # a second one: end now (the last checkpoint stays usable)
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        self.signal = signal.Signals(signum).name

    def restore(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def run_heard(sess, fetches, stop, timeout=None, blocked_message=None, feed=None):
    """sess.run(fetches, feed) in a helper thread while this one listens: its result, or its error raised here.
    StepBlocked when the step is still running BLOCKED_STEP_GRACE seconds after stop.signal was set, or
    `timeout` seconds after it started (blocked_message(seconds) says why)."""
    box = {}

    def work():
        try:
            box['out'] = sess.run(fetches, feed_dict=feed)
        except BaseException as e:        # handed to the caller's thread as it is
            box['error'] = e
    worker = threading.Thread(target=work, name='training step', daemon=True)
    started, asked = time.time(), None
    worker.start()
    while worker.is_alive():
        worker.join(POLL_SECONDS)
        if not worker.is_alive():
            break
        if stop.signal and asked is None:
            asked = time.time()
        if asked is not None and time.time() - asked > BLOCKED_STEP_GRACE:
            raise StepBlocked(f'stopped by {stop.signal} during a step that did not end', by_signal=True)
        if timeout and time.time() - started > timeout:
            waited = time.time() - started
            raise StepBlocked(blocked_message(waited) if blocked_message else f'a step has waited {waited:.0f} s',
                              by_signal=False)
    if 'error' in box:
        raise box['error']
    return box['out']


def abandon(blocked, save, writer=None):
    """A step is stuck in the session (StepBlocked): save() what the variables hold (it returns the words
    saying so, '' where this process does not save), flush the TensorBoard writer, say why in one line, and end
    the process at once (the stuck step cannot be joined, and closing its session would wait for it): exit 0
    after a signal, else 1."""
    why, code = str(blocked), 0 if blocked.by_signal else 1
    try:
        why += save()
    except Exception as e:          # the reason it is stuck may stop the save too: say both
        why += f'; no checkpoint could be saved ({str(e).splitlines()[0][:120]})'
        code = 1
    if writer:
        writer.flush()
    print(f'{"error: " if code else ""}{why}', file=sys.stderr if code else sys.stdout, flush=True)
    os._exit(code)


def stalled(split, step):
    """Why the (endless) training stream of `split` ended at `step`: no image could be read for a long run."""
    few = ', '.join(map(str, (split.stalled or split.skipped or ['?'])[:3])) if split is not None else '?'
    return (f'training stopped at step {step}: more than {decoding.UNREADABLE_IN_A_ROW} images in a '
            f'row could not be read (first: {few}): is the data folder still there (unmounted, moved)? '
            f'Fix it and continue with -resume')
