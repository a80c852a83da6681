"""The ``devicenet`` command: a thin layer over the Python API.

Results go to stdout (``--json`` for scripts); warnings, progress and errors
go to stderr, errors as one line and a non-zero exit, never a traceback.
"""

import errno
import json
import os
import sys

import click

from . import __version__
from .errors import INTERRUPTED, DeviceNetError

BACKENDS = click.Choice(["cpu", "opencl", "auto"])


def fail(msg):
    raise click.ClickException(msg)


def echo_json(doc):
    # Never NaN or Infinity: they are not JSON (RFC 8259), and nothing a
    # command reports should hold them.
    click.echo(json.dumps(doc, indent=2, allow_nan=False))


def say(msg):
    """Print progress or a warning on stderr, so stdout stays clean for --json."""
    click.echo(msg, err=True)


def refuse_existing(output, force):
    """Fail unless ``output`` is new or ``--force`` allows replacing it."""
    if os.path.exists(output) and not force:
        fail(f"{output} exists; pass --force to replace it")


def model_options(f):
    """--model, --backend, --threads, --port, --device: how to load a model."""
    f = click.option("--device", envvar="DEVICENET_OPENCL_DEVICE", metavar="NAME",
                     help="OpenCL device: an index or part of the device name.")(f)
    f = click.option("--port", envvar="DEVICENET_PORT", metavar="NAME",
                     help="Board profile to use instead of detecting the board (see `devicenet ports`).")(f)
    f = click.option("--threads", type=click.IntRange(1, 256), help="Threads for BLAS and workers.")(f)
    f = click.option("--backend", type=BACKENDS, help="Where to run (default: the board profile's choice).")(f)
    f = click.option("--model", "model_path", type=click.Path(dir_okay=False), envvar="DEVICENET_MODEL",
                     help="A .dnet model (default: the shipped EfficientNet-Lite0).")(f)
    return f


