"""The project's one downloader: a file from the web into place, whole and checked, or not at all.

    fetch(url, path, limit, verify)   # into path, through path + '.part'; resumed when cut
    get(remote, cache_dir)            # a file the project knows (a Remote) into the cache, reused once there

What users expect from torch.hub and keras.utils.get_file:
  * a cache of its own: $ALEXNET_CACHE, else $XDG_CACHE_HOME/alexnet, else ~/.cache/alexnet (cache_root);
  * the bytes go to NAME.part beside NAME, renamed only once whole and checked (`verify`), so nothing
    half-written ever has the final name; a wrong checksum deletes the .part, keeping nothing;
  * a cut download resumes: the next run asks for the rest with an HTTP Range request and appends it
    only to a 206 whose Content-Range starts where the .part ends; a 200 (a server that ignores Range)
    or a 416 starts over from zero;
  * a size cap: a server that announces or sends more than `limit` bytes is cut off, the .part deleted;
  * no hang: TIMEOUT seconds of silence on the socket end the attempt (the .part stays, to resume);
  * redirects: at most MAX_REDIRECTS, to any host (the checksum, not the host, vouches for the file),
    but only to http or https, and never from https down to plain http;
  * a progress bar with size and speed (progress.bar); one process at a time per file (the .part is
    locked); every failure a one-line DataError.
"""
import dataclasses
import fcntl
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

import progress
from errors import DataError, DownloadFailed
from files import fsync_folder

CACHE_ENV = 'ALEXNET_CACHE'       # moves the cache (as --cache-dir does)
CACHE_NAME = 'alexnet'            # the folder under $XDG_CACHE_HOME or ~/.cache
PART = '.part'
CHUNK = 1 << 20
TIMEOUT = 60                      # seconds the socket may stay silent before the attempt fails
MAX_REDIRECTS = 5


def cache_root(environ=None):
    """$ALEXNET_CACHE, else $XDG_CACHE_HOME/alexnet (an absolute path only, as the XDG spec says), else
    ~/.cache/alexnet."""
    environ = os.environ if environ is None else environ
    if environ.get(CACHE_ENV):
        return os.path.expanduser(environ[CACHE_ENV])
    xdg = environ.get('XDG_CACHE_HOME', '')
    base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(base, CACHE_NAME)


class Unreachable(DownloadFailed):
    """The download failed on the way (no network, refused, cut, timed out, an HTTP error, a refused
    redirect); the .part stays for the next run to resume. `url` and `reason` for the caller's message."""

    def __init__(self, url, reason):
        self.url, self.reason = url, ' '.join(str(reason).split())     # one line, whatever urllib says
        super().__init__(f'could not download {url} ({self.reason})')


class TooLarge(DownloadFailed):
    """The server announced or sent more than the cap; the .part was deleted. `what` says which."""

    def __init__(self, url, what):
        self.url, self.what = url, what
        super().__init__(f'download of {url} stopped: the server {what}; the partial file was deleted')


class _RedirectRefused(Exception):
    pass


class _Redirects(urllib.request.HTTPRedirectHandler):
    """urllib's redirects, at most MAX_REDIRECTS, only to http(s), never from https to http."""
    max_repeats = max_redirections = MAX_REDIRECTS + 1      # ours is the count that speaks first

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        old, new = urllib.parse.urlsplit(req.full_url).scheme, urllib.parse.urlsplit(newurl).scheme
        hops = getattr(req, 'hops', 0) + 1
        if new not in ('http', 'https') or (old == 'https' and new == 'http'):
            raise _RedirectRefused(f'{req.full_url} redirects to {newurl}: refused, a download follows redirects '
                                   f'to http or https only, and never from https down to http')
        if hops > MAX_REDIRECTS:
            raise _RedirectRefused(f'more than {MAX_REDIRECTS} redirects, the last to {newurl}')
        request = super().redirect_request(req, fp, code, msg, headers, newurl)
        if request is not None:
            request.hops = hops
        return request


_opener = urllib.request.build_opener(_Redirects)


def _content_range_start(response):
    """The first byte of a 206's `Content-Range: bytes FIRST-LAST/TOTAL`, or None."""
    unit, _, spec = response.headers.get('Content-Range', '').partition(' ')
    first = spec.partition('-')[0]
    return int(first) if unit == 'bytes' and first.isdigit() else None


