// physok_native::binned_spectral_power: radial binning of spectral powers (the NEPS reduction)
// after torch's rfft2, as a torch op. This file defines the op (TORCH_LIBRARY) and its CPU
// implementation (OpenMP); spectral_binning_cuda.cu adds the CUDA one.
//
// Inputs: the rfft2 spectra of prediction and truth, (L, X, Yh = Y/2 + 1) complex or, cheaper to
// handle here and free to produce (torch.view_as_real is a view), their real (L, X, Yh, 2)
// views; float32 or float64. Edges: 1-D float32, sorted. y: the grid's Y (Yh alone does not say
// whether Y is even). Outputs: float32 (L, n_bins) per-bin sums of |P - T|^2 and |T|^2 with
// interior rfft columns weighted 2 and half-open bins edges[b] <= |k| < edges[b + 1], i.e. what
// physok.ops.spectral_binning.binned_spectral_power returns (flattened over leading dims).
//
// CPU scheme. Work is split into tiles of (a chunk of spectral rows i) x (up to 16 leading rows
// l); a tile first derives its modes' bins from the integer wavenumbers (spectral_binning.h) and
// run-length encodes them into segments of consecutive modes with one bin and one column weight
// (radial bins are contiguous along a spectral row, so a row has a handful of segments). Each
// segment is then a plain contiguous reduction over the interleaved re/im scalars: |P - T|^2 summed
// over a mode's (re, im) pair is the sum of squares over the flat scalars, so the inner loop is
// an unit-stride SIMD reduction with no bin look-up. The tiling depends only on the shape, never
// on the thread count, and partial sums are added in a fixed order: results are deterministic.
// Accumulation is in double (float64 outputs of the reference are float32 anyway).
#include "spectral_binning.h"
#include "spectral_binning_op.h"

#include <ATen/Parallel.h>
#include <ATen/ops/view_as_real.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace physok_native {

BinningArgs check_binning_args(
    const at::Tensor& pred_ft, const at::Tensor& true_ft, const at::Tensor& edges, int64_t y) {
  at::Tensor p = pred_ft.is_complex() ? at::view_as_real(pred_ft) : pred_ft;
  at::Tensor t = true_ft.is_complex() ? at::view_as_real(true_ft) : true_ft;
  TORCH_CHECK(
      p.sizes() == t.sizes(), "physok_native::binned_spectral_power: pred_ft ", p.sizes(),
      " and true_ft ", t.sizes(), " differ in shape");
  TORCH_CHECK(
      p.dim() == 4 && p.size(3) == 2,
      "physok_native::binned_spectral_power: pred_ft/true_ft must be rfft2 spectra (L, X, Yh) "
      "complex or their view_as_real (L, X, Yh, 2), got ",
      p.sizes());
  TORCH_CHECK(
      p.scalar_type() == t.scalar_type() &&
          (p.scalar_type() == at::kFloat || p.scalar_type() == at::kDouble),
      "physok_native::binned_spectral_power: pred_ft/true_ft must both be float32/complex64 or "
      "float64/complex128, got ",
      p.scalar_type(), " and ", t.scalar_type());
  TORCH_CHECK(
      p.device() == t.device(), "physok_native::binned_spectral_power: pred_ft is on ",
      p.device(), " but true_ft on ", t.device());
  TORCH_CHECK(
      y >= 1 && p.size(2) == y / 2 + 1, "physok_native::binned_spectral_power: y=", y,
      " does not match the rfft width Yh=", p.size(2), " (need Yh = y // 2 + 1)");
  TORCH_CHECK(
      edges.dim() == 1 && edges.numel() >= 2,
      "physok_native::binned_spectral_power: edges must be 1-D with at least 2 entries, got ",
      edges.sizes());
  TORCH_CHECK(
      edges.numel() < (int64_t{1} << 30), "physok_native::binned_spectral_power: too many edges");
  BinningArgs a;
  a.p = p.contiguous();
  a.t = t.contiguous();
  a.edges = edges.to(p.device(), at::kFloat).contiguous();
  a.n_rows = p.size(0);
  a.x = p.size(1);
  a.y = y;
  a.yh = p.size(2);
  a.n_edges = edges.numel();
  return a;
}

