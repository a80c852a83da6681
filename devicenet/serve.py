"""``devicenet serve``: classification over HTTP, and a page for a phone.

Standard library only (http.server): one thread per connection, the model
shared between them.  ``Model`` runs one forward pass at a time under its
lock and returns each caller its own result, so answers never mix; at most
two requests decode and classify at once, so that eight clients decoding
photos together do not starve the network of cores.

Every request is bounded: the body's size (413 before a byte of it is
read), its content type (415), the time a client may take to send it (408),
the pixels an image may declare (400), the connections open at once (503).
Failures are answered as ``{"error": "..."}`` with a 4xx status; the server
stays up.
"""

import io
import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from PIL import Image

from . import __version__, report
from .errors import DeviceNetError
from .watch import Watch

#: the largest upload accepted (a phone's photo is 2-12 MB)
MAX_BYTES = 20 * 1024 * 1024
#: seconds a client may take to send its request
TIMEOUT = 10.0
#: connections served at once; more are answered 503 at once
MAX_CONNECTIONS = 64
#: requests decoding and classifying at once (one in the network, one preparing)
INFLIGHT = 2
PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web", "index.html")
IMAGE_TYPES = ("image/", "application/octet-stream")


class HTTPError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def is_loopback(host):
    return host in ("localhost", "::1") or host.startswith("127.")


def exposure_warning(host):
    """The warning to print when ``host`` is reachable from other machines, or None."""
    if is_loopback(host):
        return None
    return (f"serving on {host}: anyone who can reach this machine on the network can use "
            "this server (there is no password); use the default 127.0.0.1 to keep it to this machine")


class Camera:
    """The camera of ``--camera``: classified continuously on a thread; the
    newest frame (as JPEG) and the newest result are there to ask for."""

    def __init__(self, model, source, top, fps):
        self.watch = Watch(model, source, top=top, fps=fps)
        self.latest = None
        self.error = None
        self.ended = False
        self._jpeg = (None, None)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="camera", daemon=True)
        self._thread.start()

    def _run(self):
        try:
            for r in self.watch:
                self.latest = r
        except DeviceNetError as e:
            self.error = str(e)
        except Exception as e:  # the live view reports it; uploads go on
            self.error = f"{type(e).__name__}: {e}"
        self.ended = True

    def jpeg(self):
        """The newest frame grabbed as JPEG bytes (encoded once per frame), or None."""
        frame = self.watch.grabber.newest
        if frame is None:
            return None
        with self._lock:
            if self._jpeg[0] != frame.index:
                out = io.BytesIO()
                Image.fromarray(frame.pixels).save(out, "JPEG", quality=80)
                self._jpeg = (frame.index, out.getvalue())
            return self._jpeg[1]

    def state(self):
        """The document of GET /camera.json."""
        r, source = self.latest, self.watch.source.name
        doc = {"source": source, "ended": self.ended, "error": self.error}
        return report.document({**doc, **report.frame_json(r, source)} if r is not None else doc)

    def close(self):
        self.watch.close()


class App:
    """What the handlers share: the model and the limits."""

    def __init__(self, model, top=5, max_bytes=MAX_BYTES, timeout=TIMEOUT, camera=None):
        self.model, self.top, self.max_bytes, self.timeout, self.camera = model, top, max_bytes, timeout, camera
        self.started = time.monotonic()
        self.inflight = threading.BoundedSemaphore(INFLIGHT)
        with open(PAGE, "rb") as f:
            self.page = f.read()

    def classify(self, data, name=None, top=None):
        """Image bytes -> the document ``classify --json`` prints, for one image.

        The bytes are decoded as ``classify`` decodes a file (its pixel
        limit, its decompression-bomb check); what it refuses is a 400."""
        with self.inflight:
            try:
                res = self.model.classify(data, top=top or self.top)
            except DeviceNetError as e:
                raise HTTPError(400, str(e)) from None
        res.image = name
        return report.classify_document(self.model, [report.result_json(res)])

    def health(self):
        """The document of GET /health."""
        return report.document({"status": "ok", "version": __version__, "model": self.model.name,
                                "backend": self.model.backend, "device": report.device_name(self.model),
                                "uptime_s": time.monotonic() - self.started,
                                "camera": self.camera.watch.source.name if self.camera else None})


