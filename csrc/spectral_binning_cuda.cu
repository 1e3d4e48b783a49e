// CUDA implementation of physok_native::binned_spectral_power (the op and its CPU kernel are in
// spectral_binning.cpp; same inputs, outputs and conventions).
//
// Grid: blockIdx.x owns kThreads * kVec consecutive modes of the flattened (X, Yh) half-spectrum
// (each thread kVec consecutive modes, so a warp reads one contiguous stretch of every row),
// blockIdx.y a group of up to `rows` leading rows. A thread derives its modes' bins once from
// the integer wavenumbers (spectral_binning.h, IEEE-rounded float ops as the reference) and reuses
// them for every row of its group. Per row it sums its modes' weighted |P - T|^2 and |T|^2, then
// adds them into a per-block shared-memory histogram (rows x 2 x n_bins): warps whose modes all
// fall in one bin (most of them: radial bins are contiguous along a spectral row) reduce with
// shuffles first and issue one shared atomic; other threads add per run of equal bins. At the
// end each block adds each (row, bin) of its histogram to the global sums with one atomic.
// Accumulation is float for float32 inputs (double for float64). Global float atomics make the
// summation order, hence the last bits, vary from run to run.
#include "spectral_binning.h"
#include "spectral_binning_op.h"

#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <tuple>

namespace physok_native {
namespace {

constexpr int kThreads = 256;  // a multiple of 32: every warp is full for the shuffles
constexpr int kVec = 4;        // consecutive modes per thread
constexpr int kMaxRows = 8;    // leading rows per block sharing the bin derivation
constexpr unsigned kFullMask = 0xffffffffu;
constexpr size_t kSharedBudget = 48 * 1024;  // default dynamic shared memory limit

template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t v) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    v += __shfl_down_sync(kFullMask, v, offset);
  }
  return v;
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) binned_power_kernel(
    const scalar_t* __restrict__ p,
    const scalar_t* __restrict__ t,
    const float* __restrict__ edges,
    int n_edges,
    int64_t n_rows,
    int64_t x,
    int64_t y,
    int64_t yh,
    float inv_x,
    float inv_y,
    float two_pi,
    int rows,
    acc_t* __restrict__ err_out,
    acc_t* __restrict__ tru_out) {
  // Dynamic shared memory: histogram [rows][2][n_bins] of acc_t, then the edges.
  extern __shared__ __align__(sizeof(double)) unsigned char smem[];
  const int n_bins = n_edges - 1;
  acc_t* hist = reinterpret_cast<acc_t*>(smem);
  float* s_edges = reinterpret_cast<float*>(hist + static_cast<int64_t>(rows) * 2 * n_bins);
  for (int q = threadIdx.x; q < rows * 2 * n_bins; q += blockDim.x) hist[q] = acc_t(0);
  for (int q = threadIdx.x; q < n_edges; q += blockDim.x) s_edges[q] = edges[q];
  __syncthreads();

  // This thread's modes: bin (-1 = dropped or past the end) and column weight.
  const int64_t n_modes = x * yh;
  const int64_t m0 = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) * kVec;
  int bin[kVec];
  acc_t weight[kVec];
#pragma unroll
  for (int v = 0; v < kVec; ++v) {
    const int64_t m = m0 + v;
    bin[v] = -1;
    weight[v] = acc_t(0);
    if (m < n_modes) {
      const int64_t i = m / yh;
      const int64_t j = m - i * yh;
      const int b = bin_of(wavenumber_magnitude(i, j, x, inv_x, inv_y, two_pi), s_edges, n_edges);
      if (b >= 0 && b < n_bins) {
        bin[v] = b;
        weight[v] = acc_t(column_weight(j, y));
      }
    }
  }
  // One bin for all of this thread's live modes (or none live)? Then is it the warp's one bin?
  int my_bin = -1;
  bool single = true;
