"""Builds the optional compiled kernels; the project's metadata is in setup.cfg.

``optional=True``: where no C compiler is available the install still
succeeds and the CPU backend runs on numpy alone (docs/PERFORMANCE.md).
"""

from glob import glob

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("devicenet.backends._native", sorted(glob("devicenet/backends/native/*.c")),
              depends=["devicenet/backends/native/native.h"],
              # -fvisibility=hidden: only the module's init function is exported
              extra_compile_args=["-O3", "-fvisibility=hidden"], optional=True),
])
