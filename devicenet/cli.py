"""The ``devicenet`` command: a thin layer over the Python API.

Results go to stdout (``--json`` for scripts); warnings, progress and errors
go to stderr, errors as one line and a non-zero exit, never a traceback.
"""

import csv
import errno
import inspect
import io
import json
import os
import sys

import click

from . import __version__, report
from .errors import INTERRUPTED, DeviceNetError, warn
from .progress import Phases, Progress, isatty

BACKENDS = click.Choice(["cpu", "opencl", "auto"])
#: the environment variables devicenet reads, for --help and docs/CLI.md
ENVIRONMENT = (
    ("DEVICENET_MODEL", "the model --model defaults to"),
    ("DEVICENET_PORT", "the board profile --port defaults to"),
    ("DEVICENET_OPENCL_DEVICE", "the OpenCL device --device defaults to"),
    ("DEVICENET_CACHE_DIR", "where built OpenCL programs are cached (~/.cache/devicenet)"),
    ("DEVICENET_PORTS", "a folder of extra board profiles"),
    ("DEVICENET_SYSROOT", "read the board's files under this root instead of /"),
    ("DEVICENET_MACHINE", "the machine type, instead of uname -m"),
    ("DEVICENET_NATIVE", "0 turns the compiled CPU kernels off"),
    ("DEVICENET_KERNEL_ISA", "cap the kernels' instruction set: scalar, sse2, avx2 or neon"),
)


def fail(msg):
    raise click.ClickException(msg)


def echo_json(doc):
    """Print a command's JSON document (``report.document``: ``schema``
    first, floats rounded)."""
    # Never NaN or Infinity: they are not JSON (RFC 8259), and nothing a
    # command reports should hold them.
    click.echo(json.dumps(report.document(doc), indent=2, allow_nan=False))


def say(msg):
    """Print a message on stderr, so stdout stays clean for --json."""
    click.echo(msg, err=True)


def quiet_option(f):
    return click.option("--quiet", "-q", is_flag=True, help="No progress display on stderr.")(f)


def check_threads(threads):
    """Warn when --threads asks for more threads than there are CPUs: they
    then take turns on the cores and every layer waits for the slowest."""
    from .threads import default_threads
    cpus = default_threads()  # the CPUs this process may run on
    if threads and threads > cpus:
        warn(f"--threads {threads} is more than the {cpus} CPUs here, which makes every layer slower; "
             f"use --threads {cpus} or fewer")


def refuse_existing(output, force):
    """Fail unless ``output`` is new or ``--force`` allows replacing it."""
    if os.path.exists(output) and not force:
        fail(f"{output} exists; pass --force to replace it")


def model_options(f):
    """--model, --backend, --threads, --port, --device: how to load a model."""
    f = click.option("--device", envvar="DEVICENET_OPENCL_DEVICE", show_envvar=True, metavar="NAME",
                     help="OpenCL device: an index or part of the device name (see `devicenet info --devices`).")(f)
    f = click.option("--port", envvar="DEVICENET_PORT", show_envvar=True, metavar="NAME",
                     help="Board profile to use instead of detecting the board (see `devicenet ports`).")(f)
    f = click.option("--threads", type=click.IntRange(1, 256), help="Threads for BLAS and workers.")(f)
    f = click.option("--backend", type=BACKENDS,
                     help="Where to run (default: the board profile's choice); auto: a GPU if there is one.")(f)
    f = click.option("--model", "model_path", type=click.Path(dir_okay=False), envvar="DEVICENET_MODEL",
                     show_envvar=True, help="A .dnet model (default: the shipped EfficientNet-Lite0).")(f)
    return f


def load_model(model_path, backend, threads, port, device, **kw):
    from .model import load
    check_threads(threads)
    try:
        return load(model_path, backend=backend, threads=threads, port=port, device=device, **kw)
    except DeviceNetError as e:
        fail(str(e))