namespace {

constexpr int64_t kRowsPerTile = 16;  // leading rows sharing one bin derivation
constexpr int64_t kTargetTiles = 64;  // enough tiles to balance any realistic thread count

// A run of consecutive modes (flat index i * Yh + j) with one bin and one column weight.
struct Segment {
  int64_t start;
  int64_t len;
  int bin;
  double weight;
};

void build_segments(
    std::vector<Segment>& segs, int64_t i0, int64_t i1, int64_t x, int64_t y, int64_t yh,
    const float* edges, int n_edges) {
  const int n_bins = n_edges - 1;
  // float32(1/n) and float32(2pi), as torch's fftfreq * 2 * np.pi uses them.
  const float inv_x = static_cast<float>(1.0 / static_cast<double>(x));
  const float inv_y = static_cast<float>(1.0 / static_cast<double>(y));
  const float two_pi = static_cast<float>(2.0 * M_PI);
  segs.clear();
  for (int64_t i = i0; i < i1; ++i) {
    for (int64_t j = 0; j < yh; ++j) {
      const int b = bin_of(wavenumber_magnitude(i, j, x, inv_x, inv_y, two_pi), edges, n_edges);
      if (b < 0 || b >= n_bins) continue;  // dropped mode
      const double w = column_weight(j, y);
      const int64_t m = i * yh + j;
      if (!segs.empty()) {
        Segment& s = segs.back();
        if (s.bin == b && s.weight == w && s.start + s.len == m) {
          ++s.len;
          continue;
        }
      }
      segs.push_back({m, 1, b, w});
    }
  }
}

template <typename scalar_t>
void binned_power_cpu_kernel(const BinningArgs& a, float* err_out, float* tru_out) {
  const scalar_t* p = a.p.data_ptr<scalar_t>();
  const scalar_t* t = a.t.data_ptr<scalar_t>();
  const float* edges = a.edges.data_ptr<float>();
  const int n_edges = static_cast<int>(a.n_edges);
  const int64_t n_bins = a.n_edges - 1;
  const int64_t n_rows = a.n_rows;
  const int64_t x = a.x;
  const int64_t row_scalars = x * a.yh * 2;

  // Tile grid from the shape alone (determinism): leading-row chunks first, then enough
  // spectral-row chunks to reach ~kTargetTiles.
  const int64_t n_lc = (n_rows + kRowsPerTile - 1) / kRowsPerTile;
  const int64_t want_ic = std::min<int64_t>(x, std::max<int64_t>(1, (kTargetTiles + n_lc - 1) / n_lc));
  const int64_t ci = (x + want_ic - 1) / want_ic;
  const int64_t n_ic = (x + ci - 1) / ci;
  const int64_t n_tiles = n_ic * n_lc;

  // partials[ic][l][b]: each tile owns its (ic, l-chunk) slice, so no synchronisation.
  std::vector<double> part_e(static_cast<size_t>(n_ic * n_rows * n_bins), 0.0);
  std::vector<double> part_t(static_cast<size_t>(n_ic * n_rows * n_bins), 0.0);

  int n_threads = 1;
#ifdef _OPENMP
  n_threads = at::in_parallel_region()
      ? 1
      : static_cast<int>(std::min<int64_t>(at::get_num_threads(), n_tiles));
#endif

#pragma omp parallel num_threads(n_threads)
  {
    std::vector<Segment> segs;
#pragma omp for schedule(dynamic, 1)
    for (int64_t tile = 0; tile < n_tiles; ++tile) {
      const int64_t ic = tile / n_lc;
      const int64_t lc = tile % n_lc;
      const int64_t i0 = ic * ci;
      const int64_t i1 = std::min(x, i0 + ci);
      build_segments(segs, i0, i1, x, a.y, a.yh, edges, n_edges);
      const int64_t l1 = std::min(n_rows, (lc + 1) * kRowsPerTile);
      for (int64_t l = lc * kRowsPerTile; l < l1; ++l) {
        const scalar_t* pl = p + l * row_scalars;
        const scalar_t* tl = t + l * row_scalars;
        double* pe = part_e.data() + (ic * n_rows + l) * n_bins;
        double* pt = part_t.data() + (ic * n_rows + l) * n_bins;
        for (const Segment& s : segs) {
          const scalar_t* ps = pl + 2 * s.start;
          const scalar_t* ts = tl + 2 * s.start;
          const int64_t n = 2 * s.len;
          double se = 0.0;
          double st = 0.0;
#pragma omp simd reduction(+ : se, st)
          for (int64_t q = 0; q < n; ++q) {
            const double tv = static_cast<double>(ts[q]);
            const double d = static_cast<double>(ps[q]) - tv;
            se += d * d;
            st += tv * tv;
          }
          pe[s.bin] += s.weight * se;
          pt[s.bin] += s.weight * st;
        }
      }
    }
  }

  // Fixed-order finish over the spectral-row chunks.
  for (int64_t l = 0; l < n_rows; ++l) {
    for (int64_t b = 0; b < n_bins; ++b) {
      double se = 0.0;
      double st = 0.0;
      for (int64_t ic = 0; ic < n_ic; ++ic) {
        se += part_e[(ic * n_rows + l) * n_bins + b];
        st += part_t[(ic * n_rows + l) * n_bins + b];
      }
      err_out[l * n_bins + b] = static_cast<float>(se);
      tru_out[l * n_bins + b] = static_cast<float>(st);
    }
  }
}

std::tuple<at::Tensor, at::Tensor> binned_spectral_power_cpu(
    const at::Tensor& pred_ft, const at::Tensor& true_ft, const at::Tensor& edges, int64_t y) {
  const BinningArgs a = check_binning_args(pred_ft, true_ft, edges, y);
  TORCH_CHECK(
      a.p.device().is_cpu(), "physok_native::binned_spectral_power (CPU): inputs are on ",
      a.p.device());
  const int64_t n_bins = a.n_edges - 1;
  at::Tensor err = at::zeros({a.n_rows, n_bins}, a.p.options().dtype(at::kFloat));
  at::Tensor tru = at::zeros({a.n_rows, n_bins}, a.p.options().dtype(at::kFloat));
  if (a.n_rows == 0 || a.x == 0) return {err, tru};
  if (a.p.scalar_type() == at::kDouble) {
    binned_power_cpu_kernel<double>(a, err.data_ptr<float>(), tru.data_ptr<float>());
  } else {
    binned_power_cpu_kernel<float>(a, err.data_ptr<float>(), tru.data_ptr<float>());
  }
  return {err, tru};
}

}  // namespace

}  // namespace physok_native

TORCH_LIBRARY(physok_native, m) {
  m.def(
      "binned_spectral_power(Tensor pred_ft, Tensor true_ft, Tensor edges, int y) "
      "-> (Tensor err, Tensor true_power)");
}

TORCH_LIBRARY_IMPL(physok_native, CPU, m) {
  m.impl("binned_spectral_power", &physok_native::binned_spectral_power_cpu);
}
