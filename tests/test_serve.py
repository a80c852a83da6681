"""``devicenet serve``: the HTTP API answers what ``classify --json`` does,
keeps concurrent clients' answers apart, and answers hostile requests
(huge, mistyped, truncated, slow) with a 4xx JSON error while staying up."""

import contextlib
import http.client
import io
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from conftest import cli_runner, data
from devicenet import report
from devicenet.serve import exposure_warning, make_server

PHOTOS = ["chelsea.png", "coffee.png", "rocket.jpg"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model():
    import devicenet
    return devicenet.load(backend="cpu")


@contextlib.contextmanager
def serving(model, **kw):
    """A server on a free loopback port in this process; yields the port."""
    srv = make_server(model, port=0, **kw)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def port(model):
    with serving(model, timeout=1.0, max_bytes=4 * 1024 * 1024) as p:
        yield p


def request(port, method, path, body=None, headers=None):
    """(status, JSON or bytes) of one request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        raw = r.read()
        return r.status, json.loads(raw) if r.getheader("Content-Type") == "application/json" else raw
    finally:
        conn.close()


def post(port, body, ctype="image/png", path="/classify"):
    return request(port, "POST", path, body, {"Content-Type": ctype})


def raw(port, data, shut=True, pause=None):
    """Send ``data`` on a socket (in parts with ``pause`` between, if a
    list), optionally close our side, and read the answer: (status, JSON)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        try:
            for part in data if isinstance(data, list) else [data]:
                s.sendall(part)
                if pause:
                    time.sleep(pause)
            if shut:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered and stopped reading: the answer is there to read
        reply = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def photo_bytes(name):
    with open(data(name), "rb") as f:
        return f.read()


def test_health_and_the_page(model, port):
    status, doc = request(port, "GET", "/health")
    assert status == 200 and doc["status"] == "ok" and doc["model"] == "efficientnet-lite0" and doc["camera"] is None
    assert doc["schema"] == report.SCHEMA and doc["device"] == report.device_name(model)
    status, page = request(port, "GET", "/")
    assert status == 200
    assert b'type="file" accept="image/*" capture' in page and b"viewport" in page
    assert b"<script src" not in page and b"<link" not in page  # self-contained


@pytest.mark.parametrize("photo", PHOTOS)
def test_post_classify_answers_what_classify_json_prints(port, photo):
    status, doc = post(port, photo_bytes(photo), "image/jpeg" if photo.endswith(".jpg") else "image/png",
                       f"/classify?name={photo}")
    assert status == 200
    cli = cli_runner().invoke(_main(), ["classify", "--json", "--backend", "cpu", data(photo)])
    want = json.loads(cli.stdout)
    # the same document: schema, the run, one result
    assert list(doc) == list(want) and doc["schema"] == report.SCHEMA
    assert [doc[k] for k in ("model", "backend", "device")] == [want[k] for k in ("model", "backend", "device")]
    got, ref = doc["results"][0], want["results"][0]
    assert set(got) == set(ref) and set(got["latency_ms"]) == set(ref["latency_ms"])
    assert got["image"] == photo
    assert [p["label"] for p in got["predictions"]] == [p["label"] for p in ref["predictions"]]
    np.testing.assert_allclose([p["probability"] for p in got["predictions"]],
                               [p["probability"] for p in ref["predictions"]], atol=2e-6)


def test_top_and_octet_stream(port):
    status, doc = post(port, photo_bytes("coffee.png"), "application/octet-stream", "/classify?top=2")
    assert status == 200 and len(doc["results"][0]["predictions"]) == 2
    assert doc["results"][0]["predictions"][0]["label"] == "espresso"
    status, doc = post(port, photo_bytes("coffee.png"), "image/png", "/classify?top=0")
    assert status == 400 and "top" in doc["error"]


def bomb_png(width=100_000, height=100_000):
    """A valid PNG header declaring width x height pixels, with almost no data."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def truncated_jpeg():
    out = io.BytesIO()
    Image.open(data("chelsea.png")).convert("RGB").save(out, "JPEG")
    return out.getvalue()[: out.tell() // 2]


@pytest.mark.parametrize("body, ctype, status, message", [
    (b"not an image at all", "image/png", 400, "not an image"),
    (truncated_jpeg(), "image/jpeg", 400, "cannot decode image"),
    (bomb_png(), "image/png", 400, "megapixel limit|too large"),
    (bomb_png(9000, 9000), "image/png", 400, "megapixel limit|too large"),
    (b"\x89PNG", "image/png", 400, "not an image"),
    (b"hello", "text/plain", 415, "not text/plain"),
    (b"--x\r\n", "multipart/form-data; boundary=x", 415, "--data-binary"),
    (b"a=1", "application/x-www-form-urlencoded", 415, "Content-Type must be image"),
], ids=["garbage", "truncated-jpeg", "bomb", "81-megapixels", "png-signature-only", "text", "multipart", "form"])
def test_bad_uploads_get_4xx_json(port, body, ctype, status, message):
    got, doc = post(port, body, ctype)
    assert got == status and re.search(message, doc["error"]), doc


def test_upload_without_content_type_is_415(port):
    got, doc = raw(port, b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    assert got == 415 and "not none" in doc["error"]


def test_huge_declared_body_is_refused_before_it_is_read(port):
    # 10 GB declared, nothing sent: the answer comes at once, without waiting for it
    got, doc = raw(port, b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                         b"Content-Length: 10000000000\r\n\r\n", shut=False)
    assert got == 413 and "limit" in doc["error"]


def test_body_over_the_limit_is_413(model):
    body = photo_bytes("coffee.png")
    with serving(model, max_bytes=len(body)) as p:
        got, doc = post(p, body + b"\0", "image/png")
        assert got == 413 and f"the limit is {len(body)}" in doc["error"]
        assert post(p, body, "image/png")[0] == 200  # at the limit: served


@pytest.mark.parametrize("headers, status, message", [
    (b"Transfer-Encoding: chunked\r\n", 411, "chunked"),
    (b"", 411, "Content-Length"),
    (b"Content-Length: abc\r\n", 400, "bad Content-Length"),
    (b"Content-Length: -5\r\n", 400, "bad Content-Length"),
    (b"Content-Length: 0\r\n", 400, "empty"),
])
def test_bad_lengths(port, headers, status, message):
    got, doc = raw(port, b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n" + headers + b"\r\n")
    assert got == status and message in doc["error"]


def test_truncated_upload_is_400(port):
    body = photo_bytes("coffee.png")
    got, doc = raw(port, b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body) + body[:1000])
    assert got == 400 and f"ended after 1000 of {len(body)} bytes" in doc["error"]


def test_a_client_that_stops_sending_times_out_with_408(port):
    got, doc = raw(port, b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                         b"Content-Length: 5000\r\n\r\n" + b"x" * 100, shut=False)
    assert got == 408 and "100 of 5000" in doc["error"]


def test_a_client_trickling_its_body_times_out_with_408(port):
    # every byte within the per-read timeout, the whole far beyond it
    head = b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100\r\n\r\n"
    got, doc = raw(port, [head] + [b"x"] * 8, shut=False, pause=0.3)
    assert got == 408


def test_a_client_that_sends_nothing_is_disconnected(port):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"GET /hea")
        assert s.recv(100) == b""  # closed by the server after its timeout, long before ours


def test_a_client_trickling_its_headers_is_disconnected(port):
    # each header line well within the per-read timeout, all of them far beyond it
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        closed = False
        for i in range(20):
            time.sleep(0.3)
            try:
                s.sendall(b"X-Slow-%d: 1\r\n" % i)
            except OSError:
                closed = True
                break
        if not closed:
            try:
                closed = s.recv(100) == b""
            except ConnectionResetError:
                closed = True
        assert closed
    assert request(port, "GET", "/health")[0] == 200


@pytest.mark.parametrize("line, status", [
    (b"GET /nowhere HTTP/1.1", 404), (b"GET /classify HTTP/1.1", 405), (b"POST /health HTTP/1.1", 405),
    (b"PUT /classify HTTP/1.1", 501), (b"GARBAGE", 400), (b"GET / HTTP/9.9", 505),
])
def test_wrong_paths_and_methods_get_json_errors(port, line, status):
    got, doc = raw(port, line + b"\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert got == status and doc["error"]


def test_too_many_connections_get_503(model):
    with serving(model, max_connections=2, timeout=5.0) as p:
        idle = [socket.create_connection(("127.0.0.1", p), timeout=30) for _ in range(2)]
        try:
            time.sleep(0.3)  # both taken by their threads
            # the third is answered at once, before it says anything
            with socket.create_connection(("127.0.0.1", p), timeout=30) as s:
                reply = b""
                while chunk := s.recv(4096):
                    reply += chunk
            head, _, body = reply.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503 ") and "too many" in json.loads(body)["error"]
        finally:
            for s in idle:
                s.close()
        deadline = time.monotonic() + 30
        while request(p, "GET", "/health")[0] != 200:  # their slots come back
            assert time.monotonic() < deadline
            time.sleep(0.1)


def variants():
    """Six different images (three photos and their mirrors), as PNG bytes."""
    out = []
    for name in PHOTOS:
        img = Image.open(data(name)).convert("RGB")
        for im in (img, img.transpose(Image.FLIP_LEFT_RIGHT)):
            buf = io.BytesIO()
            im.save(buf, "PNG")
            out.append(buf.getvalue())
    return out


def test_concurrent_clients_each_get_their_own_answer(model, port):
    images = variants()
    want = [[(p.label, p.probability) for p in model.classify(Image.open(io.BytesIO(b)), top=5).predictions]
            for b in images]
    assert len({w[0][0] for w in want}) >= 3  # different answers to mix up

    def client(c):
        got = []
        for i in range(6):
            k = (c + i) % len(images)
            status, doc = post(port, images[k])
            got.append((k, status, doc))
        return got
    with ThreadPoolExecutor(8) as pool:
        results = [r for rs in pool.map(client, range(8)) for r in rs]
    assert len(results) == 48
    for k, status, doc in results:
        assert status == 200, doc
        preds = doc["results"][0]["predictions"]
        assert [p["label"] for p in preds] == [w[0] for w in want[k]]
        np.testing.assert_allclose([p["probability"] for p in preds], [w[1] for w in want[k]], atol=2e-6)


def test_the_server_is_up_after_all_that(port):
    status, doc = post(port, photo_bytes("rocket.jpg"), "image/jpeg")
    assert status == 200 and request(port, "GET", "/health")[1]["status"] == "ok"


def test_camera_view_serves_the_newest_frame_and_its_labels(model, tmp_path):
    from test_frames import make_video
    from devicenet.frames import VideoFile
    assert request  # (a server without --camera answers 404 below)
    video = make_video(tmp_path / "espresso.mp4", ["coffee.png"], fps=10, per_photo=40)
    with serving(model, camera=VideoFile(video), camera_fps=20) as p:
        deadline = time.monotonic() + 60
        while True:
            status, state = request(p, "GET", "/camera.json")
            if status == 200 and "predictions" in state:
                break
            assert time.monotonic() < deadline, state
            time.sleep(0.1)
        assert state["source"] == state["image"] == video and state["predictions"][0]["label"] == "espresso"
        assert state["schema"] == report.SCHEMA and state["error"] is None
        status, jpeg = request(p, "GET", "/camera.jpg")
        assert status == 200 and Image.open(io.BytesIO(jpeg)).size == (640, 480)
        assert request(p, "GET", "/health")[1]["camera"] == video


def test_many_clients_asking_for_the_camera_while_it_is_classified(model, tmp_path):
    # The live view converts the newest frame to JPEG while the network may
    # be converting the same frame: once, under the frame's lock (two
    # conversions of one frame at once crashed the process).
    from test_frames import make_video
    from devicenet.frames import VideoFile
    video = make_video(tmp_path / "v.mp4", ["chelsea.png", "coffee.png"], fps=30, per_photo=45)
    with serving(model, camera=VideoFile(video), camera_fps=1000) as p:
        def viewer(_):
            sizes, deadline = [], time.monotonic() + 3
            while time.monotonic() < deadline:
                status, jpeg = request(p, "GET", "/camera.jpg")
                if status == 200:
                    sizes.append(Image.open(io.BytesIO(jpeg)).size)
            return sizes
        with ThreadPoolExecutor(6) as pool:
            sizes = [s for got in pool.map(viewer, range(6)) for s in got]
        assert sizes and set(sizes) == {(640, 480)}
        assert request(p, "GET", "/health")[1]["status"] == "ok"


def test_no_camera_means_404_on_its_pages(port):
    for path in ("/camera.jpg", "/camera.json"):
        status, doc = request(port, "GET", path)
        assert status == 404 and "--camera" in doc["error"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.1.1"])
def test_no_warning_on_loopback(host):
    assert exposure_warning(host) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20"])
def test_warning_when_others_can_reach_it(host):
    assert "anyone" in exposure_warning(host)


def test_serve_on_all_interfaces_warns(monkeypatch):
    # (not bound for real: the server is replaced by one that stops at once)
    import devicenet.serve

    class Stopped:
        server_address = ("0.0.0.0", 8080)
        closed = False

        def serve_forever(self):
            raise KeyboardInterrupt

        def server_close(self):
            Stopped.closed = True
    monkeypatch.setattr(devicenet.serve, "make_server", lambda *a, **kw: Stopped())
    result = cli_runner().invoke(_main(), ["serve", "--host", "0.0.0.0", "--backend", "cpu"])
    assert result.exit_code == 130 and Stopped.closed
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Warning: serving on 0.0.0.0: anyone who can reach this machine")
    assert lines[1].startswith("serving efficientnet-lite0 (cpu) on http://0.0.0.0:8080/")


def test_serve_command_starts_answers_and_exits_130_on_ctrl_c():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "devicenet", "serve", "--port", "0", "--backend", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        assert line.startswith("serving efficientnet-lite0 (cpu) on http://127.0.0.1:"), line
        p = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        status, doc = post(p, photo_bytes("coffee.png"))
        assert status == 200 and doc["results"][0]["predictions"][0]["label"] == "espresso"
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and err.rstrip().endswith("Interrupted.")


def test_serve_with_a_missing_camera_is_one_line(tmp_path):
    result = cli_runner().invoke(_main(), ["serve", "--port", "0", "--camera", str(tmp_path / "none.mp4")])
    assert result.exit_code == 1 and "none.mp4: no such video file or camera" in result.stderr


def _main():
    from devicenet.cli import main
    return main
