"""download.py: a file into the cache whole and checked, or not at all, against HTTP servers started
here on 127.0.0.1 serving a small caffemodel the test writes (its SHA-1 computed here): whole, cut and
resumed, a server that ignores Range, a wrong checksum, a server gone or silent, redirects, the size cap."""
import fcntl
import hashlib
import io
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import download
import weights_files
from errors import DataError

NAME = 'bvlc_alexnet.caffemodel'
PATH = '/' + NAME


def tiny_caffemodel():
    """A NetParameter in Caffe's current encoding with one small conv1 blob: a real caffemodel of 16 kB."""
    m = weights_files.caffe_messages()
    net = m['NetParameter'](name='AlexNet')
    blob = net.layer.add(name='conv1', type='Convolution').blobs.add()
    blob.shape.dim.extend([4, 3, 11, 11])
    blob.data.extend(float(i % 7) for i in range(4 * 3 * 11 * 11))
    return net.SerializeToString()


MODEL = tiny_caffemodel()
MODEL_SHA1 = hashlib.sha1(MODEL).hexdigest()


class Handler(BaseHTTPRequestHandler):
    """GET of server.files (bytes, or a Path streamed from disk) with Range; server.redirects {path: Location};
    server.cut_at: bytes sent before the connection drops; server.ranges 'honour', 'ignore' (always 200) or
    'wrong' (a 206 from byte 0); server.length False: no Content-Length. server.log: (path, Range, status)."""

    def do_GET(self):
        s, rng = self.server, self.headers.get('Range')
        if self.path in s.redirects:
            s.log.append((self.path, rng, 302))
            self.send_response(302)
            self.send_header('Location', s.redirects[self.path])
            self.end_headers()
            return
        if self.path not in s.files:
            s.log.append((self.path, rng, 404))
            self.send_error(404)
            return
        value = s.files[self.path]
        body = io.BytesIO(value) if isinstance(value, bytes) else open(value, 'rb')
        with body:
            size = body.seek(0, os.SEEK_END)
            start = int(rng.split('=')[1].split('-')[0]) if rng and s.ranges == 'honour' else 0
            if start >= size:
                s.log.append((self.path, rng, 416))
                self.send_response(416)
                self.send_header('Content-Range', f'bytes */{size}')
                self.send_header('Content-Length', '0')
                self.end_headers()
                return
            status = 206 if start or (rng and s.ranges == 'wrong') else 200
            s.log.append((self.path, rng, status))
            self.send_response(status)
            if status == 206:
                self.send_header('Content-Range', f'bytes {start}-{size - 1}/{size}')
            if s.length:
                self.send_header('Content-Length', str(size - start))
            self.end_headers()
            body.seek(start)
            left = size - start if s.cut_at is None else max(0, s.cut_at - start)
            try:
                while left > 0:
                    chunk = body.read(min(left, 1 << 20))
                    self.wfile.write(chunk)
                    left -= len(chunk)
            except (BrokenPipeError, ConnectionResetError):     # the client stopped reading: as it should
                pass

    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    """start(**settings) -> a running server on 127.0.0.1 (see Handler), with .url, shut down after the test."""
    servers = []

    def start(**settings):
        server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        server.files, server.redirects, server.cut_at = {PATH: MODEL}, {}, None
        server.ranges, server.length, server.log = 'honour', True, []
        vars(server).update(settings)
        server.url = f'http://127.0.0.1:{server.server_port}{PATH}'
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def remote(url, **changes):
    """The test's caffemodel as a known file: a Remote like import_weights.RELEASED's."""
    fields = dict(name='bvlc_alexnet', url=url, filename=NAME, sha1=MODEL_SHA1, max_bytes=2 * len(MODEL),
                  licence='unrestricted (the test)', source="the test's readme")
    return download.Remote(**{**fields, **changes})


def one_line(error):
    text = str(error.value)
    assert '\n' not in text, text
    return text


def test_cache_root_honours_alexnet_cache_then_xdg_then_home(monkeypatch):
    monkeypatch.setenv('HOME', '/home/u')
    assert download.cache_root({}) == '/home/u/.cache/alexnet'
    assert download.cache_root({'XDG_CACHE_HOME': '/x'}) == '/x/alexnet'
    assert download.cache_root({'XDG_CACHE_HOME': 'relative'}) == '/home/u/.cache/alexnet'   # the spec: ignored
    assert download.cache_root({'XDG_CACHE_HOME': '/x', 'ALEXNET_CACHE': '~/c'}) == '/home/u/c'