#pragma unroll
  for (int v = 0; v < kVec; ++v) {
    if (bin[v] >= 0) {
      if (my_bin >= 0 && bin[v] != my_bin) single = false;
      my_bin = bin[v];
    }
  }
  const unsigned live = __ballot_sync(kFullMask, my_bin >= 0);
  const int lead_lane = live ? __ffs(live) - 1 : 0;
  const int warp_bin = __shfl_sync(kFullMask, my_bin, lead_lane);
  const bool warp_uniform = __all_sync(kFullMask, single && (my_bin < 0 || my_bin == warp_bin));
  const int lane = threadIdx.x & 31;

  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * rows;
  for (int r = 0; r < rows; ++r) {
    const int64_t row = row0 + r;
    if (row >= n_rows) break;  // uniform across the block: no shuffle is left half-done
    const scalar_t* pr = p + row * n_modes * 2;
    const scalar_t* tr = t + row * n_modes * 2;
    acc_t* h_err = hist + static_cast<int64_t>(r) * 2 * n_bins;
    acc_t* h_tru = h_err + n_bins;
    if (warp_uniform) {
      acc_t se = acc_t(0);
      acc_t st = acc_t(0);
#pragma unroll
      for (int v = 0; v < kVec; ++v) {
        if (bin[v] >= 0) {
          const int64_t m = m0 + v;
          const acc_t p_re = static_cast<acc_t>(pr[2 * m]);
          const acc_t p_im = static_cast<acc_t>(pr[2 * m + 1]);
          const acc_t t_re = static_cast<acc_t>(tr[2 * m]);
          const acc_t t_im = static_cast<acc_t>(tr[2 * m + 1]);
          const acc_t d_re = p_re - t_re;
          const acc_t d_im = p_im - t_im;
          se += weight[v] * (d_re * d_re + d_im * d_im);
          st += weight[v] * (t_re * t_re + t_im * t_im);
        }
      }
      se = warp_sum(se);
      st = warp_sum(st);
      if (lane == 0 && live) {
        atomicAdd(h_err + warp_bin, se);
        atomicAdd(h_tru + warp_bin, st);
      }
    } else {
      int cur = -1;
      acc_t se = acc_t(0);
      acc_t st = acc_t(0);
#pragma unroll
      for (int v = 0; v < kVec; ++v) {
        if (bin[v] < 0) continue;
        if (bin[v] != cur) {
          if (cur >= 0) {
            atomicAdd(h_err + cur, se);
            atomicAdd(h_tru + cur, st);
          }
          cur = bin[v];
          se = acc_t(0);
          st = acc_t(0);
        }
        const int64_t m = m0 + v;
        const acc_t p_re = static_cast<acc_t>(pr[2 * m]);
        const acc_t p_im = static_cast<acc_t>(pr[2 * m + 1]);
        const acc_t t_re = static_cast<acc_t>(tr[2 * m]);
        const acc_t t_im = static_cast<acc_t>(tr[2 * m + 1]);
        const acc_t d_re = p_re - t_re;
        const acc_t d_im = p_im - t_im;
        se += weight[v] * (d_re * d_re + d_im * d_im);
        st += weight[v] * (t_re * t_re + t_im * t_im);
      }
      if (cur >= 0) {
        atomicAdd(h_err + cur, se);
        atomicAdd(h_tru + cur, st);
      }
    }
  }
  __syncthreads();
  // One global atomic per (row, bin) and output; untouched bins (exact zeros) are skipped.
  for (int q = threadIdx.x; q < rows * n_bins; q += blockDim.x) {
    const int r = q / n_bins;
    const int b = q - r * n_bins;
    const int64_t row = row0 + r;
    if (row >= n_rows) continue;
    const acc_t e = hist[static_cast<int64_t>(r) * 2 * n_bins + b];
    const acc_t s = hist[static_cast<int64_t>(r) * 2 * n_bins + n_bins + b];
    if (e != acc_t(0)) atomicAdd(err_out + row * n_bins + b, e);
    if (s != acc_t(0)) atomicAdd(tru_out + row * n_bins + b, s);
  }
}