def load_model(model_path, backend, threads, port, device, **kw):
    from .model import load
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
    Classify a photo with the shipped ImageNet model:
        devicenet classify photo.jpg
    Measure this board:
        devicenet benchmark
    Convert a trained model:
        devicenet convert model.onnx model.dnet
    """


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--top", "-n", default=5, show_default=True, type=click.IntRange(1, 1000),
              help="How many labels to print per image.")
@click.option("--oversample", is_flag=True, help="Average ten crops (corners, centre, mirrors): slower, steadier.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@model_options
def classify(images, top, oversample, as_json, model_path, backend, threads, port, device):
    """Print the top labels and the latency for each IMAGE.

    A file that cannot be read is reported and the others are still
    classified; the exit status is 1 if any image failed.

    \b
    Examples:
        devicenet classify photo.jpg
        devicenet classify --top 3 --json photos/*.jpg
        devicenet classify --model mine.dnet --backend opencl cat.png
    """
    model = load_model(model_path, backend, threads, port, device)
    results, failed = [], 0
    try:
        for res in model.classify_many(images, top=top, oversample=oversample):
            if isinstance(res, DeviceNetError):
                failed += 1
                results.append({"image": res.image, "error": str(res)})
                click.echo(f"Error: {res}", err=True)
                continue
            results.append(res.to_json())
            if not as_json:
                print_classification(res)
    except DeviceNetError as e:
        fail(str(e))
    except KeyboardInterrupt:
        # What was classified is kept: --json prints it, marked as cut short.
        if as_json:
            echo_json({"model": model.name, "backend": model.backend, "results": results, "interrupted": True})
        raise
    if as_json:
        echo_json({"model": model.name, "backend": model.backend, "results": results})
    if failed:
        sys.exit(1)


def print_classification(res):
    click.echo(res.image)
    for p in res.predictions:
        click.echo(f"  {p.probability * 100:6.2f}%  {p.label}")
    lat = res.latency_ms
    setup = f" (+ {lat['setup']:.1f} ms one-time setup)" if lat["setup"] >= 0.5 else ""
    click.echo(f"  latency: decode {lat['decode']:.1f} ms, preprocess {lat['preprocess']:.1f} ms, "
               f"inference {lat['inference']:.1f} ms{setup}, total {lat['total']:.1f} ms")


def show_devices(as_json):
    """Print the OpenCL devices ``--device`` can name (by index or name)."""
    try:
        from .backends.opencl import list_devices
        found = list_devices()
    except ImportError:
        fail('pyopencl is not installed (pip install pyopencl, or from a checkout: pip install -e ".[opencl]")')
    except DeviceNetError as e:
        fail(str(e))
    if as_json:
        return echo_json({"devices": found})
    if not found:
        click.echo("no OpenCL devices")
    for d in found:
        click.echo(f"{d['index']}: {d['device']}  ({d['type']}, {d['platform']}, {d['version']}, "
                   f"{d['compute_units']} compute units, {d['global_mem_mb']} MB)")


@main.command()
@click.argument("model", required=False, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--tensors", is_flag=True, help="List every tensor.")
@click.option("--devices", is_flag=True, help="List the OpenCL platforms and devices instead.")
def info(model, as_json, tensors, devices):
    """Show a model's metadata, ops, tensors, encodings and size.

    MODEL defaults to the shipped model.
    """
    if devices:
        return show_devices(as_json)
    from . import format as dnet
    from .model import default_model_path
    from .inspect import describe
    try:
        path = model or default_model_path()
        doc = describe(dnet.load(path), path)
    except DeviceNetError as e:
        fail(str(e))
    if as_json:
        echo_json(doc)
        return
    click.echo(f"{doc['name']}  ({doc['file_bytes'] / 1e6:.2f} MB, {doc['path']})")
    click.echo(f"  format      {doc['format_version']}")
    output = (f"{doc['classes']} classes" if doc["classes"] is not None else
              f"{'x'.join(map(str, doc['output_shape'][1:]))} feature map (not class scores)")
    click.echo(f"  input       {'x'.join(map(str, doc['input_shape']))} NHWC, output {output}")
    pre = doc.get("preprocess") or {}
    if pre:
        click.echo(f"  preprocess  resize {pre.get('resize')}, crop {pre.get('crop')}, mean {pre.get('mean')}, "
                   f"std {pre.get('std')}, {pre.get('channel_order', 'RGB')}")
    click.echo(f"  parameters  {doc['parameters']:,} ({doc['float32_bytes'] / 1e6:.2f} MB as float32, "
               f"{doc['compression']}x smaller here)")
    click.echo("  encodings   " + ", ".join(f"{k}: {v:,} weights" for k, v in doc["encodings"].items()))
    click.echo("  ops         " + ", ".join(f"{k} x{v}" for k, v in doc["ops"].items()))
    q = doc.get("quantization") or {}
    if q:
        click.echo(f"  quantization {q.get('scheme')}" + (f": {q['summary']}" if q.get("summary") else ""))
        for name, enc in (q.get("layers") or {}).items():
            if enc != q.get("default"):
                click.echo(f"    {name}: {enc}")
    prov = doc.get("provenance") or {}
    if prov:
        click.echo(f"  source      {prov.get('source')} (sha256 {str(prov.get('source_sha256'))[:12]}...), "
                   f"{prov.get('converter')}")
    click.echo(f"  licence     {doc.get('license')}")
    if tensors:
        for t in doc["tensors"]:
            click.echo(f"    {t['name']:40s} {t['encoding']:8s} {'x'.join(map(str, t['shape']))}")


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
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def convert(source, output, weights, labels, name, input_size, mean, std, license_, calibrate, force, as_json):
    """Convert a trained model (SOURCE: .onnx, or an EfficientNet-Lite .pth) to OUTPUT.dnet.

    The file is written to a temporary name and renamed when complete, so a
    failed or interrupted conversion never leaves a partial model.

    \b
    Examples:
        devicenet convert mobilenetv2.onnx mobilenetv2.dnet
        devicenet convert efficientnet-lite0.pth lite0.dnet --weights auto
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
    progress = None if as_json else say
    try:
        s = run_convert(source, output, weights=weights, labels=labels, name=name, input_size=input_size,
                        license=license_, preprocess=pre or None, calibrate=calibrate, progress=progress)
    except DeviceNetError as e:
        fail(str(e))
    if as_json:
        echo_json(s)
        return
    click.echo(f"wrote {output}: {s['name']}, {s['nodes']} ops, {s['parameters']:,} parameters")
    click.echo("  ops: " + ", ".join(f"{k} x{v}" for k, v in s["ops"].items()))
    click.echo(f"  {s['file_bytes'] / 1e6:.2f} MB ({s['compression']}x smaller than float32, "
               f"{s['float32_bytes'] / 1e6:.2f} MB)")


def feature_progress(done, total, path):
    """Progress of feature extraction, on stderr (a folder takes minutes on a Pi)."""
    if done == total or done % max(1, total // 20) == 0 or done == 1:
        click.echo(f"features: {done}/{total} ({os.path.basename(path)})", err=True)


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
@model_options
def learn(dataset, output, holdout, augment, oversample, l2, layer, force, as_json,
          model_path, backend, threads, port, device):
    """Teach the model your own objects: retrain its top layer on DATASET.

    DATASET holds one sub-folder of photos per class (two or more; a
    catch-all such as `_background` is fine).  Features are cached in
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
    try:
        report = run_learn(dataset, output, model, holdout=holdout, augment=augment, oversample=oversample,
                           l2=l2, layer=layer, progress=feature_progress,
                           warn=lambda msg: say(f"warning: {msg}"))
    except DeviceNetError as e:
        fail(str(e))
    if as_json:
        echo_json(report)
        return
    classes = report["classes"]
    click.echo(f"wrote {output}: {len(classes)} classes, {report['photos']} photos "
               f"(features: {report['features_computed']} computed, {report['features_reused']} from the cache)")
    width = max(len(c) for c in classes)
    for c in classes:
        click.echo(f"  {c:<{width}}  {report['counts'][c]} photos")
    if "accuracy" in report:
        click.echo(f"held-out accuracy: {report['accuracy'] * 100:.1f}% of {report['held_out']} photos")
        click.echo("confusion (rows: true class, columns: predicted):")
        for c, row in zip(classes, report["confusion"]):
            click.echo(f"  {c:<{width}}  " + " ".join(f"{v:4d}" for v in row))


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="The .npy file to write.")
@click.option("--layer", metavar="NAME", help="Which activation (default: the penultimate features).")
@click.option("--oversample", is_flag=True, help="Average the features of ten crops (corners, centre, mirrors).")
@model_options
def features(images, output, layer, oversample, model_path, backend, threads, port, device):
    """Save the raw features of each IMAGE to OUTPUT.npy, one row per image.

    \b
    Examples:
        devicenet features photos/*.jpg -o feats.npy
        devicenet features cat.png --layer head -o head.npy
    """
    import numpy as np
    from .model import prefetched
    model = load_model(model_path, backend, threads, port, device)
    rows = []
    try:
        try:
            # The next photo decodes on a worker thread while this one runs.
            batches = prefetched(lambda image: model.prepare(image, oversample)[0], images)
            for i, (image, batch) in enumerate(batches):
                rows.append(model.features(batch.result(), layer).mean(axis=0))
                feature_progress(i + 1, len(images), image)
        except KeyboardInterrupt:
            # Keep the rows computed (one per image, in order); status 130 says they are not all.
            if rows:
                np.save(output, np.stack(rows))
                click.echo(f"interrupted: wrote {output} with the first {len(rows)} of {len(images)} rows",
                           err=True)
            raise
        np.save(output, np.stack(rows))
    except DeviceNetError as e:
        fail(str(e))
    except OSError as e:
        fail(f"{output}: cannot write ({e.strerror or e})")
    click.echo(f"wrote {output}: {len(rows)} x {rows[0].shape[0]} float32", err=True)


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--reference", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The float model to compare with: an .onnx file (needs onnxruntime) or a .dnet.")
@click.option("--images", required=True, multiple=True, type=click.Path(exists=True),
              help="A folder of photos (searched recursively) or a photo; repeat for more.")
@click.option("--worst", default=5, show_default=True, type=click.IntRange(0, 1000),
              help="How many of the furthest-off photos to list.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def evaluate(model, reference, images, worst, as_json):
    """Compare MODEL with a float reference on your photos.

    Prints top-1 agreement, mean top-5 overlap, mean and max logit error and
    the photos where the two differ most.

    \b
    Example:
        devicenet evaluate lite0.dnet --reference lite0-float32.dnet --images photos/
    """
    from .evaluate import evaluate as run_evaluate
    progress = None if as_json else say
    try:
        r = run_evaluate(model, reference, list(images), progress=progress)
    except DeviceNetError as e:
        fail(str(e))
    for msg in r.failed:
        click.echo(f"Warning: skipped {msg}", err=True)
    if as_json:
        echo_json(r.to_json(worst))
        return
    click.echo(f"{len(r.photos)} photos: top-1 agreement {r.top1_agreement * 100:.1f}%, "
               f"top-5 overlap {r.top5_overlap * 100:.1f}%")
    click.echo(f"  logit error: mean {r.mean_logit_error:.4f}, max {r.max_logit_error:.4f}")
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
@model_options
def benchmark(runs, warmup, net, layers, residency, image, as_json, save, tables, files,
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
        progress = bench.Progress(sys.stderr)
        result = bench.run(None if net else model_path, net, port=port, backend=backend, threads=threads,
                           device=device, residency=residency, runs=runs, warmup=warmup, layers=layers,
                           image=image, progress=progress)
        if save:
            with open(save, "w") as f:
                json.dump(result, f, indent=2)
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
