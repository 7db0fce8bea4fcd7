"""progress.py: tqdm on a terminal; whole lines, now and then, in a log file."""
import io
import time

import progress


class Log(io.StringIO):
    def isatty(self):
        return False


def test_a_log_file_gets_whole_lines_at_most_every_interval(monkeypatch):
    log = Log()
    monkeypatch.setattr(progress.sys, 'stderr', log)
    monkeypatch.setattr(progress, 'LOG_INTERVAL', 0.2)
    bar = progress.bar(total=1000, desc='epoch 1/2', unit='step')
    start = time.time()
    for _ in range(1000):
        bar.set_postfix_str('loss 1.0', refresh=False)
        bar.update(1)
    while time.time() - start < 0.5:                  # a slow step now and then
        time.sleep(0.25)
        bar.update(0)
    bar.close()
    text = log.getvalue()
    lines = text.splitlines()
    assert '\r' not in text and all(line.startswith('epoch 1/2') for line in lines)
    assert 2 <= len(lines) <= 6                        # not a line per step: the start, a few, the end
    assert '1000/1000' in lines[-1] and 'loss 1.0' in lines[-1]


def test_a_terminal_gets_tqdms_bar(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True
    monkeypatch.setattr(progress.sys, 'stderr', Terminal())
    bar = progress.bar(total=3)
    assert bar.fp is not None and not isinstance(bar.fp, progress._Lines)
    bar.close()