template <typename scalar_t, typename acc_t>
void launch(const BinningArgs& a, const at::Tensor& err, const at::Tensor& tru) {
  const int n_edges = static_cast<int>(a.n_edges);
  const int64_t n_bins = a.n_edges - 1;
  const size_t per_row = 2 * static_cast<size_t>(n_bins) * sizeof(acc_t);
  const size_t edge_bytes = static_cast<size_t>(n_edges) * sizeof(float);
  TORCH_CHECK(
      per_row + edge_bytes <= kSharedBudget,
      "physok_native::binned_spectral_power (CUDA): ", n_bins,
      " bins do not fit the per-block shared-memory histograms (at most ",
      (kSharedBudget - sizeof(float)) / (2 * sizeof(acc_t) + sizeof(float)),
      " bins for this dtype); use fewer bins or the CPU");
  int rows = static_cast<int>(std::min<int64_t>(kMaxRows, a.n_rows));
  rows = static_cast<int>(
      std::min<size_t>(static_cast<size_t>(rows), (kSharedBudget - edge_bytes) / per_row));
  const size_t shared = static_cast<size_t>(rows) * per_row + edge_bytes;
  const int64_t n_modes = a.x * a.yh;
  const int64_t modes_per_block = static_cast<int64_t>(kThreads) * kVec;
  const int64_t grid_x = (n_modes + modes_per_block - 1) / modes_per_block;
  const int64_t grid_y = (a.n_rows + rows - 1) / rows;
  TORCH_CHECK(
      grid_x < (int64_t{1} << 31) && grid_y <= 65535,
      "physok_native::binned_spectral_power (CUDA): too many modes or rows for one launch (",
      n_modes, " modes, ", a.n_rows, " rows); split the batch");
  const dim3 grid(static_cast<unsigned>(grid_x), static_cast<unsigned>(grid_y));
  const float inv_x = static_cast<float>(1.0 / static_cast<double>(a.x));
  const float inv_y = static_cast<float>(1.0 / static_cast<double>(a.y));
  const float two_pi = static_cast<float>(2.0 * M_PI);
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(a.p.device().index()).stream();
  binned_power_kernel<scalar_t, acc_t><<<grid, kThreads, shared, stream>>>(
      a.p.data_ptr<scalar_t>(),
      a.t.data_ptr<scalar_t>(),
      a.edges.data_ptr<float>(),
      n_edges,
      a.n_rows,
      a.x,
      a.y,
      a.yh,
      inv_x,
      inv_y,
      two_pi,
      rows,
      err.data_ptr<acc_t>(),
      tru.data_ptr<acc_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

std::tuple<at::Tensor, at::Tensor> binned_spectral_power_cuda(
    const at::Tensor& pred_ft, const at::Tensor& true_ft, const at::Tensor& edges, int64_t y) {
  const BinningArgs a = check_binning_args(pred_ft, true_ft, edges, y);
  TORCH_CHECK(
      a.p.is_cuda(), "physok_native::binned_spectral_power (CUDA): inputs are on ", a.p.device());
  const c10::cuda::CUDAGuard guard(a.p.device());
  const int64_t n_bins = a.n_edges - 1;
  const bool f64 = a.p.scalar_type() == at::kDouble;
  const auto acc_opts = a.p.options().dtype(f64 ? at::kDouble : at::kFloat);
  at::Tensor err = at::zeros({a.n_rows, n_bins}, acc_opts);
  at::Tensor tru = at::zeros({a.n_rows, n_bins}, acc_opts);
  if (a.n_rows > 0 && a.x > 0) {
    if (f64) {
      launch<double, double>(a, err, tru);
    } else {
      launch<float, float>(a, err, tru);
    }
  }
  return {err.to(at::kFloat), tru.to(at::kFloat)};
}

}  // namespace
}  // namespace physok_native

TORCH_LIBRARY_IMPL(physok_native, CUDA, m) {
  m.impl("binned_spectral_power", &physok_native::binned_spectral_power_cuda);
}
