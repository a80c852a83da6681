"""The live commands: ``watch`` (a camera or video, continuously) and
``serve`` (classification over HTTP, with a page for a phone)."""

import json

import click

from . import report
from .cli import fail, load_model, model_options, say
from .errors import DeviceNetError, warn


def open_frames(source, size, fps=None):
    from .frames import open_source, parse_size
    try:
        return open_source(source, parse_size(size) if size else None, fps)
    except DeviceNetError as e:
        fail(str(e))


def source_options(f):
    """--size: what to ask a camera for."""
    return click.option("--size", metavar="WxH", help="Camera capture size, e.g. 640x480 (default: the camera's).")(f)


@click.command()
@click.argument("source")
@click.option("--top", "-n", default=3, show_default=True, type=click.IntRange(1, 1000),
              help="How many labels to show per frame.")
@click.option("--every", default=1, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Classify every N-th frame only.")
@click.option("--fps", type=click.FloatRange(0, 1000, min_open=True),
              help="Classify at most this many frames a second.")
@click.option("--jsonl", is_flag=True, help="Print one JSON line per classified frame, then one with the summary.")
@source_options
@model_options
def watch(source, top, every, fps, jsonl, size, model_path, backend, threads, port, device):
    """Classify a camera or a video continuously, always the newest frame.

    SOURCE is a V4L2 camera (/dev/video0, or just 0), the Raspberry Pi
    camera (picamera, or picamera:1), or a video file (played at its own
    frame rate).  Frames that arrive while the network is busy are dropped,
    never queued.  The top labels are printed when they change, with the
    frames classified per second and the latency; Ctrl-C (or the end of a
    video file) prints a summary.

    \b
    Examples:
        devicenet watch /dev/video0
        devicenet watch picamera --fps 2
        devicenet watch clip.mp4 --jsonl > labels.jsonl
    """
    from .watch import Watch
    model = load_model(model_path, backend, threads, port, device)
    stream = Watch(model, open_frames(source, size), top=top, every=every, fps=fps)
    shown = None
    try:
        for r in stream:
            if jsonl:
                click.echo(json.dumps(report.frame_json(r, stream.source.name), allow_nan=False))
                continue
            labels = [p.label for p in r.classification.predictions]
            if labels != shown:
                shown = labels
                click.echo(watch_line(r))
    except KeyboardInterrupt:
        stream.close()
        print_summary(stream.summary(interrupted=True), jsonl)
        raise
    except DeviceNetError as e:
        print_summary(stream.summary(), jsonl)
        fail(str(e))
    print_summary(stream.summary(), jsonl)


def watch_line(r):
    from .watch import frame_latency
    t = f"{r.frame.time_s:7.2f}s" if r.frame.time_s is not None else f"#{r.frame.index}"
    labels = ", ".join(f"{p.label} {p.probability * 100:.0f}%" for p in r.classification.predictions)
    return (f"{t}  {labels}  ({r.fps:.1f} frames/s, {frame_latency(r.classification):.0f} ms, "
            f"frame {r.frame.index})")


def print_summary(s, jsonl):
    if jsonl:
        click.echo(json.dumps({"summary": s}, allow_nan=False))
        return
    lat = s["latency_ms"]
    pct = ", ".join(f"{k} {v:.1f}" for k, v in lat.items() if v is not None) or "none"
    click.echo(f"{s['source']}: {s['frames_grabbed']} frames grabbed, {s['frames_classified']} classified, "
               f"{s['frames_dropped']} dropped, {s['frames_skipped']} skipped in {s['seconds']:.1f} s "
               f"({s['fps']:.1f} frames/s); latency ms: {pct}")


def serve_model_options(f):
    """model_options, with the board profile as --board: serve's --port is the TCP port."""
    f = model_options(f)
    f.__click_params__ = [p for p in f.__click_params__ if p.name != "port"]
    return click.option("--board", "port", envvar="DEVICENET_PORT", metavar="NAME",
                        help="Board profile to use instead of detecting the board (see `devicenet ports`).")(f)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 lets other machines (a phone) in: anyone on the network.")
@click.option("--port", "http_port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port (0: any free port).")
@click.option("--top", "-n", default=5, show_default=True, type=click.IntRange(1, 1000),
              help="How many labels to answer per image (a request's ?top=N overrides it).")
@click.option("--max-bytes", default=20 * 1024 * 1024, show_default=True, type=click.IntRange(1, 1 << 31),
              help="The largest upload accepted.")
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="Seconds a client may take to send a request.")
@click.option("--camera", "camera_source", metavar="SOURCE",
              help="Also show a live view of this camera or video with its labels (as `watch SOURCE`).")
@click.option("--camera-fps", default=5.0, show_default=True, type=click.FloatRange(0, 1000, min_open=True),
              help="Classify the camera at most this many times a second (the rest is left to uploads).")
@source_options
@serve_model_options
def serve(host, http_port, top, max_bytes, timeout, camera_source, camera_fps, size,
          model_path, backend, threads, port, device):
    """Classify photos over HTTP, with a page for a phone.

    \b
    GET  /            a page: take or pick a photo, see its labels
    POST /classify    image bytes in (Content-Type image/*), the JSON of
                      `classify --json` out; ?top=N, ?name=NAME
    GET  /health      {"status": "ok", ...}
    GET  /camera.jpg  with --camera: the newest frame
    GET  /camera.json with --camera: its newest labels

    \b
    Examples:
        devicenet serve
        devicenet serve --host 0.0.0.0 --camera /dev/video0
        curl -H "Content-Type: image/jpeg" --data-binary @photo.jpg http://127.0.0.1:8080/classify
    """
    from .serve import exposure_warning, make_server
    model = load_model(model_path, backend, threads, port, device)
    camera = open_frames(camera_source, size) if camera_source else None
    try:
        server = make_server(model, host, http_port, top=top, max_bytes=max_bytes, timeout=timeout,
                             camera=camera, camera_fps=camera_fps, log=say)
    except DeviceNetError as e:
        fail(str(e))
    warning = exposure_warning(host)
    if warning:
        warn(warning)
    bound_host, bound_port = server.server_address[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    say(f"serving {model.name} ({model.backend}) on http://{shown}:{bound_port}/ (Ctrl-C to stop)")
    try:
        server.serve_forever()
    finally:
        server.server_close()
