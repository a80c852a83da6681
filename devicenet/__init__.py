"""devicenet: on-device image recognition with eight-bit weights.

    >>> import devicenet
    >>> model = devicenet.load()                 # the shipped EfficientNet-Lite0
    >>> result = model.classify("photo.jpg")
    >>> result.predictions[0].label, result.latency_ms["total"]
"""

__version__ = "0.1.0"

from .errors import DeviceNetError
from .model import Model, Classification, Prediction, load, default_model_path

__all__ = ["DeviceNetError", "Model", "Classification", "Prediction", "load", "default_model_path", "__version__"]
