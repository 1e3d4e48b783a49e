"""Ops with a fast path and a reference, chosen per call by `physok.ops.backend`.

Modules:
    backend          the dispatch rule (argument > $PHYSOK_KERNELS > auto)
    native_build     on-demand build of the csrc/ native ops (backend "native"), fallback
    attention        attention(q, k, v, *, bias, causal, scale, backend): flash / sdpa / math,
                     its own rule (argument > $PHYSOK_ATTENTION > auto; reference: math)
    causal_conv3d    causal strided 3D convolution (reference: F.pad + F.conv3d)
    rms_normalise    rms_normalise, rms_denormalise: per-sample, per-field RMS scaling
                     (reference: physok.data.normalise)
    spectral_binning binned_spectral_power, bin_mode_counts, wavenumber_magnitude,
                     the_well_bin_edges: radial binning of |P - T|² and |T|² for NEPS
                     (reference: torch.fft.rfft2 + masked sums)
"""
