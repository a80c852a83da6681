"""devicenet: on-device image recognition with eight-bit weights.

    >>> import devicenet
    >>> model = devicenet.load()                 # the shipped EfficientNet-Lite0
    >>> result = model.classify("photo.jpg")
    >>> result.predictions[0].label, result.latency_ms["total"]
"""

__version__ = "0.1.0"

from .errors import DeviceNetError

__all__ = ["DeviceNetError", "Model", "Classification", "Prediction", "load", "default_model_path", "__version__"]

# The API is imported on first use, so that importing the package (as the
# ``devicenet`` command does before anything else) costs nothing and a
# Ctrl-C during numpy's import is caught by the command (devicenet.__main__).
_API = ("Model", "Classification", "Prediction", "load", "default_model_path")


def __getattr__(name):
    import importlib
    if name in _API:
        return getattr(importlib.import_module(".model", __name__), name)
    if not name.startswith("_"):  # a submodule, as ``devicenet.format`` was once the API imported it
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module 'devicenet' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))
