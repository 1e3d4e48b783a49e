"""Package discovery only (everything else is in pyproject.toml).

The top-level `kernels/` folder installs as `physok_kernels`: a bare `kernels` package would
collide with Hugging Face's `kernels`, and keeping the folder at the top level keeps the
architecture visible in the source tree. Likewise `csrc/` (native C++/CUDA sources, compiled on
first use) installs as `physok_csrc` with its sources as package data.
"""

from setuptools import find_packages, setup

kernel_packages = ["physok_kernels"] + [
    f"physok_kernels.{p}" for p in find_packages(where="kernels")
]
setup(
    packages=find_packages(include=["physok", "physok.*"]) + kernel_packages + ["physok_csrc"],
    package_dir={"physok_kernels": "kernels", "physok_csrc": "csrc"},
    package_data={"physok_csrc": ["*.cpp", "*.cu", "*.h"]},
)
