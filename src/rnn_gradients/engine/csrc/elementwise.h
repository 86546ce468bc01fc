// What the compiled kernels share: the vector type ATen's own kernels use at this build's instruction set, the
// block width of ATen's elementwise loops, ATen's lerp, and the entry points defined outside recurrence.cpp.
#pragma once

#include <ATen/cpu/vec/vec.h>
#include <torch/extension.h>

#include <cmath>
#include <vector>

namespace rnn_gradients {

using Vec = at::vec::Vectorized<float>;

// ATen's elementwise loops (cpu_kernel_vec) take two vectors at a time and the remainder with the scalar function.
constexpr int64_t kChunk = 2 * Vec::size();

// a*b + c as ATen's kernels compute an expression of that form that their source writes as a product and a sum: torch
// is built with GCC's default contraction, so its AVX2 and AVX512 kernels (compiled with -mfma) round it once, as
// one FMA, and its DEFAULT kernels twice.
inline float contracted(float a, float b, float c) {
#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

inline Vec contracted(const Vec& a, const Vec& b, const Vec& c) {
#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
  return at::vec::fmadd(a, b, c);
#else
  return a * b + c;
#endif
}

// lerp(start, end, w) as ATen's kernel: start + w (end - start) where |w| < 0.5, else end - (end - start)(1 - w),
// each as one FMA (its vectors with the coefficient w or w - 1, its scalars contracted alike).
inline float lerp(float start, float end, float weight) {
  const bool small = std::abs(weight) < 0.5f;
  return std::fma(small ? weight : weight - 1.f, end - start, small ? start : end);
}

inline Vec lerp(const Vec& start, const Vec& end, const Vec& weight) {
  const Vec small = weight.abs() < Vec(0.5f);
  return at::vec::fmadd(Vec::blendv(weight - Vec(1.f), weight, small), end - start, Vec::blendv(end, start, small));
}

// update.cpp: [‖g‖ over all gradients, ‖g‖ of each of ``groups`` groups] (training.GradientMeter.measure; gradient
// k belongs to group group_of[k]), in float64.
std::vector<double> gradient_norms(const std::vector<at::Tensor>& grads, const at::Tensor& group_of,
                                   int64_t groups);

// update.cpp: one Adam update of every parameter, in place (rnn_gradients.engine.optimizers.Adam); false, with
// nothing updated, where a tensor is not a contiguous float32 CPU tensor of its parameter's size.
bool adam_update(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& grads,
                 const std::vector<at::Tensor>& exp_avgs, const std::vector<at::Tensor>& exp_avg_sqs, double weight,
                 double beta2, double value, double eps, const std::vector<double>& bias_corrections2_sqrt,
                 const std::vector<double>& neg_step_sizes);

}  // namespace rnn_gradients
