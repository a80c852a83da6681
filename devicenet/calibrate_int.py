"""Which layers run in eight-bit integers, chosen by measurement.

After the weight encodings are chosen (calibrate.py), the converter plans
integer arithmetic on the same calibration batch:

1. **Activation ranges**: every activation an integer layer could read or
   write gets a scale and zero point from its values on the batch, by one
   of three rules: ``minmax`` (the whole observed range), ``percentile``
   (0.01% cut from each end) or ``mse`` (the clip that minimises the
   squared error of quantising the tensor); or, tensor by tensor, by
   whichever of the three moves the outputs of the layers reading it
   least (``outputs``).  Each of the four is tried on the whole network
   and the one whose answers move least is kept; once the plan is chosen,
   each is tried again on the plan's own layers.
2. **Integer weights** (``LEVELS``): a GEMM convolution that may run
   integer gets int8 weights in [-127, 127] ("int8"), a depthwise one
   twelve-bit weights ("int12", stored int16: its kernels multiply int16
   weights anyway).  Each layer's per-channel clip (whole range or least
   squared error) is the one that moves its output least, then bias
   correction.  A GEMM's weights are rounded to keep its outputs on the
   batch rather than each weight (rounding.py): rounding each weight to
   its nearest integer moved Lite0's answers more than its eight-bit
   activations did.  (x86's fastest kernel, vpmaddubsw, is exact only
   for weights whose pairs along k stay within 128 in magnitude; held to
   that, Lite0's 18-layer plan moved its logits by 0.043 on average
   against 0.030 with the whole int8 range, which x86's wide-panel kernel
   computes exactly at about 0.8x that speed.)
3. **Sensitivity**: with only that layer in integers (its inputs and output
   quantised), the KL divergence of the class probabilities from the
   float network's.
4. **Budget**: starting from every candidate in integers, layers move to
   float in the order that
   removes the most divergence for the time it adds (lone sensitivities
   against an estimate of each level's time), and the first plan of that
   sequence whose whole-network divergence is within the budget is kept.
5. **Borders**: an integer region (layers joined by the values they pass)
   whose estimated saving is smaller than the conversions at its border
   (float32 to uint8 and back) goes back to float.

The integer execution measured here is the exact one the runtime performs
(integer.Q8Node), so what is measured is what runs.
"""

import dataclasses
import math

import numpy as np

from . import integer, rounding
from .backends.base import last_uses
from .backends.cpu import OPS as CPU_OPS, im2col
from .calibrate import kl
from .errors import DeviceNetError
from .graph import multiply_adds

#: the rules a tensor's range may follow, and "outputs": for each tensor the
#: one of them that moves the outputs of the convolutions reading it least
TENSOR_RULES = ("minmax", "percentile", "mse")
RANGE_RULES = TENSOR_RULES + ("outputs",)
#: calibration inputs the "outputs" rule compares the rules on (its own work
#: is a few convolutions per tensor; the network-wide measure that follows
#: uses them all)
OUTPUTS_SAMPLE = 16
#: largest mean KL divergence from the float network the integer layers may add
#: (at 0.0003 Lite0, Lite1 and Lite2 keep 98.3-98.7% of the float network's
#: top-1 answers on the 229 evaluation photographs; at 0.001, 96.9-97.4%:
#: docs/ACCURACY.md)
DEFAULT_KL_BUDGET = 0.0003
#: values of a tensor used to choose its range (a strided sample beyond this)
SAMPLE = 1 << 20
#: clip candidates of the mse rule, as fractions of the observed range
MSE_FRACTIONS = 0.9 ** np.arange(16)
#: the largest |integer| of each level a weighted layer may take
LEVELS = {"int8": integer.WEIGHT_QMAX, "int12": integer.DEPTHWISE_QMAX}


