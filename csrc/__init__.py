"""Native C++ (CPU, OpenMP) and CUDA sources for physok's torch ops, installed as `physok_csrc`.

The sources are compiled on first use by `physok.ops.native_build` (torch.utils.cpp_extension);
this package only locates them.
"""

from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent
