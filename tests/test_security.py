"""The app's server against DNS rebinding: a real `streamlit run app.py` with the repository's
.streamlit/config.toml, spoken to over raw sockets so every header is exactly what a hostile page's
browser would send.

A page on evil.example whose name is rebound to 127.0.0.1 reaches the server as Host
`evil.example:PORT` with Origin `http://evil.example:PORT`: same-origin in the browser's eyes, so
only the Host allow-list can refuse it. The WebSocket (`/_stcore/stream`) is what drives the app
(set the runs folder, train, delete runs); it must open for localhost names only.
"""
from __future__ import annotations

import base64
import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT = 90.0
FOREIGN_HOSTS = ("evil.example", "localhost.evil.example", "127.0.0.1.nip.io")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> int:
    """Port of a headless `streamlit run app.py` started in the repository (so its config applies)."""
    port = _free_port()
    tmp = tmp_path_factory.mktemp("server")
    env = {**os.environ, "CHESTMNIST_ROOT": str(tmp / "data"), "CHESTMNIST_RUNS": str(tmp / "runs"),
           "CHESTMNIST_CACHE": str(tmp / "cache")}
    log = open(tmp / "streamlit.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while _get(port, f"localhost:{port}", "/_stcore/health") != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start: {(tmp / 'streamlit.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=30)
        log.close()


def _get(port: int, host: str, path: str) -> int | None:
    """Status of GET `path` sent to 127.0.0.1:`port` with this Host header; None if nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("Host", host)
        conn.endheaders()
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        conn.close()


def _websocket_status(port: int, host: str, origin: str | None) -> int:
    """HTTP status of a WebSocket upgrade of /_stcore/stream: 101 opened, 403 refused."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /_stcore/stream HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: streamlit\r\n"
               + (f"Origin: {origin}\r\n" if origin else "") + "\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(request.encode())
        status_line = s.recv(4096).split(b"\r\n", 1)[0].decode()
    return int(status_line.split()[1])


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "[::1]"])
def test_localhost_names_get_the_app_and_its_websocket(server, name):
    host = f"{name}:{server}"
    assert _get(server, host, "/") == 200
    assert _websocket_status(server, host, f"http://{host}") == 101
    assert _websocket_status(server, host, None) == 101


@pytest.mark.parametrize("name", FOREIGN_HOSTS)
def test_a_rebound_foreign_name_cannot_open_the_websocket(server, name):
    host = f"{name}:{server}"
    # Origin equal to Host: what a rebound page's browser sends, same-origin as far as it knows.
    assert _websocket_status(server, host, f"http://{host}") == 403
    assert _websocket_status(server, host, None) == 403


def test_a_foreign_origin_cannot_open_the_websocket_on_localhost(server):
    assert _websocket_status(server, f"localhost:{server}", f"http://evil.example:{server}") == 403


def _headers(port: int, path: str) -> dict[str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": f"localhost:{port}"})
        response = conn.getresponse()
        response.read()
        return {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


@pytest.mark.parametrize("path", ["/", "/run", "/_stcore/health"])
def test_no_other_site_may_frame_the_app(server, path):
    """Clickjacking (issue #21): a page elsewhere must not show the app in a frame and steer clicks onto Delete."""
    headers = _headers(server, path)
    assert headers.get("content-security-policy") == "frame-ancestors 'self'"
    assert headers.get("x-frame-options") == "SAMEORIGIN"