def _sample(v):
    v = np.asarray(v, np.float32).ravel()
    return v[::max(1, v.size // SAMPLE)]


def _fake(v, q):
    from .backends import q8_ref
    return q8_ref.dequantize(q8_ref.quantize(v, q.scale, q.zero_point), q.scale, q.zero_point)


def tensor_qparams(values, rule):
    """QParams of a tensor from its calibration values by one rule."""
    v = _sample(values)
    lo, hi = float(v.min()), float(v.max())
    if rule == "minmax":
        return integer.QParams.from_range(lo, hi)
    if rule == "percentile":
        return integer.QParams.from_range(*np.percentile(v, [0.01, 99.99]))
    best = None
    for f in MSE_FRACTIONS:
        q = integer.QParams.from_range(lo * f, hi * f)
        err = float(((_fake(v, q) - v) ** 2).mean())
        if best is None or err < best[0]:
            best = (err, q)
    return best[1]


def macs(node, shapes, params):
    """Multiply-adds of a node (elements for ops without weights): what
    running it in integers saves, roughly in proportion."""
    return multiply_adds(node, shapes, lambda name: params[name].shape) or math.prod(shapes[node.outputs[0]])


class IntegerPlanner:
    """The integer plan of a calibrated network (calibrate.Quantizer ``q``)
    whose float layers use ``weights`` (tensor name -> what the runtime
    sees).

    A convolution has two levels: integers (int8 weights; twelve-bit ones
    for a depthwise layer, whose kernels multiply int16 weights at the same
    speed) and float; an add or a mean pool two: integers and float.  A
    plan gives each candidate a level."""

    #: time of a layer at each level, as a fraction of its float time, by
    #: integer kind (an estimate from the kernels' measured throughput on
    #: Lite0's layers, scripts/bench_q8.py --wmax 127: 1x1 GEMMs 1.3x the
    #: float ones, depthwise 1.1x; other convolutions make their patches in
    #: numpy, which took Lite0's stem 3.3x the float direct convolution's
    #: time).
    COST = {"gemm": {"int8": 0.75}, "im2col": {"int8": 3.3}, "depthwise": {"int12": 0.9},
            "int": {"int": 0.5}}
    #: a conversion between float32 and uint8 at a region's border, in the
    #: same units (float multiply-adds): per element, and per conversion (a
    #: compiled call inside the program, ahead of the layer that reads it)
    CONVERT = (20, 100_000)

    def __init__(self, q, weights, plain_biases=None, progress=None):
        self.q, self.b, self.nodes = q, q.b, q.nodes
        self.weights = weights
        self.plain = plain_biases or {}  # biases before the float layers' bias correction
        self.say = progress or (lambda msg: None)
        self.shapes = {**self.b.shapes, self.b.input_name: q.cache[self.b.input_name].shape}
        self.candidates = []
        for node in self.nodes:
            w = self.b.params[node.params["weight"]].shape if "weight" in node.params else None
            if node.op in integer.OPS and integer.supported(node, q.cache[node.inputs[0]].shape, w):
                self.candidates.append(node)
        self.kind = {n.name: self._kind(n) for n in self.candidates}
        # a layer no faster in integers than in float only loses exactness there
        self.candidates = [n for n in self.candidates if min(self.COST[self.kind[n.name]].values()) < 1.0]
        self.iweights = {(n.name, r): self._integer_weight(n, r) for n in self.candidates
                         for r in self.levels(n) if r in LEVELS}
        self._lowered = {}
        self._qparams = {}

    def _kind(self, node):
        if node.op != "conv":
            return "int"
        w = self.b.params[node.params["weight"]].shape
        return integer.conv_kind(node, self.q.cache[node.inputs[0]].shape, w)

    def levels(self, node):
        """A candidate's levels, fastest first (None: float)."""
        return tuple(self.COST[self.kind[node.name]]) + (None,)

    def cost(self, name, level):
        """A candidate's time at a level, as a fraction of its float time."""
        return 1.0 if level is None else self.COST[self.kind[name]][level]

    def _integer_weight(self, node, level):
        """(integers, scales, corrected float bias, clip kind, clip) of an
        integer layer's weights at a level (``LEVELS``): the clip that moves
        its output least, then bias correction."""
        from .calibrate import clip_candidates
        qmax = LEVELS[level]
        w = self.b.params[node.params["weight"]]
        bname = node.params.get("bias")
        best = None
        plain = self.plain.get(bname, self.b.params[bname]) if bname else None
        # A channel whose weights are next to nothing beside its bias (a
        # dead channel) would need an int32 bias beyond range: its clip is
        # raised until the bias fits, which leaves its weights at zero.
        x = self.q.cache[node.inputs[0]]
        x_scale = max(float(x.max()) - min(float(x.min()), 0.0), 1e-8) / 255.0
        floor = 0.0 if plain is None else np.abs(plain) * qmax / (x_scale * 2.0 ** 26)
        # a GEMM's integers are rounded to keep its outputs on the batch
        # (rounding.py); a depthwise layer's twelve-bit weights are fine
        # enough rounded to nearest, and each of its outputs sees 9 inputs
        h = self._second_moment(node) if self.kind[node.name] != "depthwise" else None
        clips = dict(zip(("absmax", "mse"), clip_candidates(w, "int8" if qmax <= 127 else "int16", qmax)))
        for kind, clip in clips.items():
            clip = np.maximum(clip, floor).astype(np.float32)
            wi, scales = integer.integer_weight(w, clip, qmax)
            if h is not None:
                wi = rounding.round_to_outputs(w.reshape(len(w), -1), scales, qmax,
                                               h).astype(wi.dtype).reshape(w.shape)
            wq = wi.astype(np.float32) * scales.reshape((-1,) + (1,) * (w.ndim - 1))
            e = self.q._error(node, wq - w)
            shift = e.mean(axis=0) if bname else 0.0
            err = float(((e - shift) ** 2).mean())
            if best is None or err < best[0]:
                bias = (plain - shift).astype(np.float32) if bname else None
                best = (err, wi, scales, bias, kind, clip)
        return best[1:]

    def _second_moment(self, node):
        """Second moment of a GEMM convolution's input patches on the batch."""
        return rounding.second_moment(im2col(self.q.cache[node.inputs[0]], node.attrs)[0])

    def qparams(self, rule):
        """QParams of every activation a candidate reads or writes, by one
        of RANGE_RULES."""
        if rule not in self._qparams:
            if rule == "outputs":
                self._qparams[rule] = self._outputs_qparams()
            else:
                names = {t for n in self.candidates for t in n.inputs + n.outputs}
                self._qparams[rule] = {t: tensor_qparams(self.q.cache[t], rule) for t in sorted(names)}
        return self._qparams[rule]

    def _outputs_qparams(self):
        """Each tensor's range by the rule (TENSOR_RULES) whose rounding of
        it moves the pre-activation outputs of the candidate convolutions
        that read it least (squared error, summed over its readers, on the
        first OUTPUTS_SAMPLE calibration inputs); a tensor no candidate
        convolution reads keeps the mse rule's range."""
        by_rule = {r: self.qparams(r) for r in TENSOR_RULES}
        readers = {}
        for node in self.candidates:
            if node.op == "conv":
                readers.setdefault(node.inputs[0], []).append(node)
        chosen = dict(by_rule["mse"])
        for t, nodes in readers.items():
            x = self.q.cache[t][:OUTPUTS_SAMPLE]
            want = [self._bare(n, x) for n in nodes]
            errs = {}
            for r in TENSOR_RULES:
                xq = _fake(x, by_rule[r][t])
                errs[r] = sum(float(((self._bare(n, xq) - w) ** 2).mean()) for n, w in zip(nodes, want))
            chosen[t] = by_rule[min(TENSOR_RULES, key=lambda r: (errs[r], r != "mse"))][t]
        return chosen

    def _bare(self, node, x):
        """A convolution's output without its bias and activation, in float."""
        attrs = {**node.attrs, "activation": "none"}
        return CPU_OPS["conv"]([x], attrs, {"weight": self.weights[node.params["weight"]]})

    def _lower(self, node, qp, level, float_out):
        # keyed by the node's own activation parameters: rules agree on many
        key = (node.name, level, float_out) + tuple(qp.get(t) for t in node.inputs + node.outputs)
        if key not in self._lowered:
            weight = bias = None
            if node.op == "conv":
                wi, scales, bias, _, _ = self.iweights[(node.name, level)]
                weight = (wi, scales)
            self._lowered[key] = integer.lower_node(node, [self.shapes[i] for i in node.inputs], qp,
                                                    float_out, weight, bias)
        return self._lowered[key]

    def run(self, plan, qp, start=0, lone=False, before=None):
        """The network's output with the nodes ``plan`` names (name ->
        level) in integers, from node ``start`` on (earlier values from the
        float cache).  ``lone``: outputs stay uint8 even where only float
        nodes read them (to measure one layer with its output quantised).
        ``before(node, inputs)``, if given, is called as each node is about
        to run."""
        floats = set() if lone else integer.float_outputs(self.nodes, set(plan), self.q.output)
        values = {}
        last = last_uses(self.nodes, start)
        for i, node in enumerate(self.nodes[start:], start):
            ins = [values[t] if t in values else self.q.cache[t] for t in node.inputs]
            if before is not None:
                before(node, ins)
            if node.name in plan:
                qn = self._lower(node, qp, plan[node.name],
                                 node.name in floats or node.op == "global_avgpool")
                out = qn.run([integer.entry(v, "u8", qp[t]) for v, t in zip(ins, node.inputs)])
            else:
                ins = [integer.entry(v, "f32", qp.get(t)) for v, t in zip(ins, node.inputs)]
                ps = {role: self.weights[t] for role, t in node.params.items()}
                out = CPU_OPS[node.op](ins, node.attrs, ps)
            values[node.outputs[0]] = out
            for t in node.inputs:
                if last.get(t) == i and t != self.q.output:
                    values.pop(t, None)
        out = values[self.q.output] if self.q.output in values else self.q.cache[self.q.output]
        return integer.entry(out, "f32", qp.get(self.q.output))

    def correct(self, plan, qp):
        """Shift the bias of each integer convolution of ``plan`` by the
        mean error of its sums as the integer network computes them (its
        inputs carrying the rounding of every integer layer before it), in
        the order the network runs: bias correction of the weights alone
        (_integer_weight) sees float inputs.  Updates ``iweights``; returns
        the shifts (node name -> per-channel shift of its bias)."""
        shifts = {}

        def fix(node, ins):
            if node.name not in plan or node.op != "conv" or not node.params.get("bias"):
                return
            key = (node.name, plan[node.name])
            wi, scales, bias, kind, clip = self.iweights[key]
            u8 = [integer.entry(v, "u8", qp[t]) for v, t in zip(ins, node.inputs)]
            bare = dataclasses.replace(node, attrs={**node.attrs, "activation": "none"})
            sums = integer.lower_node(bare, [self.shapes[t] for t in node.inputs], qp, True,
                                      (wi, scales), bias).run(u8)
            want = CPU_OPS["conv"]([self.q.cache[node.inputs[0]]], bare.attrs,
                                   {"weight": self.b.params[node.params["weight"]],
                                    "bias": self.plain.get(node.params["bias"], self.b.params[node.params["bias"]])})
            shift = (sums - want).reshape(-1, sums.shape[-1]).astype(np.float64).mean(axis=0)
            self.iweights[key] = (wi, scales, (bias - shift).astype(np.float32), kind, clip)
            shifts[node.name] = shift
            self._lowered = {k: v for k, v in self._lowered.items() if k[0] != node.name}
        self.run(plan, qp, before=fix)
        return shifts

    def measure(self, plan, qp):
        """(KL, top-1 agreement) with the float network."""
        out = self.run(plan, qp)
        ref = self.q.reference
        return kl(ref, out), float((out.argmax(-1) == ref.argmax(-1)).mean())

    def moves(self, sens, work):
        """Plans from the cheapest (every candidate at its fastest level) to
        all float, one layer one level up at a time: each step the move that
        removes the most estimated divergence (the layers' lone
        sensitivities) per unit of time it adds."""
        state = {n.name: 0 for n in self.candidates}
        levels = {n.name: self.levels(n) for n in self.candidates}

        def plan():
            return {n: levels[n][k] for n, k in state.items() if levels[n][k] is not None}
        seq = [plan()]
        while True:
            best = None
            for name, k in state.items():
                if k + 1 >= len(levels[name]):
                    continue
                cur, nxt = levels[name][k], levels[name][k + 1]
                gain = sens[name].get(cur, 0.0) - sens[name].get(nxt, 0.0)
                dt = (self.cost(name, nxt) - self.cost(name, cur)) * work[name]
                score = gain / max(dt, 1e-9)
                if best is None or score > best[0]:
                    best = (score, name)
            if best is None:
                return seq
            state[best[1]] += 1
            seq.append(plan())

    def islands(self, plan):
        """The plan's integer regions: lists of node names joined by the
        values they pass each other."""
        group = {n: n for n in plan}

        def root(n):
            while group[n] != n:
                group[n] = group[group[n]]
                n = group[n]
            return n
        made_by = {node.outputs[0]: node.name for node in self.nodes}
        for node in self.nodes:
            for t in node.inputs:
                src = made_by.get(t)
                if node.name in plan and src in plan:
                    group[root(node.name)] = root(src)
        found = {}
        for n in plan:
            found.setdefault(root(n), []).append(n)
        return list(found.values())

    def worth_it(self, plan, work):
        """``plan`` less the integer regions that save less time than
        their conversions cost: every value crossing a region's border is
        quantised or dequantised on the way (an estimate, in the units of
        ``work``: CONVERT per element and per conversion)."""
        readers = {}
        for node in self.nodes:
            for t in node.inputs:
                readers.setdefault(t, []).append(node.name)
        by_name = {n.name: n for n in self.nodes}
        kept = dict(plan)
        for region in self.islands(plan):
            inside = set(region)
            saved = sum(work[n] * (1.0 - self.cost(n, plan[n])) for n in region)
            crossing = {t for n in region for t in by_name[n].inputs
                        if not any(t in by_name[m].outputs for m in inside)}
            crossing |= {by_name[n].outputs[0] for n in region
                         if any(r not in inside for r in readers.get(by_name[n].outputs[0], []))
                         and by_name[n].op != "global_avgpool"}
            cost = sum(self.CONVERT[0] * int(np.prod(self.shapes[t][1:])) + self.CONVERT[1] for t in crossing)
            if saved <= cost:
                for n in region:
                    del kept[n]
        return kept

    def plan(self, budget=DEFAULT_KL_BUDGET):
        """Choose the range rule and each layer's level; return the report
        (with ``nodes`` and ``activations`` as the file stores them)."""
        exact = {n.name: self.levels(n)[-2] for n in self.candidates}  # every layer at its best integer level
        rules = {}
        for rule in RANGE_RULES:
            qp = self.qparams(rule)
            rules[rule] = (qp,) + self.measure(exact, qp)
            self.say(f"  activation ranges by {rule}: all {len(exact)} candidate layers in integers, "
                     f"KL {rules[rule][1]:.3g}, top-1 agreement {rules[rule][2] * 100:.0f}%")
        rule = min(RANGE_RULES, key=lambda r: rules[r][1])
        qp = rules[rule][0]
        index = {n.name: i for i, n in enumerate(self.nodes)}
        sens = {}
        for count, n in enumerate(self.candidates, 1):
            sens[n.name] = {lv: kl(self.q.reference, self.run({n.name: lv}, qp, start=index[n.name],
                                                              lone=True))
                            for lv in self.levels(n)[:-1]}
            if count % 10 == 0 or count == len(self.candidates):
                self.say(f"  measured {count}/{len(self.candidates)} layers in integers")
        work = {n.name: macs(n, self.shapes, self.b.params) for n in self.candidates}
        for n in self.candidates:
            if "weight" not in n.params:
                # an add or a pool saves little itself, but in float it makes
                # its integer neighbours convert what they pass it
                work[n.name] *= self.CONVERT[0] * (len(n.inputs) + 1)
        seq = self.moves(sens, work)
        results = {}

        def at(k):
            if k not in results:
                results[k] = self.measure(seq[k], qp)
            return results[k]
        # the first plan of the sequence within budget (bisection: the
        # divergence falls, roughly, along it)
        lo_k, hi_k = 0, len(seq) - 1
        if at(0)[0] <= budget:
            hi_k = 0
        while hi_k - lo_k > 1:
            mid = (lo_k + hi_k) // 2
            if at(mid)[0] <= budget:
                hi_k = mid
            else:
                lo_k = mid
        # regions too small to pay for their conversions go back to float
        # (which can only bring the answers closer to float's)
        chosen = self.worth_it(seq[hi_k], work)
        total_kl, agree = at(hi_k) if chosen == seq[hi_k] else self.measure(chosen, qp)
        # the rule was chosen with every candidate in integers: the layers
        # of the plan may be better served by another
        for other in RANGE_RULES if chosen else ():
            if other != rule:
                kl_other, agree_other = self.measure(chosen, rules[other][0])
                if kl_other < total_kl:
                    total_kl, agree, rule, qp = kl_other, agree_other, other, rules[other][0]
        if chosen:  # bias correction in the integer network, kept where it helps
            saved = dict(self.iweights), dict(self._lowered)
            self.correct(chosen, qp)
            kl_c, agree_c = self.measure(chosen, qp)
            self.say(f"  bias correction in the integer network: KL {total_kl:.2g} -> {kl_c:.2g}")
            if kl_c < total_kl:
                total_kl, agree = kl_c, agree_c
            else:
                self.iweights, self._lowered = saved
        total_work = sum(work.values())
        time_est = sum(work[n] * self.cost(n, chosen.get(n)) for n in work) / max(total_work, 1)
        share = sum(work[n] for n in chosen) / max(total_work, 1)
        used = {t for n in self.nodes if n.name in chosen for t in n.inputs + n.outputs}
        summary = (f"{len(chosen)} of {len(self.candidates)} candidate layers in integers "
                   f"({share * 100:.0f}% of their multiply-adds, estimated {time_est:.2f}x their float time), "
                   f"activation ranges by {rule}; on {len(self.q.reference)} calibration inputs "
                   f"KL {total_kl:.2g}, top-1 agreement {agree * 100:.0f}%")
        self.say("  " + summary)
        return {
            "nodes": [n.name for n in self.nodes if n.name in chosen],
            "activations": {t: qp[t].to_json() for t in sorted(used)},
            "summary": summary,
            "method": "per-tensor activation ranges (rule chosen by measured KL), per-layer sensitivity "
                      "(KL with only that layer in integers), layers moved to float by divergence removed "
                      "per time added until the KL budget holds",
            "weight_ranges": {n: lv for n, lv in chosen.items() if lv != "int"},
            "budget_kl": budget,
            "ranges": {r: {"kl": float(f"{v[1]:.3g}"), "agreement": round(v[2], 4)} for r, v in rules.items()},
            "rule": rule,
            "sensitivity": {n: {str(lv): float(f"{v:.3g}") for lv, v in d.items()} for n, d in sens.items()},
        }


def choose_arithmetic(q, weights, encodings, clips, plain_biases=None, budget=None, progress=None):
    """Plan the integer layers of a calibrated network; update the weight
    ``encodings``/``clips`` of the integer layers (and the Builder's biases,
    bias-corrected) in place; return (report, qmax per weight tensor)."""
    budget = DEFAULT_KL_BUDGET if budget is None else float(budget)
    if budget < 0:
        raise DeviceNetError(f"KL budget {budget} must not be negative")
    planner = IntegerPlanner(q, weights, plain_biases, progress)
    report = planner.plan(budget)
    qmax = {}
    for node in planner.candidates:
        level = report["weight_ranges"].get(node.name)
        if level is not None:
            _, _, bias, kind, clip = planner.iweights[(node.name, level)]
            wname = node.params["weight"]
            top = LEVELS[level]
            encodings[wname], clips[wname], qmax[wname] = "int8" if top <= 127 else "int16", clip, top
            if bias is not None:
                q.b.params[node.params["bias"]] = bias
    return report, qmax
