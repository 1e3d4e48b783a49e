"""Package discovery only (everything else is in pyproject.toml).

The top-level `kernels/` folder installs as `physok_kernels`: a bare `kernels` package would
collide with Hugging Face's `kernels`, and keeping the folder at the top level keeps the
architecture visible in the source tree.
"""

from setuptools import find_packages, setup

kernel_packages = ["physok_kernels"] + [
    f"physok_kernels.{p}" for p in find_packages(where="kernels")
]
setup(
    packages=find_packages(include=["physok", "physok.*"]) + kernel_packages,
    package_dir={"physok_kernels": "kernels"},
)
