# setuptools needs this file only to pass cffi_modules: the C kernels in csrc/ are
# compiled through cffi during `pip install` / `pip install -e .`.
from setuptools import setup

setup(cffi_modules=["cdfast/_kernels/_cffi_build.py:ffibuilder"])