class Commands(click.Group):
    """The command group, run as click's standalone mode does, except that
    Ctrl-C exits with status 130 and one line on stderr rather than
    ``Aborted!`` and status 1 (the status of "an image failed")."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except (click.Abort, KeyboardInterrupt):
            interrupted()
        except OSError as e:
            if e.errno != errno.EPIPE:
                raise
            # stdout closed early (| head): no traceback, now or at exit
            sys.stdout = click.utils.PacifyFlushWrapper(sys.stdout)
            sys.stderr = click.utils.PacifyFlushWrapper(sys.stderr)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


def interrupted():
    """Leave after Ctrl-C: status 130, one line, no traceback."""
    try:
        click.echo("Interrupted.", err=True)
    finally:
        sys.exit(INTERRUPTED)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="devicenet")
def main():
    """devicenet: image recognition on small boards with eight-bit weights.

    \b
    Classify the bundled photo, then your own:
        devicenet classify --demo
        devicenet classify photo.jpg photos/
    Measure this board:
        devicenet benchmark
    Convert a trained model:
        devicenet convert model.onnx model.dnet
    Classify a camera or a video continuously; a page for a phone:
        devicenet watch /dev/video0
        devicenet serve --host 0.0.0.0
    """


main.help = inspect.cleandoc(main.help) + "\n\n\b\nEnvironment:" + "".join(f"\n  {name:24s} {what}" for name, what in ENVIRONMENT)


def expand_or_fail(args, stdin_ok=False):
    """The images named by ``args`` (files, folders, patterns; ``-`` for
    stdin where ``stdin_ok``), after one warning for what the folders held
    besides images."""
    from .inputs import expand
    try:
        found = expand(args, stdin_ok)
    except DeviceNetError as e:
        raise click.UsageError(str(e)) from None
    if found.skipped:
        warn(found.summary())
    if not found.paths:
        fail(f"no images in {', '.join(args)}")
    return found.paths


def output_options(f):
    """--json, --jsonl, --csv: one ``fmt`` (None: text for people)."""
    f = click.option("--csv", "fmt", flag_value="csv",
                     help="Print CSV: path, rank, index, label, probability, latency_ms; a row per label.")(f)
    f = click.option("--jsonl", "fmt", flag_value="jsonl",
                     help="Print one JSON line per image as soon as it is classified.")(f)
    f = click.option("--json", "fmt", flag_value="json", help="Print one JSON document at the end.")(f)
    return f


@main.command()
@click.argument("images", nargs=-1, type=click.Path())
@click.option("--demo", is_flag=True, help="Also classify the photo shipped with devicenet (an espresso, CC0).")
@click.option("--top", "-n", default=5, show_default=True, type=click.IntRange(1, 1000),
              help="How many labels to print per image.")
@click.option("--oversample", is_flag=True, help="Average ten crops (corners, centre, mirrors): slower, steadier.")
@output_options
@quiet_option
@model_options
def classify(images, demo, top, oversample, fmt, quiet, model_path, backend, threads, port, device):
    """Print the top labels and the latency for each image.

    IMAGES are files, folders (searched recursively; files that are not
    images are skipped and counted), glob patterns (expanded here too, so
    quoting them works) and - for one image on stdin.  A file that cannot
    be read is reported and the others are still classified; the exit
    status is 1 if any image failed.

    \b
    Examples:
        devicenet classify --demo
        devicenet classify photo.jpg photos/
        devicenet classify --top 3 --json 'photos/*.jpg'
        devicenet classify --jsonl photos/ | grep espresso
        curl -s https://example.org/cat.jpg | devicenet classify -
        devicenet classify --model mine.dnet --backend opencl cat.png
    """
    from .bench import sample_image
    from .inputs import STDIN, read_stdin
    if not images and not demo:
        raise click.UsageError("give IMAGES (files, folders, patterns, - for stdin) or --demo")
    found = expand_or_fail(list(images) + ([sample_image()] if demo else []), stdin_ok=True)
    model = load_model(model_path, backend, threads, port, device)
    try:
        images = [read_stdin() if p == STDIN else p for p in found]
        run_classify(model, images, top, oversample, fmt, quiet)
    except DeviceNetError as e:
        fail(str(e))


def run_classify(model, images, top, oversample, fmt, quiet):
    """Classify ``images`` (paths, and stdin's file object) and print each
    result as ``fmt`` asks."""
    from .image import image_name
    out = Output(model, fmt)
    # A bar only where it helps: when the results come at the end (--json)
    # or go to a pipe while a person watches stderr; results printed as they
    # come are their own progress.
    watching = fmt == "json" or (isatty(sys.stderr) and not isatty(sys.stdout))
    bar = Progress("classify", len(images), quiet=quiet or not watching or len(images) < 2, plain_after=2.0)
    failed = 0
    try:
        for done, res in enumerate(model.classify_many(images, top=top, oversample=oversample), 1):
            # Kept before its error is shown: Ctrl-C right after the line must not lose it.
            out.add(res)
            if isinstance(res, DeviceNetError):
                failed += 1
                bar.close()
                click.echo(f"Error: {res}", err=True)
            bar.update(done, image_name(images[done - 1]))
    except KeyboardInterrupt:
        # What was classified is kept: --json prints it, marked as cut short.
        bar.close()
        out.finish(interrupted=True)
        raise
    bar.close()
    out.finish()
    if failed:
        sys.exit(1)


class Output:
    """Prints classify's results: text, one JSON document at the end, JSON
    lines or CSV rows as each result comes (flushed, so a pipe sees it)."""

    def __init__(self, model, fmt):
        self.model, self.fmt, self.results = model, fmt, []
        if fmt is None:
            click.echo(f"{model.name} on {model.backend}: {report.device_name(model)}")
        elif fmt == "csv":
            self._csv([report.CSV_FIELDS])

    def add(self, res):
        if self.fmt == "json":
            self.results.append(report.result_json(res))
        elif self.fmt == "jsonl":
            click.echo(json.dumps(report.result_json(res), allow_nan=False))  # echo flushes: a pipe sees it now
        elif self.fmt == "csv":
            self._csv(report.csv_rows(res))
        elif not isinstance(res, DeviceNetError):
            print_classification(res)

    def _csv(self, rows):
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        click.echo(buf.getvalue(), nl=False)

    def finish(self, interrupted=False):
        if self.fmt == "json":
            click.echo(json.dumps(report.classify_document(self.model, self.results, interrupted),
                                  indent=2, allow_nan=False))


def print_classification(res):
    click.echo(res.image)
    for p in res.predictions:
        click.echo(f"  {p.probability * 100:6.2f}%  {p.label}")
    lat = res.latency_ms
    setup = f" (+ {lat['setup']:.1f} ms one-time setup)" if lat["setup"] >= 0.5 else ""
    click.echo(f"  latency: decode {lat['decode']:.1f} ms, preprocess {lat['preprocess']:.1f} ms, "
               f"inference {lat['inference']:.1f} ms{setup}, total {lat['total']:.1f} ms")


def show_devices(as_json):
    """Print the OpenCL devices ``--device`` can name (by index or name),
    marking the one ``--backend auto`` takes."""
    from .backends import OPENCL_MISSING, auto_choice
    try:
        from .backends.opencl import list_devices
        found = list_devices()
    except ImportError:
        fail(OPENCL_MISSING)
    except DeviceNetError as e:
        fail(str(e))
    chosen, why = auto_choice(found)
    auto = {"backend": "opencl" if chosen else "cpu", "device": chosen["index"] if chosen else None, "reason": why}
    if as_json:
        return echo_json({"devices": [dict(d, auto=d is chosen) for d in found], "auto": auto})
    if not found:
        click.echo("no OpenCL devices")
    for d in found:
        click.echo(f"{'*' if d is chosen else ' '} {d['index']}: {d['device']}  ({d['type']}, {d['platform']}, "
                   f"{d['version']}, {d['compute_units']} compute units, {d['global_mem_mb']} MB)")
    click.echo(f"(--backend auto: {'* = ' + chosen['device'] if chosen else 'the CPU backend'}; {why})")


def layer_table(graph):
    """The activations ``features --layer`` can name, with op and shape."""
    from .features import feature_layer
    shapes = graph.shapes()
    try:
        default = feature_layer(graph)
    except DeviceNetError:
        default = None
    return [{"name": n.outputs[0], "op": n.op, "shape": list(shapes[n.outputs[0]]),
             "default_feature_layer": n.outputs[0] == default} for n in graph.nodes]


@main.command()
@click.argument("model", required=False, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--tensors", is_flag=True, help="List every tensor.")
@click.option("--layers", is_flag=True, help="List every layer (the names `features --layer` and `learn --layer` take).")
@click.option("--devices", is_flag=True,
              help="List the OpenCL platforms and devices instead, marking the one --backend auto takes.")
def info(model, as_json, tensors, layers, devices):
    """Show a model's metadata, ops, tensors, encodings and size.

    MODEL defaults to the shipped model (or DEVICENET_MODEL).
    """
    if devices:
        return show_devices(as_json)
    from . import format as dnet
    from .model import default_model_path
    from .inspect import describe
    try:
        path = model or default_model_path()
        graph = dnet.load(path)
        doc = describe(graph, path)
        if layers:
            doc["layers"] = layer_table(graph)
    except DeviceNetError as e:
        fail(str(e))
    if as_json:
        echo_json(doc)
        return
    click.echo(f"{doc['name']}  ({size_text(doc['file_bytes'])}, {doc['path']})")
    click.echo(f"  format      {doc['format_version']}")
    output = (f"{doc['classes']} classes" if doc["classes"] is not None else
              f"{'x'.join(map(str, doc['output_shape'][1:]))} feature map (not class scores)")
    click.echo(f"  input       {'x'.join(map(str, doc['input_shape']))} NHWC, output {output}")
    pre = doc.get("preprocess") or {}
    if pre:
        click.echo(f"  preprocess  resize {pre.get('resize')}, crop {pre.get('crop')}, mean {pre.get('mean')}, "
                   f"std {pre.get('std')}, {pre.get('channel_order', 'RGB')}")
    click.echo(f"  parameters  {doc['parameters']:,} ({size_text(doc['float32_bytes'])} as float32, "
               f"{ratio_text(doc['float32_bytes'], doc['file_bytes'], 'here')})")
    click.echo("  encodings   " + ", ".join(f"{k}: {v:,} weights" for k, v in doc["encodings"].items()))
    click.echo("  ops         " + ", ".join(f"{k} x{v}" for k, v in doc["ops"].items()))
    q = doc.get("quantization") or {}
    if q:
        click.echo(f"  quantization {q.get('scheme')}" + (f": {q['summary']}" if q.get("summary") else ""))
        batch = q.get("calibration") or {}
        if batch.get("sha256"):  # tells a rebuild whether it measured on the same inputs
            where = "built-in photo variants" if batch.get("source") == "built-in" else "photos from a folder"
            click.echo(f"    calibrated on {batch.get('inputs')} {where} (batch sha256 {str(batch['sha256'])[:12]}...)")
        for name, enc in (q.get("layers") or {}).items():
            if enc != q.get("default"):
                click.echo(f"    {name}: {enc}")
    integer = doc.get("integer")
    if integer and integer["nodes"]:
        click.echo(f"  integer     {len(integer['nodes'])} layers in eight-bit arithmetic "
                   f"({integer['weighted_layers']} of {integer['of_weighted_layers']} weighted layers): "
                   + ", ".join(integer["nodes"]))
    prov = doc.get("provenance") or {}
    if prov:
        click.echo(f"  source      {prov.get('source')} (sha256 {str(prov.get('source_sha256'))[:12]}...), "
                   f"{prov.get('converter')}")
    click.echo(f"  licence     {doc.get('license')}")
    if tensors:
        for t in doc["tensors"]:
            click.echo(f"    {t['name']:40s} {t['encoding']:8s} {'x'.join(map(str, t['shape']))}")
    if layers:
        click.echo("  layers (for features --layer; * = the default feature layer)")
        for la in doc["layers"]:
            click.echo(f"  {'*' if la['default_feature_layer'] else ' '} {la['name']:40s} {la['op']:16s} "
                       f"{'x'.join(map(str, la['shape']))}")


def size_text(n):
    """A file size for people: bytes, kB or MB (powers of ten)."""
    if n is None:
        return "size unknown"
    if n < 1000:
        return f"{n} bytes"
    return f"{n / 1e3:.1f} kB" if n < 1e6 else f"{n / 1e6:.2f} MB"


def ratio_text(float32_bytes, file_bytes, where):
    """How the file compares with float32 weights: "3.98x smaller here", or
    "larger" for a small model whose header outweighs what 8 bits save."""
    if not file_bytes or not float32_bytes:
        return f"size {where} unknown"
    r = float32_bytes / file_bytes
    return f"{r:.2f}x smaller {where}" if r >= 1 else f"{1 / r:.2f}x larger {where}"


@main.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--weights", default="int8", show_default=True,
              type=click.Choice(["auto", "int8", "int16", "float16", "float32"]),
              help="Encoding of conv and dense weights; auto measures each layer and spends bits where they matter.")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False),
              help="Class names, one per line (default: ImageNet's for 1000-class models).")
@click.option("--name", help="Model name stored in the file.")
@click.option("--input-size", type=click.IntRange(8, 4096), help="Input resolution when the source does not fix it.")
@click.option("--mean", help="Per-channel mean subtracted from pixels, e.g. 127,127,127.")
@click.option("--std", help="Per-channel divisor after the mean, e.g. 128,128,128.")
@click.option("--license", "license_", help="Licence string stored in the file.")
@click.option("--calibrate", type=click.Path(exists=True, file_okay=False),
              help="Folder of your photos for --weights auto (default: a built-in set).")
@click.option("--calibrate-images", type=click.IntRange(1, 1000), default=None,
              help="How many of the calibration photos to measure on [default: 12, 48 with "
                   "--arithmetic auto]; more rank the layers better (docs/ACCURACY.md) and take "
                   "proportionally longer.")
@click.option("--arithmetic", default="float", show_default=True, type=click.Choice(["float", "auto"]),
              help="auto (with --weights auto): run in eight-bit integers the layers where measurement "
                   "on the calibration photos says it costs little, as the shipped Lite0 does "
                   "(docs/ACCURACY.md).")
@click.option("--kl-budget", type=click.FloatRange(0.0), default=None,
              help="How far (KL divergence) --arithmetic auto may move the answers on the calibration "
                   "photos [default: 0.0003].")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@quiet_option
def convert(source, output, weights, labels, name, input_size, mean, std, license_, calibrate, calibrate_images,
            arithmetic, kl_budget, force, as_json, quiet):
    """Convert a trained model (SOURCE: .onnx, or an EfficientNet-Lite .pth) to OUTPUT.dnet.

    The file is written to a temporary name and renamed when complete, so a
    failed or interrupted conversion never leaves a partial model.

    \b
    Examples:
        devicenet convert mobilenetv2.onnx mobilenetv2.dnet
        devicenet convert efficientnet-lite0.pth lite0.dnet --weights auto
        devicenet convert lite0.pth lite0-int.dnet --weights auto --arithmetic auto --calibrate photos/
    """
    from .convert import convert as run_convert
    refuse_existing(output, force)
    pre = {}
    try:
        for key, text in (("mean", mean), ("std", std)):
            if text:
                vals = [float(v) for v in text.split(",")]
                if len(vals) != 3 or (key == "std" and min(vals) <= 0):
                    raise ValueError
                pre[key] = vals
    except ValueError:
        raise click.BadParameter("give three numbers separated by commas (std must be positive)") from None
    progress = Phases(quiet)
    try:
        s = run_convert(source, output, weights=weights, labels=labels, name=name, input_size=input_size,
                        license=license_, preprocess=pre or None, calibrate=calibrate, progress=progress.message,
                        arithmetic=arithmetic, kl_budget=kl_budget, calibrate_images=calibrate_images)
    except DeviceNetError as e:
        fail(str(e))
    finally:
        progress.close()
    if as_json:
        echo_json(s)
        return
    click.echo(f"wrote {output}: {s['name']}, {s['nodes']} ops, {s['parameters']:,} parameters")
    click.echo("  ops: " + ", ".join(f"{k} x{v}" for k, v in s["ops"].items()))
    click.echo(f"  {size_text(s['file_bytes'])}: {ratio_text(s['float32_bytes'], s['file_bytes'], 'than float32')} "
               f"({size_text(s['float32_bytes'])})")


@main.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="Where to write the new .dnet model.")
@click.option("--holdout", default=0.2, show_default=True, type=click.FloatRange(0, 0.9),
              help="Share of each class's photos held out to measure accuracy (0: skip the measurement).")
@click.option("--augment", is_flag=True, help="Also train on ten crops (corners, centre, mirrors) of each photo.")
@click.option("--oversample", is_flag=True,
              help="Score and train on ten crops per photo, as `classify --oversample` does.")
@click.option("--l2", default=1e-2, show_default=True, type=click.FloatRange(1e-8, 1e4),
              help="L2 regularisation strength of the classifier (on standardised features).")
@click.option("--layer", metavar="NAME", help="Feature layer (default: the input of the last dense layer).")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@quiet_option
@model_options
def learn(dataset, output, holdout, augment, oversample, l2, layer, force, as_json, quiet,
          model_path, backend, threads, port, device):
    """Teach the model your own objects: retrain its top layer on DATASET.

    DATASET holds one sub-folder of photos per class (two or more; a
    catch-all such as `_background` is fine); anything else in it (files
    beside the class folders, folders inside them, files that are not
    photos) is ignored and listed in one warning.  Features are cached in
    DATASET/.devicenet-cache by photo content, so re-runs only compute new
    photos.  The new model keeps the base network and ends in the learned
    layer, labelled with the folder names.

    \b
    Examples:
        devicenet learn photos/ -o mine.dnet
        devicenet learn photos/ -o mine.dnet --augment --holdout 0.3
        devicenet classify --model mine.dnet new-photo.jpg
    """
    from .learn import learn as run_learn
    refuse_existing(output, force)
    if not os.path.isdir(os.path.dirname(os.path.abspath(output))):
        fail(f"{output}: its folder does not exist")  # say so before minutes of feature extraction
    model = load_model(model_path, backend, threads, port, device)
    progress = Phases(quiet)
    try:
        doc = run_learn(dataset, output, model, holdout=holdout, augment=augment, oversample=oversample,
                        l2=l2, layer=layer, progress=lambda done, total, path: progress("features", done, total, path),
                        warn=warn)
    except DeviceNetError as e:
        fail(str(e))
    finally:
        progress.close()
    if as_json:
        echo_json(doc)
        return
    classes = doc["classes"]
    click.echo(f"wrote {output}: {len(classes)} classes, {doc['photos']} photos "
               f"(features: {doc['features_computed']} computed, {doc['features_reused']} from the cache)")
    width = max(len(c) for c in classes)
    for c in classes:
        click.echo(f"  {c:<{width}}  {doc['counts'][c]} photos")
    if "accuracy" in doc:
        click.echo(f"held-out accuracy: {doc['accuracy'] * 100:.1f}% of {doc['held_out']} photos")
        click.echo("confusion (rows: true class, columns: predicted):")
        for c, row in zip(classes, doc["confusion"]):
            click.echo(f"  {c:<{width}}  " + " ".join(f"{v:4d}" for v in row))


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="The .npy file to write.")
@click.option("--layer", metavar="NAME", help="Which activation (default: the penultimate features; "
                                              "`devicenet info --layers` lists them).")
@click.option("--oversample", is_flag=True, help="Average the features of ten crops (corners, centre, mirrors).")
@quiet_option
@model_options
def features(images, output, layer, oversample, quiet, model_path, backend, threads, port, device):
    """Save the raw features of each image to OUTPUT.npy, one row per image.

    IMAGES are files, folders (searched recursively) and glob patterns, as
    for classify; the rows follow their order.

    \b
    Examples:
        devicenet features photos/ -o feats.npy
        devicenet features cat.png --layer head -o head.npy
    """
    import numpy as np
    from .model import prefetched
    paths = expand_or_fail(images)
    model = load_model(model_path, backend, threads, port, device)
    rows = []
    try:
        with Progress("features", len(paths), quiet) as bar:
            try:
                # The next photo decodes on a worker thread while this one runs.
                batches = prefetched(lambda image: model.prepare(image, oversample)[0], paths)
                for i, (image, batch) in enumerate(batches):
                    rows.append(model.features(batch.result(), layer).mean(axis=0))
                    bar.update(i + 1, image)
            except KeyboardInterrupt:
                bar.close()
                # Keep the rows computed (one per image, in order); status 130 says they are not all.
                if rows:
                    np.save(output, np.stack(rows))
                    say(f"interrupted: wrote {output} with the first {len(rows)} of {len(paths)} rows")
                raise
        np.save(output, np.stack(rows))
    except DeviceNetError as e:
        fail(str(e))
    except OSError as e:
        fail(f"{output}: cannot write ({e.strerror or e})")
    say(f"wrote {output}: {len(rows)} x {rows[0].shape[0]} float32")


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--reference", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The float model to compare with: an .onnx file (needs onnxruntime) or a .dnet.")
@click.option("--images", required=True, multiple=True, type=click.Path(),
              help="A folder of photos (searched recursively), a photo or a glob pattern; repeat for more.")
@click.option("--worst", default=5, show_default=True, type=click.IntRange(0, 1000),
              help="How many of the furthest-off photos to list.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@quiet_option
def evaluate(model, reference, images, worst, as_json, quiet):
    """Compare MODEL with a float reference on your photos.

    Prints top-1 agreement, mean top-5 overlap, mean and max logit error and
    the photos where the two differ most.

    \b
    Example:
        devicenet evaluate lite0.dnet --reference lite0-float32.dnet --images photos/
    """
    from .evaluate import evaluate as run_evaluate
    paths = expand_or_fail(images)
    progress = Phases(quiet)
    try:
        r = run_evaluate(model, reference, paths,
                         progress=lambda done, total, path: progress("evaluate", done, total, path))
    except DeviceNetError as e:
        fail(str(e))
    finally:
        progress.close()
    for msg in r.failed:
        warn(f"skipped {msg}")
    if as_json:
        echo_json(r.to_json(worst))
        return
    click.echo(f"{len(r.photos)} photos: top-1 agreement {r.top1_agreement * 100:.1f}%, "
               f"top-5 overlap {r.top5_overlap * 100:.1f}%")
    click.echo(f"  logit error: mean {r.mean_logit_error:.4f}, max {r.max_logit_error:.4f}")
    click.echo(f"  changed labels the reference was sure of (top-1 ahead by 0.1 or more): "
               f"{len(r.confident_flips())}")
    if worst:
        click.echo("  furthest from the reference:")
        for p in r.worst(worst):
            click.echo(f"    {p.image}: {r.label(p.top5[0])} (reference {r.label(p.reference_top5[0])}), "
                       f"top-5 overlap {p.overlap * 100:.0f}%, max logit error {p.max_error:.3f}")


@main.command()
@click.option("--explain", is_flag=True, help="Show which facts matched and what was decided.")
@click.option("--port", envvar="DEVICENET_PORT", metavar="NAME", help="Explain this profile instead of the detected one.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def ports(explain, port, as_json):
    """List the board profiles and mark the one detected here.

    Detection reads the device tree (model, compatible) and /proc/cpuinfo
    under DEVICENET_SYSROOT (default /) and the machine type
    (DEVICENET_MACHINE overrides it).  Extra profiles can go in the folder
    DEVICENET_PORTS names.  --explain also says which BLAS numpy uses.
    """
    from . import blas
    from . import ports as boards
    try:
        found = boards.detect(name=port)
        table = boards.profiles()
    except DeviceNetError as e:
        fail(str(e))
    if as_json:
        echo_json({"selected": found.profile.name, "note": found.note, "facts": found.facts.to_json(),
                   "blas": blas.numpy_blas().to_json(), "profiles": [p.to_json() for p in table.values()]})
        return
    if explain:
        for line in boards.explain(found):
            click.echo(line)
        for line in blas.report():
            click.echo(line)
        return
    for p in table.values():
        mark = "*" if p.name == found.profile.name else " "
        click.echo(f"{mark} {p.name:21s} {p.title:34s} {'/'.join(p.backends):11s} "
                   f"{p.threads or 'all':>3} threads  {p.residency}")
    click.echo(f"(* = {'chosen' if found.forced else 'detected'}: {found.profile.name}"
               f"{'; ' + found.note if found.note and not found.forced else ''})")


@main.command()
@click.option("--runs", default=20, show_default=True, type=click.IntRange(1, 100000), help="Timed runs.")
@click.option("--warmup", default=3, show_default=True, type=click.IntRange(0, 10000), help="Untimed runs first.")
@click.option("--net", type=click.Choice(["alexnet"]),
              help="Time a built-in network instead: alexnet (AlexNet-shaped, 61M 8-bit weights, pseudo-random).")
@click.option("--layers", is_flag=True, help="Add a per-layer table (op, shape, ms, % of total).")
@click.option("--residency", type=click.Choice(["resident", "streamed"]),
              help="Decode weights at load or per layer (default: the board profile's choice).")
@click.option("--image", type=click.Path(exists=True, dir_okay=False), help="Photo to run on (default: a bundled one).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--save", type=click.Path(dir_okay=False), help="Also write the JSON document to this file.")
@click.option("--table", "tables", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Print a Markdown table from saved results (repeat, or list files as arguments).")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@quiet_option
@model_options
def benchmark(runs, warmup, net, layers, residency, image, as_json, save, tables, files, quiet,
              model_path, backend, threads, port, device):
    """Time the shipped model (or --net alexnet) on this board.

    Prints load time, first-inference time, steady-state latency, images per
    second, peak memory, and where the board stands against published
    timings.  With --table, turns saved results (FILES) into one Markdown
    comparison table instead.

    \b
    Examples:
        devicenet benchmark
        devicenet benchmark --net alexnet --layers
        devicenet benchmark --runs 50 --save pi2.json
        devicenet benchmark --table pi2.json bbb.json tk1.json
    """
    from . import bench
    try:
        if tables or files:
            if not tables:
                raise click.UsageError("FILES are only read with --table")
            for line in bench.markdown_table([bench.read_result(p) for p in tables + files]):
                click.echo(line)
            return
        check_threads(threads)
        # Quiet for a second: a quick benchmark needs no progress.
        progress = Phases(quiet, delay=1.0, plain_after=1.0)
        result = bench.run(None if net else model_path, net, port=port, backend=backend, threads=threads,
                           device=device, residency=residency, runs=runs, warmup=warmup, layers=layers,
                           image=image, progress=progress)
        progress.close()
        if save:
            with open(save, "w") as f:
                json.dump(report.document(result), f, indent=2)
    except DeviceNetError as e:
        fail(str(e))
    except OSError as e:
        fail(f"{save}: {e.strerror}")
    if as_json:
        echo_json(result)
        return
    for line in bench.report(result) + ([""] + bench.layer_lines(result) if layers else []):
        click.echo(line)


from .cli_live import serve, watch  # noqa: E402  (the live commands import this module's helpers)
main.add_command(watch)
main.add_command(serve)


if __name__ == "__main__":
    main()