class _HeadDeadline:
    """The request's reader, with one deadline for the request line and its
    headers: http.server reads them a line at a time, each within the
    socket's timeout, so a client sending a header every few seconds would
    hold its connection forever."""

    def __init__(self, reader, connection):
        self._reader, self._connection = reader, connection
        self.deadline = None

    def readline(self, limit=-1):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("the request's headers took too long")
        self._connection.settimeout(left)
        return self._reader.readline(limit)

    def __getattr__(self, name):
        return getattr(self._reader, name)


class Handler(BaseHTTPRequestHandler):
    """Routes: GET /, /health, /camera.jpg, /camera.json; POST /classify."""

    protocol_version = "HTTP/1.1"  # keep-alive: a phone's page polls the camera
    server_version = f"devicenet/{__version__}"
    error_content_type = "application/json"

    @property
    def app(self):
        return self.server.app

    def setup(self):
        self.timeout = self.server.app.timeout
        super().setup()
        self.rfile = _HeadDeadline(self.rfile, self.connection)

    def handle_one_request(self):
        # Waiting for a request on an open connection counts too: an idle
        # keep-alive connection is closed after the same time.
        self.rfile.deadline = time.monotonic() + self.app.timeout
        super().handle_one_request()

    linger = False

    def handle(self):
        try:
            super().handle()
        except (ConnectionError, socket.timeout):
            pass  # the client left or stalled: nothing to answer

    def finish(self):
        super().finish()
        if self.linger:
            self.drain()

    def drain(self, limit=1 << 20, seconds=1.0):
        """Read and discard what the client still sends, a little while:
        closing a socket with unread data resets the connection, and the
        client may lose the answer it was sent (a 413 for a large upload)."""
        try:
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + seconds
            while limit > 0 and time.monotonic() < deadline:
                self.connection.settimeout(max(0.01, deadline - time.monotonic()))
                got = self.connection.recv(min(limit, 1 << 16))
                if not got:
                    break
                limit -= len(got)
        except OSError:
            pass

    def do_GET(self):
        self.route({"/": self.get_page, "/health": self.get_health, "/camera.jpg": self.get_camera_jpeg,
                    "/camera.json": self.get_camera_state})

    def do_POST(self):
        self.route({"/classify": self.post_classify}, method="POST")

    def route(self, table, method="GET"):
        self.connection.settimeout(self.app.timeout)  # not what was left of the headers' deadline
        url = urlsplit(self.path)
        handler = table.get(url.path)
        try:
            if handler is None:
                other = {"GET": ("/classify",), "POST": ("/", "/health", "/camera.jpg", "/camera.json")}[method]
                if url.path in other:
                    raise HTTPError(405, f"{url.path} takes {'POST' if method == 'GET' else 'GET'}")
                raise HTTPError(404, f"no such page: {url.path}")
            handler(parse_qs(url.query))
        except HTTPError as e:
            # A POST's body may be left unread: the connection is closed after the answer.
            self.linger = method == "POST"
            self.send_json(e.status, {"error": str(e)}, close=e.status in (408, 411, 413) or self.linger)
        except (ConnectionError, socket.timeout):
            self.close_connection = True
        except Exception as e:  # a bug must cost one request, not the server
            self.log_error("internal error on %s: %s: %s", url.path, type(e).__name__, e)
            self.send_json(500, {"error": f"internal error: {type(e).__name__}"}, close=True)

    def get_page(self, query):
        self.send_body(200, self.app.page, "text/html; charset=utf-8")

    def get_health(self, query):
        self.send_json(200, self.app.health())

    def camera(self):
        if self.app.camera is None:
            raise HTTPError(404, "no camera: start the server with --camera SOURCE")
        return self.app.camera

    def get_camera_jpeg(self, query):
        data = self.camera().jpeg()
        if data is None:
            raise HTTPError(503, "no frame from the camera yet")
        self.send_body(200, data, "image/jpeg", {"Cache-Control": "no-store"})

    def get_camera_state(self, query):
        self.send_json(200, self.camera().state(), headers={"Cache-Control": "no-store"})

    def post_classify(self, query):
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if not ctype.startswith(IMAGE_TYPES):
            form = ctype.startswith(("multipart/", "application/x-www-form"))
            hint = (" (send the photo's bytes as the body, e.g. "
                    "curl -H 'Content-Type: image/jpeg' --data-binary @photo.jpg URL)")
            raise HTTPError(415, f"Content-Type must be image/* or application/octet-stream, "
                                 f"not {ctype or 'none'}{hint if form else ''}")
        top = query.get("top", [None])[0]
        if top is not None and not (top.isdigit() and 1 <= int(top) <= 1000):
            raise HTTPError(400, "top must be a whole number from 1 to 1000")
        data = self.read_body()
        doc = self.app.classify(data, query.get("name", [None])[0], int(top) if top else None)
        self.send_json(200, doc)

    def read_body(self):
        """The request's body, within the size limit and the time limit."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raise HTTPError(411, "send a Content-Length (chunked uploads are not accepted)")
        length = self.headers.get("Content-Length")
        if length is None:
            raise HTTPError(411, "send a Content-Length")
        if not length.strip().isdigit():
            raise HTTPError(400, f"bad Content-Length: {length[:40]!r}")
        length = int(length)
        if length > self.app.max_bytes:
            raise HTTPError(413, f"the upload is {length} bytes; the limit is {self.app.max_bytes}")
        if length == 0:
            raise HTTPError(400, "the upload is empty")
        # One deadline for the whole body: a client trickling a byte at a
        # time would otherwise hold its thread forever.
        deadline = time.monotonic() + self.app.timeout
        parts, got = [], 0
        while got < length:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HTTPError(408, f"the upload took over {self.app.timeout:g} s ({got} of {length} bytes)")
            self.connection.settimeout(left)
            try:
                part = self.rfile.read1(min(length - got, 1 << 16))
            except socket.timeout:
                raise HTTPError(408, f"the upload took over {self.app.timeout:g} s ({got} of {length} bytes)") from None
            if not part:
                raise HTTPError(400, f"the upload ended after {got} of {length} bytes")
            parts.append(part)
            got += len(part)
        self.connection.settimeout(self.app.timeout)
        return b"".join(parts)

    def send_json(self, status, doc, close=False, headers=None):
        body = (json.dumps(doc, allow_nan=False) + "\n").encode()
        self.send_body(status, body, "application/json", headers, close)

    def send_body(self, status, body, ctype, headers=None, close=False):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (a malformed request line, 501), as JSON."""
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # a garbled request line: answer with a status line all the same
        self.send_json(code, {"error": message or self.responses.get(code, ("error",))[0]}, close=True)

    def log_request(self, code="-", size="-"):
        if str(code).isdigit() and int(code) >= 400:
            super().log_request(code, size)  # only failures: a phone polling the camera is not news

    def log_message(self, fmt, *args):
        if fmt.startswith("Request timed out"):
            return  # an idle kept-alive connection closing (a page left open), or a stalled client: not news
        self.server.log(f"{self.address_string()} {fmt % args}")


