"""Builds the optional compiled kernels; the project's metadata is in setup.cfg.

``optional=True``: where no C compiler is available the install still
succeeds and the CPU backend runs on numpy alone (docs/PERFORMANCE.md).
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("devicenet.backends._native", ["devicenet/backends/_native.c"],
              extra_compile_args=["-O3"], optional=True),
])
