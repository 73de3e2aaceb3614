"""Download: verified, atomic, against a throw-away HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_cifar import fake_archive_bytes

from minicoconv.data import DownloadError, download_cifar100, load_cifar100
from minicoconv.data import download as download_module

ARCHIVE = fake_archive_bytes(n_train=40, n_test=10)
MD5 = hashlib.md5(ARCHIVE).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    """``/ok`` serves the archive, ``/corrupt`` a damaged copy, ``/cut`` half of it
    (announcing the full length) and then hangs up; anything else is a 404."""

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        self.server.requests += 1  # type: ignore[attr-defined]
        body = ARCHIVE
        if self.path == "/corrupt":
            body = ARCHIVE[:100] + bytes([ARCHIVE[100] ^ 0xFF]) + ARCHIVE[101:]
        elif self.path not in ("/ok", "/cut"):
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path == "/cut":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[http.server.ThreadingHTTPServer]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.requests = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def url(httpd: http.server.ThreadingHTTPServer, path: str) -> str:
    host, port = httpd.server_address[:2]
    return f"http://{host}:{port}{path}"


def test_download_succeeds_and_loads(server, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    path = download_cifar100(dest, url=url(server, "/ok"), md5=MD5, progress=False, timeout=5)
    assert path == dest / "cifar-100-python.tar.gz"
    assert path.read_bytes() == ARCHIVE
    assert sorted(p.name for p in dest.iterdir()) == ["cifar-100-python.tar.gz"]  # no temp file
    train, test = load_cifar100(path, strict_counts=False)
    assert len(train) == 40 and len(test) == 10


def test_existing_verified_file_is_not_downloaded_again(server, tmp_path: Path) -> None:
    (tmp_path / "cifar-100-python.tar.gz").write_bytes(ARCHIVE)
    path = download_cifar100(tmp_path, url=url(server, "/ok"), md5=MD5.upper(), progress=False, timeout=5)
    assert path.read_bytes() == ARCHIVE and server.requests == 0


def test_existing_bad_file_is_replaced(server, tmp_path: Path) -> None:
    (tmp_path / "cifar-100-python.tar.gz").write_bytes(b"half a file")
    path = download_cifar100(tmp_path, url=url(server, "/ok"), md5=MD5, progress=False, timeout=5)
    assert path.read_bytes() == ARCHIVE and server.requests == 1


def test_checksum_mismatch_leaves_nothing(server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=rf"checksum mismatch, MD5 [0-9a-f]{{32}} but expected {MD5}"):
        download_cifar100(tmp_path, url=url(server, "/corrupt"), md5=MD5, progress=False, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_connection_cut_mid_stream_leaves_nothing(server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=rf"transfer cut short, got {len(ARCHIVE) // 2} of {len(ARCHIVE)} bytes"):
        download_cifar100(tmp_path, url=url(server, "/cut"), md5=MD5, progress=False, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_http_404_leaves_nothing(server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"/missing\.tar\.gz: HTTP 404 Not Found"):
        download_cifar100(tmp_path, url=url(server, "/missing.tar.gz"), md5=MD5, progress=False, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port on 127.0.0.1 that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match=r"cannot connect"):
        download_cifar100(tmp_path, url=f"http://127.0.0.1:{port}/x", md5=MD5, progress=False, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_interrupt_removes_temp_file(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(response, out, bar):
        out.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(download_module, "_stream", interrupted)
    with pytest.raises(KeyboardInterrupt):
        download_cifar100(tmp_path, url=url(server, "/ok"), md5=MD5, progress=False, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_progress_bar_on_a_terminal(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tqdm")

    class FakeTerminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    fake = FakeTerminal()
    monkeypatch.setattr("sys.stderr", fake)
    download_cifar100(tmp_path, url=url(server, "/ok"), md5=MD5, progress=True, timeout=5)
    assert "cifar-100-python.tar.gz" in fake.getvalue()  # tqdm drew its bar
    assert download_module._progress_bar(10, enabled=False, desc="x") is None


def test_no_progress_bar_without_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert download_module._progress_bar(10, enabled=True, desc="x") is None


def test_official_constants() -> None:
    assert download_module.DEFAULT_URL == "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    assert download_module.OFFICIAL_MD5 == "eb9058c3a382ffc7106e4002c42a8d85"


def test_destination_that_is_not_a_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    with pytest.raises(DownloadError, match=r"cannot write into .*not-a-dir"):
        download_cifar100(blocker, url="http://127.0.0.1:9/never-contacted", md5=MD5, progress=False)
