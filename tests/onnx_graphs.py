"""Small ONNX graphs, one per supported op, built with onnx.helper.

Each case is (name, builder function); a builder returns an onnx.ModelProto
with one NCHW input named "x".  The tests convert them with devicenet and
compare against onnxruntime.
"""

import numpy as np

rng = np.random.default_rng(1234)


def _model(nodes, inits, in_shape, out_name="y", opset=13):
    from onnx import TensorProto, helper, numpy_helper
    graph = helper.make_graph(
        nodes, "case",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32 if np.asarray(v).dtype.kind == "f" else None), k)
         for k, v in inits.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def W(*shape):
    return rng.normal(0, 0.5, size=shape).astype(np.float32)


def conv(name, inp, out, w, b=None, **attrs):
    from onnx import helper
    ins = [inp, w] + ([b] if b else [])
    return helper.make_node("Conv", ins, [out], name=name, **attrs)


def n(op, ins, outs, **attrs):
    from onnx import helper
    return helper.make_node(op, ins, outs, **attrs)


def case_conv3x3():
    return _model([conv("c", "x", "y", "w", "b", kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
                  {"w": W(6, 4, 3, 3), "b": W(6)}, [1, 4, 9, 9])


def case_conv_stride_asym_pads_dilation():
    return _model([conv("c", "x", "y", "w", kernel_shape=[3, 3], pads=[0, 1, 2, 1], strides=[2, 1],
                        dilations=[2, 1])], {"w": W(5, 3, 3, 3)}, [1, 3, 11, 10])


def case_conv1x1_stride2():
    return _model([conv("c", "x", "y", "w", "b", kernel_shape=[1, 1], strides=[2, 2])],
                  {"w": W(8, 6, 1, 1), "b": W(8)}, [1, 6, 7, 7])


def case_conv_same_upper():
    return _model([conv("c", "x", "y", "w", kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")],
                  {"w": W(4, 3, 3, 3)}, [1, 3, 8, 8])


def case_depthwise_bn_relu6():
    return _model([conv("dw", "x", "t", "w", kernel_shape=[5, 5], pads=[2, 2, 2, 2], strides=[2, 2], group=8),
                   n("BatchNormalization", ["t", "g", "be", "m", "v"], ["u"], epsilon=1e-3),
                   n("Clip", ["u", "lo", "hi"], ["y"])],
                  {"w": W(8, 1, 5, 5), "g": W(8) + 1, "be": W(8), "m": W(8), "v": np.abs(W(8)) + 0.5,
                   "lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32)}, [1, 8, 10, 10])


def case_grouped_conv_relu():
    return _model([conv("g", "x", "t", "w", "b", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=2),
                   n("Relu", ["t"], ["y"])], {"w": W(6, 2, 3, 3), "b": W(6)}, [1, 4, 6, 6])


def case_batchnorm_standalone():
    return _model([n("BatchNormalization", ["x", "g", "be", "m", "v"], ["y"])],
                  {"g": W(3), "be": W(3), "m": W(3), "v": np.abs(W(3)) + 0.1}, [1, 3, 4, 4])


def case_add_residual_relu():
    return _model([conv("c", "x", "t", "w", kernel_shape=[1, 1]), n("Add", ["t", "x"], ["s"]),
                   n("Relu", ["s"], ["y"])], {"w": W(4, 4, 1, 1)}, [1, 4, 5, 5])


def case_mul_sub_div_const():
    return _model([n("Sub", ["x", "m"], ["a"]), n("Div", ["a", "s"], ["b"]), n("Mul", ["b", "k"], ["y"])],
                  {"m": W(1, 3, 1, 1), "s": np.abs(W(1, 3, 1, 1)) + 0.5, "k": np.array(1.5, np.float32)},
                  [1, 3, 4, 4])


def case_maxpool_ceil():
    return _model([n("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)], {}, [1, 3, 8, 8])


def case_maxpool_pads():
    return _model([n("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
                  {}, [1, 3, 7, 7])


def case_avgpool_exclude_pad():
    return _model([n("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])],
                  {}, [1, 2, 5, 5])


def case_avgpool_include_pad():
    return _model([n("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                     count_include_pad=1)], {}, [1, 2, 6, 6])


def case_avgpool_ceil():
    return _model([n("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)],
                  {}, [1, 2, 8, 8])


def case_global_pool_flatten_gemm_softmax():
    return _model([n("GlobalAveragePool", ["x"], ["p"]), n("Flatten", ["p"], ["f"]),
                   n("Gemm", ["f", "w", "b"], ["g"], transB=1), n("Softmax", ["g"], ["y"], axis=1)],
                  {"w": W(10, 6), "b": W(10)}, [1, 6, 5, 5])


def case_flatten_spatial_gemm():
    # Features flattened in C,H,W order must meet weights permuted to H,W,C.
    return _model([n("Flatten", ["x"], ["f"]), n("Gemm", ["f", "w", "b"], ["g"], transB=1, alpha=0.5, beta=2.0),
                   n("Relu", ["g"], ["y"])], {"w": W(7, 4 * 3 * 3), "b": W(7)}, [1, 4, 3, 3])


def case_reshape_matmul_add():
    return _model([n("Reshape", ["x", "shape"], ["f"]), n("MatMul", ["f", "w"], ["m"]), n("Add", ["m", "b"], ["y"])],
                  {"shape": np.array([1, -1], np.int64), "w": W(2 * 2 * 5, 3), "b": W(3)}, [1, 5, 2, 2])


def case_reducemean_squeeze():
    return _model([n("ReduceMean", ["x"], ["p"], axes=[2, 3], keepdims=1), n("Squeeze", ["p", "ax"], ["y"])],
                  {"ax": np.array([2, 3], np.int64)}, [1, 4, 3, 3])


def case_concat_channels():
    return _model([conv("a", "x", "p", "w1", kernel_shape=[1, 1]), conv("b", "x", "q", "w2", kernel_shape=[3, 3],
                   pads=[1, 1, 1, 1]), n("Concat", ["p", "q"], ["y"], axis=1)],
                  {"w1": W(3, 4, 1, 1), "w2": W(5, 4, 3, 3)}, [1, 4, 6, 6])


def case_lrn():
    return _model([n("LRN", ["x"], ["y"], size=5, alpha=1e-2, beta=0.75, bias=2.0)], {}, [1, 7, 4, 4])


def case_pad_then_conv():
    return _model([n("Pad", ["x", "pads"], ["p"], mode="constant"), conv("c", "p", "y", "w", kernel_shape=[3, 3])],
                  {"pads": np.array([0, 0, 1, 2, 0, 0, 1, 0], np.int64), "w": W(4, 3, 3, 3)}, [1, 3, 6, 6])


def case_pad_value_standalone():
    return _model([n("Pad", ["x", "pads", "v"], ["y"], mode="constant")],
                  {"pads": np.array([0, 0, 2, 1, 0, 0, 0, 3], np.int64), "v": np.array(0.5, np.float32)},
                  [1, 2, 3, 3])


def case_dropout_identity_clip_generic():
    return _model([n("Dropout", ["x"], ["a"]), n("Identity", ["a"], ["b"]), n("Clip", ["b", "lo", "hi"], ["y"])],
                  {"lo": np.array(-0.3, np.float32), "hi": np.array(0.4, np.float32)}, [1, 3, 4, 4])


def case_sigmoid_standalone():
    return _model([n("Sigmoid", ["x"], ["y"])], {}, [1, 3, 4, 4])


def case_hardsigmoid_own_params():
    return _model([n("HardSigmoid", ["x"], ["y"], alpha=0.3, beta=0.4)], {}, [1, 3, 4, 4])


def case_conv_hardswish_fused():
    return _model([conv("c", "x", "t", "w", "b", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                   n("HardSwish", ["t"], ["y"])], {"w": W(6, 4, 3, 3), "b": W(6)}, [1, 4, 6, 6], opset=14)


def case_conv_silu_spelt_with_sigmoid():
    return _model([conv("c", "x", "t", "w", "b", kernel_shape=[1, 1]), n("Sigmoid", ["t"], ["s"]),
                   n("Mul", ["t", "s"], ["y"])], {"w": W(6, 4, 1, 1), "b": W(6)}, [1, 4, 5, 5])


def case_depthwise_hardswish_spelt_with_hardsigmoid():
    return _model([conv("c", "x", "t", "w", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=4),
                   n("HardSigmoid", ["t"], ["s"], alpha=1.0 / 6.0, beta=0.5), n("Mul", ["s", "t"], ["y"])],
                  {"w": W(4, 1, 3, 3) * 4}, [1, 4, 5, 5])


def case_squeeze_excitation_gate():
    return _model([conv("c", "x", "t", "w", "b", kernel_shape=[1, 1]), n("Relu", ["t"], ["r"]),
                   n("GlobalAveragePool", ["r"], ["p"]), conv("f1", "p", "q", "w1", "b1", kernel_shape=[1, 1]),
                   n("Relu", ["q"], ["q2"]), conv("f2", "q2", "e", "w2", "b2", kernel_shape=[1, 1]),
                   n("Sigmoid", ["e"], ["gate"]), n("Mul", ["r", "gate"], ["y"])],
                  {"w": W(8, 3, 1, 1), "b": W(8), "w1": W(2, 8, 1, 1), "b1": W(2), "w2": W(8, 2, 1, 1),
                   "b2": W(8)}, [1, 3, 5, 5])


def case_dense_silu():
    return _model([n("Flatten", ["x"], ["f"]), n("Gemm", ["f", "w", "b"], ["g"], transB=1),
                   n("Sigmoid", ["g"], ["s"]), n("Mul", ["g", "s"], ["y"])], {"w": W(5, 12), "b": W(5)},
                  [1, 3, 2, 2])


def case_channel_shuffle_and_split():
    # ShuffleNetV2: split the channels in two halves (bounds by shape
    # arithmetic), convolve one, concatenate, shuffle in two groups.
    return _model([n("Shape", ["x"], ["sh"]), n("Gather", ["sh", "i1"], ["c"], axis=0),
                   n("Div", ["c", "two"], ["half"]), n("Unsqueeze", ["half", "zero"], ["h1"]),
                   n("Slice", ["x", "zero", "h1", "one"], ["a"]), n("Slice", ["x", "h1", "big", "one"], ["b"]),
                   conv("c", "b", "bc", "w", kernel_shape=[1, 1]), n("Concat", ["a", "bc"], ["cat"], axis=1),
                   n("Reshape", ["cat", "s5"], ["g5"]), n("Transpose", ["g5"], ["t5"], perm=[0, 2, 1, 3, 4]),
                   n("Reshape", ["t5", "s4"], ["y"])],
                  {"i1": np.array(1, np.int64), "one": np.array([1], np.int64), "two": np.array(2, np.int64),
                   "zero": np.array([0], np.int64),
                   "big": np.array([1 << 40], np.int64), "w": W(4, 4, 1, 1),
                   "s5": np.array([1, 2, 4, 3, 3], np.int64), "s4": np.array([1, -1, 3, 3], np.int64)},
                  [1, 8, 3, 3])


def case_split_channels():
    return _model([n("Split", ["x", "parts"], ["a", "b"], axis=1), n("Add", ["a", "b"], ["y"])],
                  {"parts": np.array([3, 3], np.int64)}, [1, 6, 3, 3])


def case_folded_constants():
    # A deduplicated weight behind Identity, batch norm spelt as Mul/Add by
    # unsqueezed vectors, a weight reshaped before its Gemm, Sum for Add.
    return _model([n("Identity", ["w"], ["w2"]), conv("c", "x", "t", "w2", kernel_shape=[1, 1]),
                   n("Unsqueeze", ["k", "ax"], ["k3"]), n("Mul", ["t", "k3"], ["m"]),
                   n("Unsqueeze", ["d", "ax"], ["d3"]), n("Sum", ["m", "d3"], ["s"]),
                   n("Sum", ["s", "x"], ["r"]), n("GlobalAveragePool", ["r"], ["p"]), n("Flatten", ["p"], ["f"]),
                   n("Constant", [], ["fs"], value_ints=[4, 3]),
                   n("Reshape", ["fw", "fs"], ["fw2"]), n("Gemm", ["f", "fw2"], ["y"], transB=1)],
                  {"w": W(3, 3, 1, 1), "k": W(3), "d": W(3), "ax": np.array([1, 2], np.int64),
                   "fw": W(4, 3, 1, 1)}, [1, 3, 4, 4])




# --- transformer constructs: channels-last blocks, tokens, attention, windows ---

def _gelu(x, out, tag):
    """GELU as torch exports it before opset 20: x * (1 + Erf(x / sqrt 2)) * 0.5."""
    return [n("Div", [x, "sqrt2"], [tag + "d"]), n("Erf", [tag + "d"], [tag + "e"]),
            n("Add", [tag + "e", "one"], [tag + "e1"]), n("Mul", [x, tag + "e1"], [tag + "m"]),
            n("Mul", [tag + "m", "half"], [out])]


_GELU_CONSTS = {"sqrt2": np.array(np.sqrt(2.0), np.float32), "one": np.array(1.0, np.float32),
                "half": np.array(0.5, np.float32)}


def _layernorm_spelt(x, out, tag, c):
    """LayerNormalization over the last axis as opset 13 spells it."""
    return [n("ReduceMean", [x], [tag + "mu"], axes=[-1]), n("Sub", [x, tag + "mu"], [tag + "c"]),
            n("Pow", [tag + "c", "two_f"], [tag + "sq"]), n("ReduceMean", [tag + "sq"], [tag + "var"], axes=[-1]),
            n("Add", [tag + "var", "eps"], [tag + "ve"]), n("Sqrt", [tag + "ve"], [tag + "sd"]),
            n("Div", [tag + "c", tag + "sd"], [tag + "nz"]), n("Mul", [tag + "nz", tag + "g"], [tag + "sc"]),
            n("Add", [tag + "sc", tag + "b"], [out])]


def _convnext_block(layernorm):
    # depthwise conv, channels last, layer norm, dense 4x + GELU, dense
    # back, channels first, a learned per-channel scale, the residual add.
    c = 8
    ln = ([n("LayerNormalization", ["t", "g", "b"], ["l"], axis=-1, epsilon=1e-6)] if layernorm
          else _layernorm_spelt("t", "l", "ln", c))
    nodes = [conv("dw", "x", "d", "w", "wb", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=c),
             n("Transpose", ["d"], ["t"], perm=[0, 2, 3, 1])] + ln + [
             n("MatMul", ["l", "w1"], ["m1"]), n("Add", ["b1", "m1"], ["a1"])] + _gelu("a1", "h", "g1") + [
             n("MatMul", ["h", "w2"], ["m2"]), n("Add", ["b2", "m2"], ["a2"]),
             n("Transpose", ["a2"], ["back"], perm=[0, 3, 1, 2]), n("Mul", ["scale", "back"], ["s"]),
             n("Add", ["s", "x"], ["y"])]
    consts = {"w": W(c, 1, 3, 3), "wb": W(c), "w1": W(c, 4 * c), "b1": W(4 * c), "w2": W(4 * c, c), "b2": W(c),
              "scale": W(c, 1, 1), "eps": np.array(1e-6, np.float32), "two_f": np.array(2.0, np.float32),
              **_GELU_CONSTS}
    consts.update({"g": W(c) + 1, "b": W(c)} if layernorm else {"lng": W(c) + 1, "lnb": W(c)})
    return _model(nodes, consts, [1, c, 5, 6], opset=17 if layernorm else 13)


def case_convnext_block_channels_last():
    return _convnext_block(layernorm=True)


def case_convnext_block_layernorm_spelt_out():
    return _convnext_block(layernorm=False)


def case_vit_tokens_attention():
    # Patches as tokens, a class token, position embedding, multi-head
    # attention with the heads split by Reshape/Transpose/Gather, the class
    # token picked for a Gemm classifier.
    c, heads, t = 8, 2, 7  # 6 patches + the class token
    d = c // heads
    nodes = [conv("patch", "x", "p", "wp", "bp", kernel_shape=[2, 2], strides=[2, 2]),
             n("Reshape", ["p", "s_tokens"], ["r"]), n("Transpose", ["r"], ["tok"], perm=[0, 2, 1]),
             n("Concat", ["cls", "tok"], ["cat"], axis=1), n("Add", ["cat", "pos"], ["e"]),
             n("LayerNormalization", ["e", "g", "b"], ["l"], axis=-1),
             n("MatMul", ["l", "wqkv"], ["qkv0"]), n("Add", ["qkv0", "bqkv"], ["qkv"]),
             n("Reshape", ["qkv", "s_heads"], ["h5"]), n("Transpose", ["h5"], ["h5t"], perm=[2, 0, 3, 1, 4]),
             n("Gather", ["h5t", "i0"], ["q"], axis=0), n("Gather", ["h5t", "i1"], ["k"], axis=0),
             n("Gather", ["h5t", "i2"], ["v"], axis=0), n("Mul", ["q", "qscale"], ["qs"]),
             n("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]), n("MatMul", ["qs", "kt"], ["att"]),
             n("Softmax", ["att"], ["sm"], axis=-1), n("MatMul", ["sm", "v"], ["o"]),
             n("Transpose", ["o"], ["ot"], perm=[0, 2, 1, 3]), n("Reshape", ["ot", "s_merge"], ["om"]),
             n("Add", ["om", "e"], ["res"]), n("Gather", ["res", "i0"], ["first"], axis=1),
             n("Gemm", ["first", "wh", "bh"], ["y"], transB=1)]
    consts = {"wp": W(c, 3, 2, 2), "bp": W(c), "s_tokens": np.array([1, c, -1], np.int64),
              "cls": W(1, 1, c), "pos": W(1, t, c), "g": W(c) + 1, "b": W(c), "wqkv": W(c, 3 * c),
              "bqkv": W(3 * c), "s_heads": np.array([1, t, 3, heads, d], np.int64),
              "i0": np.array(0, np.int64), "i1": np.array(1, np.int64), "i2": np.array(2, np.int64),
              "qscale": np.array(d ** -0.5, np.float32), "s_merge": np.array([1, t, c], np.int64),
              "wh": W(5, c), "bh": W(5)}
    return _model(nodes, consts, [1, 3, 4, 6], opset=17)


def case_swin_windows_roll_bias_mask():
    # A cyclic shift (Slice + Concat), 2x2 windows (Reshape to 6 axes,
    # Transpose, Reshape), attention with a relative position bias and a
    # shifted-window mask added through a 5-axis view, windows merged back,
    # then patch merging (strided slices concatenated on channels).
    c, ws, hh, ww = 4, 2, 4, 4
    nw, t = (hh // ws) * (ww // ws), ws * ws
    nodes = [n("Transpose", ["x"], ["hwc"], perm=[0, 2, 3, 1]),
             n("Slice", ["hwc", "one1", "big", "ax1"], ["ra"]), n("Slice", ["hwc", "zero", "one1", "ax1"], ["rb"]),
             n("Concat", ["ra", "rb"], ["rolled"], axis=1),
             n("Reshape", ["rolled", "s_win6"], ["w6"]), n("Transpose", ["w6"], ["w6t"], perm=[0, 1, 3, 2, 4, 5]),
             n("Reshape", ["w6t", "s_win3"], ["win"]),
             n("MatMul", ["win", "wq"], ["q"]), n("MatMul", ["win", "wk"], ["k"]),
             n("Transpose", ["k"], ["kt"], perm=[0, 2, 1]), n("MatMul", ["q", "kt"], ["att"]),
             n("Add", ["att", "relbias"], ["ab"]), n("Reshape", ["ab", "s_att5"], ["a5"]),
             n("Add", ["a5", "mask"], ["am"]), n("Reshape", ["am", "s_att3"], ["a3"]),
             n("Softmax", ["a3"], ["sm"], axis=-1), n("MatMul", ["sm", "win"], ["o"]),
             n("Reshape", ["o", "s_back6"], ["b6"]), n("Transpose", ["b6"], ["b6t"], perm=[0, 1, 3, 2, 4, 5]),
             n("Reshape", ["b6t", "s_img"], ["img"]),
             n("Slice", ["img", "zero2", "big2", "ax12", "two2"], ["p0"]),
             n("Slice", ["img", "s10", "big2", "ax12", "two2"], ["p1"]),
             n("Concat", ["p0", "p1"], ["merged"], axis=-1), n("Transpose", ["merged"], ["y"], perm=[0, 3, 1, 2])]
    mask = np.zeros((1, nw, 1, t, t), np.float32)
    mask[0, 1:, 0, :2, 2:] = -100.0
    consts = {"one1": np.array([1], np.int64), "zero": np.array([0], np.int64), "big": np.array([hh], np.int64),
              "ax1": np.array([1], np.int64), "s_win6": np.array([1, hh // ws, ws, ww // ws, ws, c], np.int64),
              "s_win3": np.array([nw, t, c], np.int64), "wq": W(c, c), "wk": W(c, c), "relbias": W(t, t),
              "s_att5": np.array([1, nw, 1, t, t], np.int64), "mask": mask,
              "s_att3": np.array([nw, t, t], np.int64), "s_back6": np.array([1, hh // ws, ww // ws, ws, ws, c], np.int64),
              "s_img": np.array([1, hh, ww, c], np.int64), "zero2": np.array([0, 0], np.int64),
              "s10": np.array([1, 0], np.int64), "big2": np.array([hh, ww], np.int64),
              "ax12": np.array([1, 2], np.int64), "two2": np.array([2, 2], np.int64)}
    return _model(nodes, consts, [1, c, hh, ww], opset=17)


def case_gelu_spelt_dynamo_order():
    # torch.onnx.export(dynamo=True): 0.5 * (1 + Erf(x / sqrt 2)), then * x
    return _model([n("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]), n("MatMul", ["t", "w"], ["m"]),
                   n("Div", ["m", "sqrt2"], ["d"]), n("Erf", ["d"], ["e"]), n("Add", ["e", "one"], ["e1"]),
                   n("Mul", ["half", "e1"], ["h"]), n("Mul", ["m", "h"], ["y"])],
                  {"w": W(3, 5), **_GELU_CONSTS}, [1, 3, 2, 4], opset=18)


def case_gelu_op_opset20():
    return _model([n("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]), n("MatMul", ["t", "w"], ["m"]),
                   n("Gelu", ["m"], ["y"])], {"w": W(3, 5)}, [1, 3, 2, 4], opset=20)


def case_pad_channels_last():
    # Swin pads its channels-last tokens up to a multiple of the window.
    return _model([n("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]), n("Pad", ["t", "pads"], ["p"], mode="constant"),
                   n("Transpose", ["p"], ["y"], perm=[0, 3, 1, 2])],
                  {"pads": np.array([0, 1, 0, 0, 0, 2, 3, 0], np.int64)}, [1, 3, 4, 5])


CASES = {name[5:]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}