def _open(url, start, timeout):
    """(response, where its body starts): GET url from byte `start` on. A 206 that starts there resumes;
    a 200 is the whole file (the server ignores Range); a 416 saying the file has `start` bytes: (None, start),
    the .part is whole; any other 416, or a 206 of another range: asked again from 0."""
    try:
        response = _opener.open(urllib.request.Request(url, headers={'Range': f'bytes={start}-'} if start else {}),
                                timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:
            if e.headers.get('Content-Range') == f'bytes */{start}':   # whole (a run stopped while checking it)
                return None, start
            return _open(url, 0, timeout)   # longer than the file: a stale .part
        raise
    if response.status == 200:
        return response, 0
    if start and response.status == 206 and _content_range_start(response) == start:
        return response, start
    response.close()
    if start:
        return _open(url, 0, timeout)
    raise http.client.HTTPException(f'unexpected HTTP status {response.status}')


def _transfer(url, f, limit, show_progress, timeout, desc):
    """Append the rest of url to the open .part f (or rewrite it, see _open), within `limit` bytes."""
    start = f.seek(0, os.SEEK_END)
    if start > limit:                   # longer than the file can be: start over
        f.truncate(0)
        start = 0
    response, start = _open(url, start, timeout)
    if response is None:
        return
    with response:
        if start == 0:
            f.truncate(0)
        length = response.headers.get('Content-Length', '')
        total = start + int(length) if length.isdigit() else None
        if total is not None and total > limit:
            raise TooLarge(url, f'announces {total} bytes')
        size = start
        with progress.bar(total=total, initial=start, unit='B', unit_scale=True, desc=desc,
                          disable=not show_progress) as bar:
            for chunk in iter(lambda: response.read(CHUNK), b''):
                size += len(chunk)
                if size > limit:
                    raise TooLarge(url, f'sent more than {limit} bytes')
                _write(f, chunk)
                bar.update(len(chunk))
    # http.client ends a body early without complaint when the connection drops.
    if total is not None and size < total:
        raise ConnectionError(f'connection closed after {size} of {total} bytes')


class _WriteFailed(Exception):
    pass


def _write(f, chunk):
    try:
        f.write(chunk)
    except OSError as e:
        raise _WriteFailed(e) from None


def _lock(f, part):
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise DataError(f'{part} is being downloaded by another process: wait for it to finish, '
                        f'then run again') from None
    except OSError:                     # a file system without locks: go on unlocked
        pass


def fetch(url, path, limit, verify=None, show_progress=True, timeout=None):
    """Download url to path through path + '.part' (resumed when one is there) and return path.

    verify(part) checks the finished .part and raises to refuse it: then the .part is deleted too.
    Raises Unreachable (the .part kept), TooLarge (deleted), or DataError (a disk that cannot be written,
    another process downloading the same file)."""
    part = path + PART
    folder = os.path.dirname(os.path.abspath(path))
    with open(part, 'a+b') as f:
        _lock(f, part)
        if os.path.isfile(path):        # another process finished it meanwhile
            os.remove(part)
            return path
        try:
            _transfer(url, f, limit, show_progress, TIMEOUT if timeout is None else timeout,
                      os.path.basename(path))
        except TooLarge:
            os.remove(part)
            raise
        except _WriteFailed as e:
            raise DataError(f'cannot write {part} ({e.args[0].strerror}): free some space and run again, '
                            f'the download resumes') from None
        except (OSError, http.client.HTTPException, _RedirectRefused) as e:   # URLError, timeouts, resets
            f.flush()
            if os.fstat(f.fileno()).st_size == 0:     # nothing to resume: leave nothing
                os.remove(part)
            reason = e if isinstance(e, urllib.error.HTTPError) else getattr(e, 'reason', e)
            raise Unreachable(url, reason) from None
        f.flush()
        os.fsync(f.fileno())
        try:
            if verify:
                verify(part)
        except Exception:               # refused (not Ctrl-C: a whole .part is kept, and checked next run)
            os.remove(part)
            raise
        os.replace(part, path)
    fsync_folder(folder)
    return path


# --- the files the project knows ------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Remote:
    """A file the project can fetch by name: where from, its SHA-1, its size cap and its licence, each as
    the page named `source` publishes them."""
    name: str            # what a user types in place of a path (bvlc_alexnet)
    url: str
    filename: str        # its name in the cache
    sha1: str
    max_bytes: int
    licence: str
    source: str


def sha1sum(path):
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, 'sha1').hexdigest()


def get(remote, cache_dir=None, show_progress=True):
    """The path of remote's file in the cache (cache_dir, default cache_root()): checked and reused when
    there, else downloaded (resumed, capped, its SHA-1 checked), saying its licence once on stderr."""
    folder = os.path.expanduser(cache_dir or cache_root())
    path = os.path.join(folder, remote.filename)
    by_hand = (f'download it another way and put it at {path} (SHA-1 {remote.sha1}), or give its path in '
               f'place of {remote.name}')
    if os.path.lexists(path) and not os.path.isfile(path):
        raise DataError(f'{path} is in the way of the download and is not a file: move it away')
    if os.path.isfile(path):
        got = sha1sum(path)
        if got != remote.sha1:
            raise DataError(f'{path} has SHA-1 {got}, expected {remote.sha1} ({remote.source}): it is not the '
                            f'released file; delete it to download it again')
        return path
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise DataError(f'cannot create the cache folder {folder} ({e.strerror}): choose another with '
                        f'--cache-dir or {CACHE_ENV}') from None
    print(f'downloading {remote.filename} from {remote.url} into {folder}; licence: {remote.licence} '
          f'({remote.source})', file=sys.stderr, flush=True)

    def verify(part):
        got = sha1sum(part)
        if got != remote.sha1:
            raise DownloadFailed(f'downloaded {remote.url} has SHA-1 {got}, expected {remote.sha1} '
                                 f'({remote.source}); nothing was kept: run again, or {by_hand}')

    try:
        return fetch(remote.url, path, remote.max_bytes, verify, show_progress)
    except Unreachable as e:
        part = path + PART
        kept = os.path.getsize(part) if os.path.isfile(part) else 0
        resume = f'; running again resumes from the {kept:,} bytes in {part}' if kept else ''
        raise DownloadFailed(f'{e}: {by_hand}{resume}') from None
    except TooLarge as e:
        raise DownloadFailed(f'{e} ({remote.filename} is at most {remote.max_bytes:,} bytes)') from None
