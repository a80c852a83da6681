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


CASES = {name[5:]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}
