// Shared by the CPU (spectral_binning.cpp) and CUDA (spectral_binning_cuda.cu) binning ops: the
// wavenumber-magnitude recipe, the bin search and the rfft column weight, so both builds put
// every mode in the same bin as physok.ops.spectral_binning.wavenumber_magnitude + bucketize.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define PHYSOK_HD __host__ __device__ __forceinline__
#else
#define PHYSOK_HD inline
#endif

namespace physok_native {

// |k| (radians per cell) of rfft2 mode (i, j) on an (x, y) grid, as the_well computes it in
// float32: w = (float(|f|) * float32(1/n)) * float32(2pi) per axis, |k| = sqrt(wx*wx + wy*wy),
// every operation IEEE-rounded. Ties with bin edges are real (e.g. mode (32, 0) of a 256 grid
// sits on the_well's middle edge), so no FMA contraction and a correctly rounded sqrt.
PHYSOK_HD float wavenumber_magnitude(
    int64_t i, int64_t j, int64_t x, float inv_x, float inv_y, float two_pi) {
  // Row index i >= (x + 1) / 2 stands for the negative frequency i - x; only |.| matters.
  const int64_t ki = i < x - i ? i : x - i;
#if defined(__CUDA_ARCH__)
  // Explicit round-to-nearest intrinsics: nvcc never contracts these into an FMA.
  const float wx = __fmul_rn(__fmul_rn(static_cast<float>(ki), inv_x), two_pi);
  const float wy = __fmul_rn(__fmul_rn(static_cast<float>(j), inv_y), two_pi);
  return __fsqrt_rn(__fadd_rn(__fmul_rn(wx, wx), __fmul_rn(wy, wy)));
#else
  const float wx = (static_cast<float>(ki) * inv_x) * two_pi;
  const float wy = (static_cast<float>(j) * inv_y) * two_pi;
  const float sx = wx * wx;
  const float sy = wy * wy;
  // The add goes through double and is rounded once to float: exact to the float add (double
  // has > 2*24+2 bits, so the double rounding is innocuous), and a float multiply cannot be
  // contracted with a double add into an FMA whatever -ffp-contract says.
  const float k2 = static_cast<float>(static_cast<double>(sx) + static_cast<double>(sy));
  return std::sqrt(k2);  // IEEE sqrt (sqrtss): correctly rounded
#endif
}

// bucketize(k, edges, right=True) - 1: (number of edges <= k) - 1, by binary search over the
// sorted float32 edges. -1 below edges[0]; n_edges - 1 (= n_bins, out of range) at/above the last.
PHYSOK_HD int bin_of(float k, const float* edges, int n_edges) {
  int lo = 0;
  int hi = n_edges;
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (edges[mid] <= k) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo - 1;
}

// The dropped half of the rfft spectrum mirrors every column except 0 and, for even y, y / 2.
PHYSOK_HD int column_weight(int64_t j, int64_t y) { return (j == 0 || 2 * j == y) ? 1 : 2; }

}  // namespace physok_native
