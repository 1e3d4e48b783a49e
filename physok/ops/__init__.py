"""Ops with a fast path and a reference, chosen per call by `physok.ops.backend`.

Modules:
    backend          the dispatch rule (argument > $PHYSOK_KERNELS > auto)
    causal_conv3d    causal strided 3D convolution (reference: F.pad + F.conv3d)
"""
