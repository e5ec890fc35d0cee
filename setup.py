"""Build of the C extension `framepool._ring`; everything else is in pyproject.toml.

FRAMEPOOL_SANITIZE=1 builds with AddressSanitizer and UBSan (the sanitizer test job);
FRAMEPOOL_DEBUG=1 builds without optimisation and with assertions.
"""

import os

from setuptools import Extension, setup

extra_compile_args = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"]
extra_link_args: list[str] = []
if os.environ.get("FRAMEPOOL_DEBUG"):
    extra_compile_args += ["-O0", "-g", "-UNDEBUG"]
if os.environ.get("FRAMEPOOL_SANITIZE"):
    flags = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
    extra_compile_args += flags
    extra_link_args += flags

setup(
    ext_modules=[
        Extension(
            "framepool._ring",
            sources=["native/ring.c"],
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
        )
    ]
)