def test_download_is_whole_checked_and_then_reused(serve, tmp_path, capsys):
    server = serve()
    path = download.get(remote(server.url), tmp_path)
    assert Path(path) == tmp_path / NAME and Path(path).read_bytes() == MODEL
    assert os.listdir(tmp_path) == [NAME] and server.log == [(PATH, None, 200)]
    err = capsys.readouterr().err
    assert f'from {server.url} into {tmp_path}; licence: unrestricted (the test)' in err
    assert '100%' in err and 'B/s' in err                       # a bar with size and speed, to the end
    server.shutdown()
    assert download.get(remote(server.url), tmp_path) == path  # reused: no request, no licence again
    assert capsys.readouterr().err == ''


def test_cut_download_resumes_where_it_stopped(serve, tmp_path):
    half = len(MODEL) // 2
    server = serve(cut_at=half)
    with pytest.raises(download.DownloadFailed) as e:
        download.get(remote(server.url), tmp_path, show_progress=False)
    message = one_line(e)
    assert f'could not download {server.url} (connection closed after {half} of {len(MODEL)} bytes)' in message
    assert f'put it at {tmp_path / NAME} (SHA-1 {MODEL_SHA1})' in message and 'in place of bvlc_alexnet' in message
    assert f'running again resumes from the {half:,} bytes' in message
    assert os.listdir(tmp_path) == [NAME + '.part']            # nothing under the final name
    server.cut_at = None
    download.get(remote(server.url), tmp_path, show_progress=False)
    assert server.log[-1] == (PATH, f'bytes={half}-', 206)    # the rest only
    assert (tmp_path / NAME).read_bytes() == MODEL and os.listdir(tmp_path) == [NAME]


@pytest.mark.parametrize('ranges, part, log', [
    ('ignore', b'x' * 100, [(PATH, 'bytes=100-', 200)]),                                # a 200: from zero
    ('wrong', b'x' * 100, [(PATH, 'bytes=100-', 206), (PATH, None, 200)]),             # a 206 from elsewhere
    ('honour', b'x' * (len(MODEL) + 5), [(PATH, f'bytes={len(MODEL) + 5}-', 416), (PATH, None, 200)]),
], ids=['server-ignores-range', 'server-sends-another-range', 'part-too-long'])
def test_a_part_that_cannot_be_resumed_starts_over(serve, tmp_path, ranges, part, log):
    (tmp_path / (NAME + '.part')).write_bytes(part)
    server = serve(ranges=ranges)
    download.get(remote(server.url), tmp_path, show_progress=False)
    assert server.log == log and (tmp_path / NAME).read_bytes() == MODEL and os.listdir(tmp_path) == [NAME]


def test_a_whole_part_left_by_ctrl_c_during_the_check_is_checked_next_time(serve, tmp_path, monkeypatch):
    server = serve()

    def interrupted(path):
        raise KeyboardInterrupt
    monkeypatch.setattr(download, 'sha1sum', interrupted)
    with pytest.raises(KeyboardInterrupt):
        download.get(remote(server.url), tmp_path, show_progress=False)
    assert (tmp_path / (NAME + '.part')).read_bytes() == MODEL      # kept, whole
    monkeypatch.undo()
    download.get(remote(server.url), tmp_path, show_progress=False)
    assert server.log == [(PATH, None, 200), (PATH, f'bytes={len(MODEL)}-', 416)]   # not downloaded again
    assert (tmp_path / NAME).read_bytes() == MODEL and os.listdir(tmp_path) == [NAME]


def test_wrong_checksum_says_both_sums_and_keeps_nothing(serve, tmp_path):
    server = serve()
    with pytest.raises(download.DownloadFailed) as e:
        download.get(remote(server.url, sha1='0' * 40), tmp_path, show_progress=False)
    message = one_line(e)
    assert f'has SHA-1 {MODEL_SHA1}, expected {"0" * 40}' in message and 'nothing was kept' in message
    assert os.listdir(tmp_path) == []


def test_server_gone_says_the_address_and_where_to_put_the_file(serve, tmp_path):
    server = serve()
    server.shutdown()
    server.server_close()                                      # nothing listens on that port any more
    with pytest.raises(download.DownloadFailed) as e:
        download.get(remote(server.url), tmp_path / 'cache', show_progress=False)
    message = one_line(e)
    assert message.startswith(f'could not download {server.url} (') and 'refused' in message.lower()
    assert f'put it at {tmp_path / "cache" / NAME} (SHA-1 {MODEL_SHA1}), or give its path' in message
    assert os.listdir(tmp_path / 'cache') == []                # no empty .part left


