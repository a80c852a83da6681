"""EfficientNet-Lite written directly in PyTorch, as an independent oracle:
exported to ONNX it exercises the ONNX importer on a real network."""

import torch
from torch import nn

STRIDES = (1, 2, 2, 2, 1, 2, 1)


def conv_bn(sd, conv, bn, stride, groups=1, act=True):
    w = sd[f"{conv}.weight"]
    c = nn.Conv2d(w.shape[1] * groups, w.shape[0], w.shape[2], stride, w.shape[2] // 2, groups=groups, bias=False)
    c.weight.data = w
    b = nn.BatchNorm2d(w.shape[0], eps=1e-3)
    for k in ("weight", "bias", "running_mean", "running_var"):
        getattr(b, k).data = sd[f"{bn}.{k}"]
    return nn.Sequential(c, b, nn.ReLU6()) if act else nn.Sequential(c, b)


class Block(nn.Module):
    def __init__(self, sd, p, stride):
        super().__init__()
        layers = []
        if f"{p}_expand_conv.weight" in sd:
            layers.append(conv_bn(sd, f"{p}_expand_conv", f"{p}_bn0", 1))
        ch = sd[f"{p}_depthwise_conv.weight"].shape[0]
        layers.append(conv_bn(sd, f"{p}_depthwise_conv", f"{p}_bn1", stride, groups=ch))
        layers.append(conv_bn(sd, f"{p}_project_conv", f"{p}_bn2", 1, act=False))
        self.body = nn.Sequential(*layers)
        cin = sd[f"{p}_expand_conv.weight"].shape[1] if f"{p}_expand_conv.weight" in sd else ch
        self.skip = stride == 1 and cin == sd[f"{p}_project_conv.weight"].shape[0]

    def forward(self, x):
        y = self.body(x)
        return y + x if self.skip else y


class Lite(nn.Module):
    def __init__(self, sd):
        super().__init__()
        blocks, stage, prev = [], -1, None
        n = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("_blocks."))
        for i in range(n):
            p = f"_blocks.{i}."
            cin = (sd[f"{p}_expand_conv.weight"].shape[1] if f"{p}_expand_conv.weight" in sd
                   else sd[f"{p}_depthwise_conv.weight"].shape[0])
            cout = sd[f"{p}_project_conv.weight"].shape[0]
            first = prev is None or cin != cout
            stage += first
            prev = cout
            blocks.append(Block(sd, p, STRIDES[stage] if first else 1))
        self.net = nn.Sequential(conv_bn(sd, "_conv_stem", "_bn0", 2), *blocks,
                                 conv_bn(sd, "_conv_head", "_bn1", 1))
        self.fc = nn.Linear(sd["_fc.weight"].shape[1], sd["_fc.weight"].shape[0])
        self.fc.weight.data, self.fc.bias.data = sd["_fc.weight"], sd["_fc.bias"]

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.net(x), 1), 1))


def export_onnx(checkpoint, path, size=224):
    import warnings
    sd = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = Lite(sd).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(path), dynamo=False, opset_version=13,
                          input_names=["x"], output_names=["logits"])
    return model
