// Argument checking shared by the CPU and CUDA implementations of
// physok_native::binned_spectral_power (defined in spectral_binning.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace physok_native {

// The op's inputs after validation: p, t real contiguous (L, X, Yh, 2) of one dtype (float32 or
// float64) on one device; edges contiguous float32 (n_edges,) on that device.
struct BinningArgs {
  at::Tensor p;
  at::Tensor t;
  at::Tensor edges;
  int64_t n_rows;
  int64_t x;
  int64_t y;
  int64_t yh;
  int64_t n_edges;
};

BinningArgs check_binning_args(
    const at::Tensor& pred_ft, const at::Tensor& true_ft, const at::Tensor& edges, int64_t y);

}  // namespace physok_native
