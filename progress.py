"""Progress bars: tqdm's on a terminal; in a log file (nohup, a scheduler) a plain line every 30 s.

tqdm redraws its bar in place with carriage returns, many times a second: in a file that is
hundreds of overwritten lines per epoch, unreadable with `less`. When standard error is not a
terminal, the same bar is printed as whole lines, at most one every LOG_INTERVAL seconds (and
once at the end), so a log keeps a line now and then plus the one line per epoch.
"""
import sys

from tqdm import tqdm

LOG_INTERVAL = 30.0      # seconds between progress lines in a log file


class _Lines:
    """A file for tqdm that turns each redraw into one line of text."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        line = text.replace('\r', '').rstrip()
        if line:
            self.stream.write(line + '\n')

    def flush(self):
        self.stream.flush()


def bar(total=None, desc=None, unit='it', initial=0, leave=True, disable=False, unit_scale=False):
    """A tqdm bar on standard error; in line mode when that is not a terminal. unit_scale: 12.3MB, 4.5MB/s."""
    stream = sys.stderr
    if disable or stream.isatty():
        return tqdm(total=total, desc=desc, unit=unit, initial=initial, leave=leave, disable=disable,
                    dynamic_ncols=True, unit_scale=unit_scale)
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, leave=True, file=_Lines(stream),
                mininterval=LOG_INTERVAL, maxinterval=LOG_INTERVAL * 4, ascii=True, ncols=100, unit_scale=unit_scale)
