"""Builds the optional compiled kernels; the project's metadata is in setup.cfg.

``optional=True``: where no C compiler is available the install still
succeeds and the CPU backend runs on numpy alone (docs/PERFORMANCE.md).
Every instruction set's variants are enabled file by file in the sources
(native/native.h), so the module is built with the distribution's default
flags and picks its variants when it loads.
"""

from glob import glob

from setuptools import Extension, setup

NATIVE = "devicenet/backends/native/"

setup(ext_modules=[
    Extension("devicenet.backends._native", sorted(glob(NATIVE + "*.c")),
              depends=sorted(glob(NATIVE + "*.h")),
              # -fvisibility=hidden: only the module's init function is exported
              extra_compile_args=["-O3", "-fvisibility=hidden"], optional=True),
])