_BUSY_BODY = b'{"error": "too many connections at once: try again"}\n'
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))


class Server(ThreadingHTTPServer):
    """A threading HTTP server that refuses connections beyond MAX_CONNECTIONS."""

    daemon_threads = True

    def __init__(self, address, app, log=None, max_connections=MAX_CONNECTIONS):
        self.app = app
        self.log = log or (lambda msg: None)
        self._slots = threading.BoundedSemaphore(max_connections)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            try:
                request.sendall(BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def server_close(self):
        super().server_close()
        if self.app.camera is not None:
            self.app.camera.close()


def make_server(model, host="127.0.0.1", port=8080, top=5, max_bytes=MAX_BYTES, timeout=TIMEOUT,
                camera=None, camera_fps=None, log=None, max_connections=MAX_CONNECTIONS):
    """A Server for ``model`` bound to ``host:port`` (port 0: any free port);
    ``camera`` is a frames.FrameSource for the live view.  Call
    ``serve_forever()`` on it, and ``server_close()`` after."""
    app = App(model, top, max_bytes, timeout)
    try:
        server = Server((host, port), app, log, max_connections)
    except OSError as e:
        if camera is not None:
            camera.close()
        raise DeviceNetError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    if camera is not None:
        app.camera = Camera(model, camera, top, camera_fps)
    return server