def test_a_silent_server_times_out(tmp_path, monkeypatch):
    with socket.socket() as listener:                          # accepts connections, never answers
        listener.bind(('127.0.0.1', 0))
        listener.listen()
        monkeypatch.setattr(download, 'TIMEOUT', 0.2)
        url = f'http://127.0.0.1:{listener.getsockname()[1]}{PATH}'
        with pytest.raises(download.DownloadFailed, match='timed out'):
            download.get(remote(url), tmp_path, show_progress=False)


def test_redirect_to_another_host_is_followed_and_resumed_there(serve, tmp_path):
    """127.0.0.1 sends the client to localhost: followed (the SHA-1 vouches for the file), the Range too."""
    mirror = serve(cut_at=len(MODEL) // 2)
    origin = serve(files={}, redirects={PATH: mirror.url.replace('127.0.0.1', 'localhost')})
    with pytest.raises(download.DownloadFailed, match='connection closed'):
        download.get(remote(origin.url), tmp_path, show_progress=False)
    mirror.cut_at = None
    download.get(remote(origin.url), tmp_path, show_progress=False)
    assert (tmp_path / NAME).read_bytes() == MODEL
    assert origin.log == [(PATH, None, 302), (PATH, f'bytes={len(MODEL) // 2}-', 302)]
    assert mirror.log == [(PATH, None, 200), (PATH, f'bytes={len(MODEL) // 2}-', 206)]


@pytest.mark.parametrize('target, words', [
    ('self', f'more than {download.MAX_REDIRECTS} redirects'),
    ('ftp://127.0.0.1/bvlc_alexnet.caffemodel', 'to http or https only'),
])
def test_redirect_loops_and_other_schemes_are_refused(serve, tmp_path, target, words):
    server = serve(files={})
    server.redirects = {PATH: server.url if target == 'self' else target}
    with pytest.raises(download.DownloadFailed) as e:
        download.get(remote(server.url), tmp_path, show_progress=False)
    assert words in one_line(e) and os.listdir(tmp_path) == []


@pytest.mark.parametrize('old, new, allowed', [
    ('https://a.org/f', 'http://b.org/f', False),              # a downgrade, even to the same host
    ('https://a.org/f', 'http://a.org/f', False),
    ('http://a.org/f', 'https://b.org/f', True),
    ('https://a.org/f', 'https://b.org/f', True),
    ('http://a.org/f', 'file:///etc/passwd', False),
])
def test_redirects_never_go_from_https_down_to_http(old, new, allowed):
    request = download.urllib.request.Request(old, headers={'Range': 'bytes=10-'})
    follow = lambda: download._Redirects().redirect_request(request, None, 302, 'Found', {}, new)  # noqa: E731
    if allowed:
        assert follow().full_url == new and follow().headers['Range'] == 'bytes=10-'
    else:
        with pytest.raises(download._RedirectRefused, match='never from https down to http'):
            follow()


@pytest.mark.parametrize('length, words', [(True, f'announces {len(MODEL)} bytes'),
                                           (False, f'sent more than {len(MODEL) - 1} bytes')])
def test_a_download_past_the_size_cap_is_stopped_and_deleted(serve, tmp_path, length, words):
    server = serve(length=length)
    with pytest.raises(download.DownloadFailed) as e:
        download.get(remote(server.url, max_bytes=len(MODEL) - 1), tmp_path, show_progress=False)
    message = one_line(e)
    assert words in message and 'partial file was deleted' in message and f'at most {len(MODEL) - 1:,} bytes' in message
    assert os.listdir(tmp_path) == []


def test_a_file_in_the_cache_that_is_not_the_released_one_is_refused_and_kept(tmp_path):
    (tmp_path / NAME).write_bytes(MODEL[:-1])
    with pytest.raises(DataError) as e:
        download.get(remote('http://127.0.0.1:9/unused'), tmp_path)
    assert f'has SHA-1 {hashlib.sha1(MODEL[:-1]).hexdigest()}, expected {MODEL_SHA1}' in one_line(e)
    assert not isinstance(e.value, download.DownloadFailed) and (tmp_path / NAME).read_bytes() == MODEL[:-1]


def test_one_process_at_a_time_downloads_a_file(serve, tmp_path):
    server = serve()
    with open(tmp_path / (NAME + '.part'), 'ab') as other:     # another process's download, under way
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(DataError, match='being downloaded by another process: wait for it'):
            download.get(remote(server.url), tmp_path, show_progress=False)
    assert server.log == []
    download.get(remote(server.url), tmp_path, show_progress=False)
    assert (tmp_path / NAME).read_bytes() == MODEL
