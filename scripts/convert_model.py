#!/usr/bin/env python3
"""Convert a trained model to .dnet from a checkout, without installing.

    python scripts/convert_model.py SOURCE OUTPUT [options]

The same as ``devicenet convert`` (``--help`` lists the options): SOURCE is
an .onnx file or an EfficientNet-Lite .pth checkpoint.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from devicenet.cli import convert  # noqa: E402

if __name__ == "__main__":
    convert(prog_name="convert_model.py")
