"""The page of ``devicenet serve`` in a real browser: headless Chromium (the
distribution's package), driven through its DevTools protocol by a small
WebSocket client of our own, picks a photo in the page's file input and
reads the labels the page shows."""

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest

from conftest import data

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")


class DevTools:
    """A DevTools protocol session over a WebSocket (RFC 6455, client side)."""

    def __init__(self, ws_url, timeout=60):
        host_port, path = ws_url[len("ws://"):].split("/", 1)
        host, port = host_port.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.split(b"\r\n")[0].split()[1] == b"101", head
        self.next_id = 0

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            part = self.sock.recv(n - len(buf))
            if not part:
                raise ConnectionError("DevTools closed the connection")
            buf += part
        return buf

    def _send(self, text):
        payload = text.encode()
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                                bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else
                                bytes([0x80 | 127]) + struct.pack(">Q", n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _recv(self):
        message = b""
        while True:
            b0, b1 = self._recv_exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._recv_exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._recv_exact(8))[0]
            message += self._recv_exact(n)  # a server never masks
            if b0 & 0x80:
                return json.loads(message)

    def call(self, method, **params):
        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = self._recv()
            if msg.get("id") == self.next_id:  # events in between are not needed
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def evaluate(self, expression):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for(self, expression, timeout=60):
        """Poll ``expression`` in the page until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"the page never showed {expression}")


@pytest.fixture
def browser(tmp_path):
    """A headless Chromium page, as a DevTools session, with a phone's screen."""
    profile = tmp_path / "profile"
    proc = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--disable-dev-shm-usage", "--remote-debugging-port=0",
                             f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 60
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            assert proc.poll() is None and time.monotonic() < deadline, "Chromium did not start"
            time.sleep(0.1)
        port = port_file.read_text().splitlines()[0]
        pages = []
        while not pages:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                pages = [t for t in json.load(r) if t["type"] == "page"]
            assert time.monotonic() < deadline, "Chromium opened no page"
        tools = DevTools(pages[0]["webSocketDebuggerUrl"])
        tools.call("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=2, mobile=True)
        yield tools
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def server(request):
    """``devicenet serve`` in this process on a free port; its URL and model."""
    import devicenet
    from devicenet.serve import make_server
    camera = getattr(request, "param", None)
    model = devicenet.load(backend="cpu")
    srv = make_server(model, port=0, camera=camera() if camera else None)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/", model
    srv.shutdown()
    srv.server_close()


def shown_labels(browser, list_id):
    return browser.evaluate(f"[...document.querySelectorAll('#{list_id} .label')].map(e => e.textContent)")


@pytest.mark.parametrize("photo", ["chelsea.png", "rocket.jpg"])
def test_page_shows_the_labels_of_a_photo_picked_in_it(browser, server, photo, tmp_path):
    url, model = server
    browser.call("Page.navigate", url=url)
    browser.wait_for("document.getElementById('model').textContent.includes('efficientnet')")
    root = browser.call("DOM.getDocument")["root"]["nodeId"]
    node = browser.call("DOM.querySelector", nodeId=root, selector="#pick")["nodeId"]
    browser.call("DOM.setFileInputFiles", nodeId=node, files=[data(photo)])
    browser.wait_for("document.querySelectorAll('#labels .label').length === 5 || "
                     "document.getElementById('status').className === 'error'")
    assert browser.evaluate("document.getElementById('status').className") != "error", \
        browser.evaluate("document.getElementById('status').textContent")
    want = model.classify(data(photo), top=5)
    assert shown_labels(browser, "labels") == [p.label for p in want.predictions]
    shown_pct = browser.evaluate("[...document.querySelectorAll('#labels .probability')].map(e => e.textContent)")
    assert shown_pct == [f"{p.probability * 100:.1f}%" for p in want.predictions]
    assert "inference" in browser.evaluate("document.getElementById('latency').textContent")
    shot = browser.call("Page.captureScreenshot", format="png")["data"]
    (tmp_path / f"page-{os.path.splitext(photo)[0]}.png").write_bytes(base64.b64decode(shot))


def _video_camera():
    pytest.importorskip("av")
    from test_frames import make_video
    from devicenet.frames import VideoFile
    return VideoFile(make_video(os.path.join(tempfile.mkdtemp(), "espresso.mp4"), ["coffee.png"], fps=10, per_photo=60))


@pytest.mark.parametrize("server", [_video_camera], indirect=True)
def test_page_shows_the_camera_and_its_labels(browser, server):
    url, model = server
    browser.call("Page.navigate", url=url)
    browser.wait_for("!document.getElementById('live').hidden")
    browser.wait_for("document.getElementById('frame').naturalWidth === 640")
    labels = browser.wait_for("(l => l.length ? l : null)"
                              "([...document.querySelectorAll('#live-labels .label')].map(e => e.textContent))")
    with urllib.request.urlopen(url + "camera.json", timeout=10) as r:
        state = json.load(r)
    assert labels[0] == state["predictions"][0]["label"] == "espresso"
