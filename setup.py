"""Builds the emulator's compiled fast path; everything else about the package is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "harness.emulator._fastpath",
            ["harness/emulator/_fastpath.c"],
            extra_compile_args=["-O2", "-Wall", "-Wno-missing-field-initializers"],
        )
    ]
)
