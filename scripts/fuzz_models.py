"""The full structured fuzz run: thousands of checksum-valid mutations of
three models, each run on every CPU path against the reference ops.

    python scripts/fuzz_models.py                       # the counts in docs/RELIABILITY.md
    python scripts/fuzz_models.py --cases 200 --lite0-cases 10
    python scripts/fuzz_models.py --case "every op:76"  # one case again, in detail

The mutator and the check are the test suite's (tests/mutate.py,
tests/differential.py).  Cases run in worker processes, a range of cases
each: a case that hangs (the watchdog ends its worker after many times the
time its work could take) or kills its worker (a signal from compiled code)
is recorded as a finding, and a new worker goes on from the next case.
Prints the outcomes per mutation kind and every finding with its
reproducer (seed, model, case number); a finding of a kind issue 13 lists
(``KNOWN_BY_ISSUE_13`` in tests/test_fuzz.py) is marked as such.
"""

import argparse
import collections
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.join(os.path.dirname(HERE), "tests")
MODELS = ("small", "every op", "lite0")
COLUMNS = ("refused at load", "refused at run", "agreed", "over work limit", "finding")


def _tests_path():
    sys.path.insert(0, TESTS)
    sys.path.insert(0, os.path.dirname(HERE))


def seed_model(name):
    import mutate
    if name == "small":
        return mutate.small_model()
    if name == "every op":
        return mutate.every_op_model()
    import devicenet
    with open(devicenet.default_model_path(), "rb") as f:
        return f.read()


def batch_for(name):
    return 1 if name == "lite0" else 2


def kinds_for(name):
    import mutate
    import test_fuzz
    return test_fuzz.LITE0_KINDS if name == "lite0" else mutate.KINDS


def worker(model, start, stop, seed, opencl=False, work_limit=None):
    """Run cases [start, stop) of ``model``, one JSON line each on stdout."""
    _tests_path()
    import differential
    import mutate
    base = mutate.Dnet.parse(seed_model(model))
    kinds = kinds_for(model)
    for i in range(start, stop):
        case = mutate.mutate(base, seed, model, i, kinds)
        rec = {"i": i, "kind": case.kind, "kinds": case.kinds, "what": case.what}
        print(json.dumps({**rec, "started": True}), flush=True)
        t0 = time.perf_counter()
        r = differential.check(case.blob, batch=batch_for(model), runs=differential.paths(opencl),
                               work_limit=work_limit or differential.WORK_LIMIT)
        print(json.dumps({**rec, "outcome": r.outcome, "symptom": r.symptom, "detail": r.detail,
                          "seconds": round(time.perf_counter() - t0, 3)}), flush=True)


def run_range(model, start, stop, seed, results, lock, opencl=False, work_limit=None):
    """Run a range of cases in worker processes, restarting after a worker dies."""
    while start < stop:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", model, str(start), str(stop), str(seed)]
        cmd += (["--opencl"] if opencl else []) + (["--work-limit", str(work_limit)] if work_limit else [])
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        err = []
        reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
        reader.start()
        pending = None
        for line in proc.stdout:
            rec = json.loads(line)
            if rec.get("started"):
                pending = rec
                continue
            pending = None
            with lock:
                results.append(rec)
            start = rec["i"] + 1
        proc.wait()
        reader.join()
        if pending is None:
            if proc.returncode:
                raise SystemExit(f"worker for {model} failed before any case:\n{''.join(err)[-2000:]}")
            break
        stderr = "".join(err)
        symptom = "hang" if "Timeout (" in stderr else "crash"
        pending.update(outcome="finding", symptom=symptom,
                       detail=f"worker ended (status {proc.returncode}): {stderr.strip()[-300:]}")
        with lock:
            results.append(pending)
        start = pending["i"] + 1


def run(models, cases, seed, jobs, opencl=False, work_limit=None):
    """Every case of every model, ``jobs`` ranges at a time; returns {model: [records]}."""
    out, lock, threads = {m: [] for m in models}, threading.Lock(), []
    ranges = []
    for m in models:
        n = cases[m]
        step = max(1, -(-n // jobs))
        ranges += [(m, a, min(n, a + step)) for a in range(0, n, step)]
    running = []
    for m, a, b in ranges:
        while len([t for t in running if t.is_alive()]) >= jobs:
            time.sleep(0.2)
        t = threading.Thread(target=run_range, args=(m, a, b, seed, out[m], lock, opencl, work_limit))
        t.start()
        running.append(t)
        threads.append(t)
    for t in threads:
        t.join()
    return out


def report(results, seed, markdown=False):
    _tests_path()
    from test_fuzz import KNOWN_BY_ISSUE_13, known
    findings = []
    for model, recs in results.items():
        table = collections.defaultdict(collections.Counter)
        for r in sorted(recs, key=lambda r: r["i"]):
            table[r["kind"]][r["outcome"]] += 1
            if r["outcome"] == "finding":
                key = known(r["kinds"], r["symptom"])
                findings.append(f"seed {seed} {model!r} case {r['i']} [{r['kind']}] {r['what']}: "
                                f"{r['symptom']}: {r['detail'][:300]}"
                                + (f"  (issue 13, item {KNOWN_BY_ISSUE_13[key]})" if key in KNOWN_BY_ISSUE_13
                                   else "  (found here, listed)" if key else "  (NEW)"))
        total = collections.Counter()
        for c in table.values():
            total.update(c)
        slow = sorted(recs, key=lambda r: -r.get("seconds", 0))[:3]
        print(f"\n{model}: {len(recs)} cases; slowest: "
              + "; ".join(f"case {r['i']} [{r['kind']}] {r.get('seconds', 0):.2f} s" for r in slow))
        if markdown:
            print("\n| mutation kind | " + " | ".join(COLUMNS) + " |")
            print("|---|" + "---:|" * len(COLUMNS))
            for kind, c in sorted(table.items()) + [("**all**", total)]:
                print(f"| {kind} | " + " | ".join(str(c.get(k, 0)) for k in COLUMNS) + " |")
        else:
            for kind, c in sorted(table.items()) + [("all", total)]:
                print(f"  {kind:20s} " + "  ".join(f"{k} {c.get(k, 0)}" for k in COLUMNS))
        symptoms = collections.Counter(r["symptom"] for r in recs if r["outcome"] == "finding")
        print("  findings by symptom:", dict(symptoms))
    print(f"\n{len(findings)} findings:")
    for f in findings:
        print("  " + f)


def one_case(spec, seed, opencl=False):
    """Run one case in this process and print what it is and what it gave."""
    _tests_path()
    import differential
    import mutate
    model, index = spec.rsplit(":", 1)
    base = mutate.Dnet.parse(seed_model(model))
    case = mutate.mutate(base, seed, model, int(index), kinds_for(model))
    print(f"seed {seed} {model!r} case {index} [{case.kind}] {case.what}")
    r = differential.check(case.blob, batch=batch_for(model), runs=differential.paths(opencl))
    print(f"  -> {r.outcome} {r.symptom or ''}: {r.detail}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--cases", type=int, default=3000, help="cases per small model")
    ap.add_argument("--lite0-cases", type=int, default=120, help="cases of the shipped model")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--markdown", action="store_true", help="tables for docs/RELIABILITY.md")
    ap.add_argument("--case", help="MODEL:INDEX: run one case and show it")
    ap.add_argument("--opencl", action="store_true", help="run the OpenCL backend too (resident and streamed)")
    ap.add_argument("--work-limit", type=int, help="multiply-adds a run may take (default: differential.WORK_LIMIT)")
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _tests_path()
        model, a, b, seed = args.worker
        return worker(model, int(a), int(b), int(seed), args.opencl, args.work_limit)
    if args.case:
        return one_case(args.case, args.seed, args.opencl)
    models = [m.strip() for m in args.models.split(",")]
    cases = {m: args.lite0_cases if m == "lite0" else args.cases for m in models}
    t0 = time.time()
    results = run(models, cases, args.seed, args.jobs, args.opencl, args.work_limit)
    report(results, args.seed, args.markdown)
    print(f"\n{sum(map(len, results.values()))} cases in {time.time() - t0:.0f} s with {args.jobs} workers")


if __name__ == "__main__":
    main()
