// The time loops of rnn_gradients.engine.bptt (the vanilla recurrences and the GRU's), gru_norm_bptt, lstm_norm_bptt
// and fused_batch_norm in C++, bit for bit the arithmetic of their plain-torch paths.
//
// Each loop calls the same ATen GEMMs as the Python loop (addmm_, mm_out, addmm_out) and, for a normalization, the
// CPU kernels that at::native_layer_norm and at::native_batch_norm (and their backwards) call, directly through
// their dispatch stubs with buffers made once per sequence (struct LayerNorm, struct BatchNorm). It does each step's
// elementwise work (the activation, or the gradient times the activation's derivative) in one pass over the step's
// (B, H) block instead of one torch call per op. Every element goes through the operations of the ATen kernels the
// Python path calls, in their order and with their rounding:
//
//   sigmoid      at::vec::Vectorized: (1 + exp(-a)).reciprocal(), exp by Sleef; the scalar tail 1 / (1 + std::exp(-a))
//   tanh         2 sigmoid(2a) - 1 from the doubled pre-activation (bptt.tanh_from_twice): round(2s - 1)
//   ReLU         clamp_min(a, 0): at::vec::clamp_min, the scalar tail NaN-preserving max
//   tanh'        grad * (1 - h*h), each product and difference rounded (as h*h, 1.0 - ·, mul_)
//   sigmoid'     grad * (h * (1 - h))
//   ReLU'        threshold_backward: h <= 0 ? 0 : grad (a NaN state lets the gradient through)
//   lerp         start + w (end - start) where |w| < 0.5, else end - (end - start)(1 - w), each as one FMA (ATen's
//                lerp kernel: its vectors with the coefficient w or w - 1, its scalars contracted alike)
//   addcmul      s + v t1 t2 as one FMA of (v t1) and t2 onto s (ATen's kernel, vectors and scalars alike)
//   add, mul, 1 - x: one rounding per operation, in the Python expression's order (no transcendental: vector and
//                scalar code round alike)
//
// ATen's elementwise loops (cpu_kernel_vec) take two vectors at a time and the remainder with the scalar
// function; so do these, so that a block whose size is not a multiple of 2 vectors rounds its tail the same way.
// The file is compiled for the instruction set torch's own kernels run with (CPU_CAPABILITY, set by
// rnn_gradients.engine.extension), and the extension is used only after a check on this machine that it gives the
// Python path's results bit for bit; contraction of a*b + c into an FMA is off (-ffp-contract=off).

// DispatchStub.h declares its dispatch with one kernel pointer per instruction set torch's build compiled, as these
// macros say; torch's x86-64 builds compile AVX512 and AVX2 kernels (libtorch_cpu exports
// DispatchStubImpl::get_call_ptr with those two pointers beside DEFAULT). Where a build differs, the module does not
// load, and the plain-torch loops run (rnn_gradients.engine.extension).
#if defined(__x86_64__)
#define HAVE_AVX512_CPU_DEFINITION
#define HAVE_AVX2_CPU_DEFINITION
#endif
#include <ATen/native/batch_norm.h>
#include <ATen/native/layer_norm.h>
#include <torch/extension.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <optional>
#include <vector>

#include "elementwise.h"

namespace {

using rnn_gradients::contracted;
using rnn_gradients::kChunk;
using rnn_gradients::lerp;
using rnn_gradients::Vec;

enum Kind : int64_t { kTanh = 0, kSigmoid = 1, kRelu = 2 };

inline Vec sigmoid(const Vec& a) { return (Vec(1.f) + a.neg().exp()).reciprocal(); }
inline float sigmoid(float a) { return 1.f / (1.f + std::exp(-a)); }

inline Vec activate(int64_t kind, const Vec& a) {
  switch (kind) {
    case kTanh: return at::vec::fmadd(sigmoid(a), Vec(2.f), Vec(-1.f));
    case kSigmoid: return sigmoid(a);
    default: return at::vec::clamp_min(a, Vec(0.f));
  }
}

inline float activate(int64_t kind, float a) {
  switch (kind) {
    case kTanh: return 2.f * sigmoid(a) - 1.f;
    case kSigmoid: return sigmoid(a);
    default: return std::isnan(a) ? a : (a < 0.f ? 0.f : a);
  }
}

// grad * phi'(a) from h = phi(a).
inline Vec backward(int64_t kind, const Vec& grad, const Vec& h) {
  switch (kind) {
    case kTanh: return grad * (Vec(1.f) - h * h);
    case kSigmoid: return grad * (h * (Vec(1.f) - h));
    default: return Vec::blendv(grad, Vec(0.f), h <= Vec(0.f));
  }
}

inline float backward(int64_t kind, float grad, float h) {
  switch (kind) {
    case kTanh: return grad * (1.f - h * h);
    case kSigmoid: return grad * (h * (1.f - h));
    default: return h <= 0.f ? 0.f : grad;
  }
}

// out[i] = phi(in[i]); in and out may be the same block.
void activate_block(int64_t kind, const float* in, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + kChunk <= n; i += kChunk) {
    const Vec a0 = Vec::loadu(in + i), a1 = Vec::loadu(in + i + Vec::size());
    activate(kind, a0).store(out + i);
    activate(kind, a1).store(out + i + Vec::size());
  }
  for (; i < n; ++i) out[i] = activate(kind, in[i]);
}

// grad[i] *= phi'(a_i), in place.
void backward_block(int64_t kind, float* grad, const float* h, int64_t n) {
  int64_t i = 0;
  for (; i + kChunk <= n; i += kChunk) {
    const Vec g0 = Vec::loadu(grad + i), g1 = Vec::loadu(grad + i + Vec::size());
    const Vec h0 = Vec::loadu(h + i), h1 = Vec::loadu(h + i + Vec::size());
    backward(kind, g0, h0).store(grad + i);
    backward(kind, g1, h1).store(grad + i + Vec::size());
  }
  for (; i < n; ++i) grad[i] = backward(kind, grad[i], h[i]);
}

void check_block(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous(), name,
              " must be a contiguous float32 CPU tensor");
}

void check_blocks(std::initializer_list<const at::Tensor*> tensors, const char* name) {
  for (const at::Tensor* t : tensors) check_block(*t, name);
}

// The rows t = 0, 1, ... of a (T, ...) block as tensors, for the ATen calls that take one step's block. at::unbind
// makes a view per row, about half a microsecond each and hundreds a sequence here; Rows makes three views once and
// moves their storage offset, row t going to view t mod 3. So the tensor for row t stays row t while rows t - 1, t
// and t + 1 are asked for (the step at hand and its neighbours: how every loop here walks its blocks), and no longer
// once row t - 3 or t + 3 is. Default-constructed: no rows (a model read out at its last step has no per-step
// gradients from the outputs).
class Rows {
 public:
  Rows() = default;

  explicit Rows(const at::Tensor& block)
      : size_(block.size(0)), stride_(block.stride(0)), offset_(block.storage_offset()) {
    TORCH_CHECK(block.dim() >= 1 && size_ > 0, "rows of a (T, ...) block with T > 0");
    for (at::Tensor& view : views_) view = block.select(0, 0);
  }

  explicit Rows(const std::optional<at::Tensor>& block) : Rows(block.has_value() ? Rows(*block) : Rows()) {}

  // A copy would share the three views, and so their offsets: moves only.
  Rows(const Rows&) = delete;
  Rows& operator=(const Rows&) = delete;
  Rows(Rows&&) = default;
  Rows& operator=(Rows&&) = default;

  at::Tensor& operator[](int64_t t) const {
    at::Tensor& view = views_[t % kViews];
    view.unsafeGetTensorImpl()->set_storage_offset(offset_ + t * stride_);
    return view;
  }

  int64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  static constexpr int64_t kViews = 3;
  mutable std::array<at::Tensor, kViews> views_;
  int64_t size_ = 0, stride_ = 0, offset_ = 0;
};

// The gradient arriving at step t-1's states through the recurrence: g_{t-1} + d W_hh, or d W_hh alone.
void recurrent_grad(at::Tensor& out, const Rows& grads, int64_t t, const at::Tensor& d,
                    const at::Tensor& w_hh) {
  if (!grads.empty()) {
    at::addmm_out(out, grads[t - 1], d, w_hh);
  } else {
    at::mm_out(out, d, w_hh);
  }
}

// Forward: hs (T+1, B, H) holds h_0 = 0 in row 0 and s*u_t in row t (s = 2 for tanh, else 1); row t+1 becomes
// h_{t+1} = phi(s*u_t + s*h_t W_hh^T) in place (w_t = W_hh^T).
void vanilla_forward(at::Tensor hs, const at::Tensor& w_t, int64_t kind, double scale) {
  check_block(hs, "hs");
  const Rows rows(hs);
  const int64_t n = rows[0].numel();
  for (int64_t t = 0; t + 1 < rows.size(); ++t) {
    float* a = rows[t + 1].addmm_(rows[t], w_t, 1.0, scale).data_ptr<float>();
    activate_block(kind, a, a, n);
  }
}

// Forward without a state buffer (evaluation): u (T, B, H) holds s*u_t and becomes h_1..h_T in place.
void vanilla_states(at::Tensor u, const at::Tensor& w_t, int64_t kind, double scale) {
  check_block(u, "u");
  const Rows rows(u);
  const int64_t n = rows[0].numel();
  activate_block(kind, rows[0].data_ptr<float>(), rows[0].data_ptr<float>(), n);
  for (int64_t t = 1; t < rows.size(); ++t) {
    float* a = rows[t].addmm_(rows[t - 1], w_t, 1.0, scale).data_ptr<float>();
    activate_block(kind, a, a, n);
  }
}

// Backward: delta (T, B, H) becomes dL/da_t for every step, from hs (the forward's states) and the gradients
// arriving from the outputs: final = g_T, and outputs (T, B, H) = g_1..g_T or none (a model read out at h_T).
//   delta_T = g_T * phi'(a_T);   delta_{t-1} = (g_{t-1} + delta_t W_hh) * phi'(a_{t-1})
void vanilla_backward(at::Tensor delta, const at::Tensor& hs, const at::Tensor& w_hh, int64_t kind,
                      const at::Tensor& final, const std::optional<at::Tensor>& outputs) {
  check_block(delta, "delta");
  check_block(hs, "hs");
  const Rows rows(delta), grads(outputs);
  const int64_t steps = rows.size(), n = rows[0].numel();
  rows[steps - 1].copy_(final);
  const float* states = hs.data_ptr<float>();
  backward_block(kind, rows[steps - 1].data_ptr<float>(), states + steps * n, n);
  for (int64_t t = steps - 1; t > 0; --t) {
    recurrent_grad(rows[t - 1], grads, t, rows[t], w_hh);
    backward_block(kind, rows[t - 1].data_ptr<float>(), states + t * n, n);
  }
}

// add_activate: out[i] = phi(y[i] + u[i]) (batch norm: the normalized recurrent term plus the input part).
void add_activate_block(int64_t kind, const float* y, const float* u, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + kChunk <= n; i += kChunk) {
    const Vec a0 = Vec::loadu(y + i) + Vec::loadu(u + i);
    const Vec a1 = Vec::loadu(y + i + Vec::size()) + Vec::loadu(u + i + Vec::size());
    activate(kind, a0).store(out + i);
    activate(kind, a1).store(out + i + Vec::size());
  }
  for (; i < n; ++i) out[i] = activate(kind, y[i] + u[i]);
}

// Layer norm over the rows of a contiguous (rows, n) block, as at::native_layer_norm and its backward compute it:
// their own CPU kernels (the dispatch stubs LayerNormKernel and LayerNormBackwardKernel), called with buffers made
// once per sequence. at::native_layer_norm checks its arguments and allocates its three outputs on every call, 4-5
// microseconds of a 10-microsecond step here; the kernel it then calls is this one, so the results are its bit for bit.
struct LayerNorm {
  at::Tensor gain, beta, dgain, dbeta;  // dgain, dbeta: per-step scratch of n floats each
  int64_t rows, n;

  LayerNorm(const at::Tensor& gain_, const at::Tensor& beta_, const at::Tensor& block)
      : gain(gain_.contiguous()), beta(beta_.contiguous()), rows(block.size(0)), n(block.size(1)) {
    check_block(block, "a layer-normalized block");
    check_block(gain, "the layer norm's gain");
    check_block(beta, "the layer norm's shift");
    TORCH_CHECK(block.dim() == 2 && gain.numel() == n && beta.numel() == n && rows > 0 && n > 0,
                "layer norm over (rows, n) blocks with a gain and a shift of n each");
    dgain = gain.new_empty({n});
    dbeta = gain.new_empty({n});
  }

  // y = LN(x) with rstd = 1 / sqrt(var + eps), and the row statistics into mean and rstd (rows floats each).
  void forward(const at::Tensor& x, double eps, at::Tensor& y, at::Tensor& mean, at::Tensor& rstd) const {
    at::native::LayerNormKernel(at::kCPU, x, gain, beta, rows, n, eps, &y, &mean, &rstd);
  }

  // dx = dL/dx from dy = dL/dy (the gain's and the shift's gradients are not computed here).
  void backward(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& mean, const at::Tensor& rstd,
                at::Tensor& dx) const {
    at::Tensor no_gain_grad, no_beta_grad;
    at::native::LayerNormBackwardKernel(at::kCPU, dy, x, mean, rstd, gain, rows, n, &dx, &no_gain_grad, &no_beta_grad);
  }

  // dx as backward, and this block's dL/dgain and dL/dshift added to grad_gain and grad_shift (n each), as
  // native_layer_norm_backward computes all three (step_norm.StepNorm.backward adds its per-step results alike).
  void backward(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& mean, const at::Tensor& rstd,
                at::Tensor& dx, at::Tensor& grad_gain, at::Tensor& grad_shift) {
    at::native::LayerNormBackwardKernel(at::kCPU, dy, x, mean, rstd, gain, rows, n, &dx, &dgain, &dbeta);
    grad_gain.add_(dgain);
    grad_shift.add_(dbeta);
  }
};

// Layer norm, forward: pre (T, B, H) holds u_t and becomes a_t = u_t + h_{t-1} W_hh^T; hs row t+1 becomes
// h_t = phi(LN(a_t; gain, beta)) (gain and beta arrive scaled for tanh). Returns (mean, rstd), (T, B, 1) each.
std::tuple<at::Tensor, at::Tensor> layer_norm_forward(at::Tensor hs, at::Tensor pre, const at::Tensor& w_t,
                                                      const at::Tensor& gain, const at::Tensor& beta, int64_t kind,
                                                      double eps) {
  check_block(hs, "hs");
  check_block(pre, "pre");
  const Rows states(hs), pres(pre);
  const int64_t steps = pres.size(), n = pres[0].numel();
  const LayerNorm norm(gain, beta, pres[0]);
  at::Tensor y = at::empty_like(pres[0]);
  const at::Tensor mean = pre.new_empty({steps, norm.rows, 1}), rstd = pre.new_empty({steps, norm.rows, 1});
  const Rows means(mean), rstds(rstd);
  for (int64_t t = 0; t < steps; ++t) {
    norm.forward(pres[t].addmm_(states[t], w_t), eps, y, means[t], rstds[t]);
    activate_block(kind, y.data_ptr<float>(), states[t + 1].data_ptr<float>(), n);
  }
  return {mean, rstd};
}

// Layer norm, backward: delta (T, B, H) becomes dL/d(LN output), grad_pre (T, B, H) dL/da_t.
void layer_norm_backward(at::Tensor delta, at::Tensor grad_pre, const at::Tensor& hs, const at::Tensor& pre,
                         const at::Tensor& mean, const at::Tensor& rstd, const at::Tensor& w_hh,
                         const at::Tensor& gain, const at::Tensor& beta, int64_t kind, const at::Tensor& final,
                         const std::optional<at::Tensor>& outputs) {
  check_blocks({&delta, &grad_pre, &hs, &pre, &mean, &rstd}, "every layer-norm buffer");
  const Rows deltas(delta), grad_pres(grad_pre), pres(pre), means(mean), rstds(rstd), grads(outputs);
  const float* states = hs.data_ptr<float>();
  const int64_t steps = deltas.size(), n = deltas[0].numel();
  const LayerNorm norm(gain, beta, pres[0]);
  deltas[steps - 1].copy_(final);
  for (int64_t t = steps - 1; t >= 0; --t) {
    backward_block(kind, deltas[t].data_ptr<float>(), states + (t + 1) * n, n);
    norm.backward(deltas[t], pres[t], means[t], rstds[t], grad_pres[t]);
    if (t > 0) recurrent_grad(deltas[t - 1], grads, t, grad_pres[t], w_hh);
  }
}

// out = ((pre - mean) * rstd) * delta, elementwise, mean and rstd (T, B, 1) broadcast over H: the terms of
// dL/dgain, as bptt.VanillaLayerNormRecurrence computes them with sub, mul_ and mul_ (one rounding each).
at::Tensor layer_norm_gain_terms(const at::Tensor& pre, const at::Tensor& mean, const at::Tensor& rstd,
                                 const at::Tensor& delta) {
  check_blocks({&pre, &mean, &rstd, &delta}, "every layer-norm buffer");
  at::Tensor out = at::empty_like(pre);
  const int64_t rows = mean.numel(), hidden = pre.size(-1);
  TORCH_CHECK(rstd.numel() == rows && pre.numel() == rows * hidden && delta.numel() == rows * hidden,
              "layer_norm_gain_terms takes (T, B, H) blocks and (T, B, 1) statistics");
  const float *p = pre.data_ptr<float>(), *m = mean.data_ptr<float>(), *r = rstd.data_ptr<float>();
  const float* d = delta.data_ptr<float>();
  float* o = out.data_ptr<float>();
  for (int64_t row = 0; row < rows; ++row) {
    const Vec mv(m[row]), rv(r[row]);
    const int64_t base = row * hidden;
    int64_t j = 0;
    for (; j + Vec::size() <= hidden; j += Vec::size()) {
      (((Vec::loadu(p + base + j) - mv) * rv) * Vec::loadu(d + base + j)).store(o + base + j);
    }
    for (; j < hidden; ++j) o[base + j] = ((p[base + j] - m[row]) * r[row]) * d[base + j];
  }
  return out;
}

// Batch norm over the batch of a contiguous (B, H) block with a gain and, optionally, a shift, as
// at::native_batch_norm and its backward compute it on the CPU (batch_norm_cpu, batch_norm_backward_cpu in ATen's
// Normalization.cpp): their own kernels (batch_norm_cpu_collect_stats_stub, batch_norm_cpu_stub and
// batch_norm_cpu_backward_stub; a (B, H) block takes their channels-last path), with the per-channel update of the
// saved and running statistics between them written out here in ATen's types: the momentum rounded to float, the
// running mean updated in float, the biased variance var_sum / B a float quotient and 1 / sqrt(var + eps) in double,
// the unbiased variance var_sum / (B - 1) a float quotient whose update runs in double; each result rounded to float
// once. at::native_batch_norm checks, allocates five tensors and builds accessors on every call, about half of its
// 8-microsecond call here.
//
// On one thread with B > 1 (every training step of the study) the kernels' arithmetic is written out here too, in
// one pass per reduction over the block instead of their allocations, zero-filled buffers and separate passes:
// per channel c, over the rows b in order,
//   forward    s = x_b + s;  mean = (float)((double)s / B);  v = (x_b - mean)^2 + v;  var_sum = v
//              alpha = invstd * gain;  beta = shift - mean * alpha;  y_b = x_b * alpha + beta
//   backward   S = dy_b + S;  P = (x_b - mean) dy_b + P;  k = P invstd invstd / B
//              dx_b = ((dy_b - S / B) - (x_b - mean) k) invstd gain  (evaluation: dy_b invstd gain)
//              dgain = P invstd;  dshift = S
// each a*b + c contracted as torch's build contracts it (contracted() in elementwise.h; dx's (x_b - mean) k only over
// the first multiple of 8 channels of the block ATen normalizes, see contracted_channels), each other operation one
// float rounding; with more threads (or B = 1) the kernels take paths that split the rows or accumulate in double,
// and are called. The load check (rnn_gradients.engine.extension) compares the outputs, gradients and running
// statistics with at::native_batch_norm's, bit for bit.
struct BatchNorm {
  at::Tensor gain, shift, mean, var_sum, dgain, dshift;  // shift undefined where none; the rest per-step scratch
  std::vector<float> scratch;  // the written-out kernels' per-channel scratch: part(0) to part(3)
  int64_t batch, n;

  BatchNorm(const at::Tensor& gain_, const std::optional<at::Tensor>& shift_, int64_t batch_, int64_t n_)
      : gain(gain_.contiguous()), batch(batch_), n(n_) {
    check_block(gain, "the batch norm's gain");
    TORCH_CHECK(gain.numel() == n && batch > 0 && n > 0, "batch norm over (B, H) blocks with a gain of H");
    mean = gain.new_empty({n});
    var_sum = gain.new_empty({n});
    dgain = gain.new_empty({n});
    if (shift_.has_value()) {
      shift = shift_->contiguous();
      check_block(shift, "the batch norm's shift");
      TORCH_CHECK(shift.numel() == n, "batch norm with a shift of H");
      dshift = gain.new_empty({n});
    }
    scratch.resize(4 * n);
  }

  BatchNorm(const at::Tensor& gain_, const std::optional<at::Tensor>& shift_, const at::Tensor& block)
      : BatchNorm(gain_, shift_, block.size(0), block.size(1)) {
    check_block(block, "a batch-normalized block");
    TORCH_CHECK(block.dim() == 2, "batch norm over (B, H) blocks");
  }

  float* part(int64_t i) { return scratch.data() + i * n; }

  // Whether ATen's kernels would take the one-thread path written out here.
  bool written_out() const { return batch > 1 && at::get_num_threads() == 1; }

  // Over the B rows of x (``stride`` floats apart): m = mean, v = sum of (x - m)^2 (n floats each).
  void collect_stats(const float* x, int64_t stride, float* m, float* v) const {
    std::fill(m, m + n, 0.f);
    for (int64_t b = 0; b < batch; ++b) {
      const float* row = x + b * stride;
      int64_t c = 0;
      for (; c + Vec::size() <= n; c += Vec::size()) (Vec::loadu(row + c) + Vec::loadu(m + c)).store(m + c);
      for (; c < n; ++c) m[c] = row[c] + m[c];
    }
    for (int64_t c = 0; c < n; ++c) m[c] = static_cast<float>(static_cast<double>(m[c]) / batch);
    std::fill(v, v + n, 0.f);
    for (int64_t b = 0; b < batch; ++b) {
      const float* row = x + b * stride;
      int64_t c = 0;
      for (; c + Vec::size() <= n; c += Vec::size()) {
        const Vec d = Vec::loadu(row + c) - Vec::loadu(m + c);
        contracted(d, d, Vec::loadu(v + c)).store(v + c);
      }
      for (; c < n; ++c) {
        const float d = row[c] - m[c];
        v[c] = contracted(d, d, v[c]);
      }
    }
  }

  // The saved statistics and the running row's update from the batch's mean m and var_sum v (ATen's types).
  void update_statistics(const float* m, const float* v, float* saved_mean, float* saved_invstd, float* rm,
                         float* rv, double momentum, double eps) const {
    const float weight = static_cast<float>(momentum);
    for (int64_t f = 0; f < n; ++f) {
      saved_mean[f] = m[f];
      const double var = v[f] / batch;  // a float quotient, as ATen's var_sum / n
      saved_invstd[f] = (var != 0 || eps != 0) ? static_cast<float>(1.0 / std::sqrt(var + eps)) : 0.f;
      rm[f] = weight * m[f] + (1 - weight) * rm[f];
      const double unbiased = v[f] / (batch - 1);
      rv[f] = static_cast<float>(weight * unbiased + (1 - weight) * rv[f]);
    }
  }

  // y (contiguous) = x * alpha + beta per channel, alpha = invstd * gain, beta = shift - mean * alpha.
  void normalize(const float* x, int64_t stride, float* y, const float* m, const float* invstd) {
    const float *g = gain.data_ptr<float>(), *sh = shift.defined() ? shift.data_ptr<float>() : nullptr;
    float *alpha = part(0), *beta = part(1);
    for (int64_t c = 0; c < n; ++c) {
      alpha[c] = invstd[c] * g[c];
      beta[c] = contracted(-m[c], alpha[c], sh != nullptr ? sh[c] : 0.f);
    }
    for (int64_t b = 0; b < batch; ++b) {
      const float* in = x + b * stride;
      float* out = y + b * n;
      int64_t c = 0;
      for (; c + Vec::size() <= n; c += Vec::size()) {
        contracted(Vec::loadu(in + c), Vec::loadu(alpha + c), Vec::loadu(beta + c)).store(out + c);
      }
      for (; c < n; ++c) out[c] = contracted(in[c], alpha[c], beta[c]);
    }
  }

  // The written-out forward: y (B, n contiguous) = BN(x), x's rows ``stride`` floats apart; training updates the
  // running row rm, rv and saves the batch's statistics, evaluation normalizes with the running row.
  void forward_rows(const float* x, int64_t stride, float* y, float* rm, float* rv, bool training, double momentum,
                    double eps, float* saved_mean, float* saved_invstd) {
    if (training) {
      float *m = mean.data_ptr<float>(), *v = var_sum.data_ptr<float>();
      collect_stats(x, stride, m, v);
      update_statistics(m, v, saved_mean, saved_invstd, rm, rv, momentum, eps);
      normalize(x, stride, y, saved_mean, saved_invstd);
    } else {
      float* invstd = part(2);
      const float e = static_cast<float>(eps);
      for (int64_t c = 0; c < n; ++c) invstd[c] = 1.f / std::sqrt(rv[c] + e);
      normalize(x, stride, y, rm, invstd);
    }
  }

  // y = BN(z). Training: with z's batch statistics, saved in save_mean and save_invstd (H each), and the running
  // row (H each) moved towards them; evaluation: with the running row (save_mean and save_invstd unused).
  void forward(const at::Tensor& z, at::Tensor& y, const at::Tensor& running_mean, const at::Tensor& running_var,
               bool training, double momentum, double eps, const at::Tensor& save_mean,
               const at::Tensor& save_invstd) {
    float *rm = running_mean.data_ptr<float>(), *rv = running_var.data_ptr<float>();
    if (written_out()) {
      forward_rows(z.data_ptr<float>(), n, y.data_ptr<float>(), rm, rv, training, momentum, eps,
                   training ? save_mean.data_ptr<float>() : nullptr, training ? save_invstd.data_ptr<float>() : nullptr);
      return;
    }
    if (training) {
      at::native::batch_norm_cpu_collect_stats_stub(at::kCPU, mean, var_sum, z);
      update_statistics(mean.data_ptr<float>(), var_sum.data_ptr<float>(), save_mean.data_ptr<float>(),
                        save_invstd.data_ptr<float>(), rm, rv, momentum, eps);
    }
    at::native::batch_norm_cpu_stub(at::kCPU, y, z, gain, shift, save_mean, save_invstd, running_mean, running_var,
                                    training, eps);
  }

  // The written-out backward: dx (rows dx_stride apart) from dy (B, n contiguous) and x (rows x_stride apart),
  // with the batch's statistics m, invstd (training) or the running row's (evaluation; rv the running variance);
  // dgain (and dshift) hold this block's gradients. ``contracted_until``: the channels before it take the
  // contracted form of (x - mean) k, the rest the two roundings (see backward).
  void backward_rows(const float* dy, const float* x, int64_t x_stride, const float* m, const float* saved_invstd,
                     const float* rv, bool training, double eps, float* dx, int64_t dx_stride,
                     int64_t contracted_until) {
    const float* invstd = saved_invstd;
    if (!training) {
      float* own = part(2);
      for (int64_t c = 0; c < n; ++c) own[c] = static_cast<float>(1 / std::sqrt(rv[c] + eps));
      invstd = own;
    }
    float *sum = part(3), *dotp = part(0);
    std::fill(sum, sum + n, 0.f);
    std::fill(dotp, dotp + n, 0.f);
    for (int64_t b = 0; b < batch; ++b) {
      const float *xr = x + b * x_stride, *dr = dy + b * n;
      int64_t c = 0;
      for (; c + Vec::size() <= n; c += Vec::size()) {
        const Vec d = Vec::loadu(dr + c);
        (Vec::loadu(sum + c) + d).store(sum + c);
        contracted(Vec::loadu(xr + c) - Vec::loadu(m + c), d, Vec::loadu(dotp + c)).store(dotp + c);
      }
      for (; c < n; ++c) {
        sum[c] = sum[c] + dr[c];
        dotp[c] = contracted(xr[c] - m[c], dr[c], dotp[c]);
      }
    }
    const float* g = gain.data_ptr<float>();
    float* dg = dgain.data_ptr<float>();
    for (int64_t c = 0; c < n; ++c) dg[c] = dotp[c] * invstd[c];
    if (dshift.defined()) std::copy(sum, sum + n, dshift.data_ptr<float>());
    float *k = dotp, *grad_mean = part(1);  // dotp is not read again
    const float count = static_cast<float>(batch);
    for (int64_t c = 0; c < n; ++c) {
      k[c] = dotp[c] * invstd[c] * invstd[c] / count;
      grad_mean[c] = sum[c] / count;
    }
    const int64_t vector_end = training ? std::min(n, contracted_until) : n;
    for (int64_t b = 0; b < batch; ++b) {
      const float *xr = x + b * x_stride, *dr = dy + b * n;
      float* out = dx + b * dx_stride;
      int64_t c = 0;
      for (; c + Vec::size() <= vector_end; c += Vec::size()) {
        const Vec iv = Vec::loadu(invstd + c), w = Vec::loadu(g + c);
        if (training) {
          const Vec centred = Vec::loadu(xr + c) - Vec::loadu(m + c);
          const Vec rest = Vec::loadu(dr + c) - Vec::loadu(grad_mean + c);
          (contracted(centred.neg(), Vec::loadu(k + c), rest) * iv * w).store(out + c);
        } else {
          (Vec::loadu(dr + c) * iv * w).store(out + c);
        }
      }
      for (; c < n; ++c) {
        if (!training) {
          out[c] = dr[c] * invstd[c] * g[c];
        } else if (c < contracted_until) {
          out[c] = contracted(-(xr[c] - m[c]), k[c], dr[c] - grad_mean[c]) * invstd[c] * g[c];
        } else {
          out[c] = (dr[c] - grad_mean[c] - (xr[c] - m[c]) * k[c]) * invstd[c] * g[c];
        }
      }
    }
  }

  // Where ATen's backward over a block of ``channels`` channels contracts (x - mean) k: torch's build does over
  // the first multiple of 8 channels and not over the rest (measured against its AVX2 and AVX512 kernels; the
  // load check holds every build to it).
  static int64_t contracted_channels(int64_t channels) { return channels - channels % 8; }

  // dz = dL/dz from dy = dL/dy; adds dL/dgain to grad_gain (and dL/dshift to grad_shift, with a shift).
  void backward(const at::Tensor& dy, const at::Tensor& z, const at::Tensor& running_mean,
                const at::Tensor& running_var, const at::Tensor& save_mean, const at::Tensor& save_invstd,
                bool training, double eps, at::Tensor& dz, at::Tensor& grad_gain, at::Tensor* grad_shift = nullptr) {
    if (written_out()) {
      TORCH_CHECK(dy.is_contiguous() && dz.is_contiguous(), "batch norm's backward on contiguous blocks");
      backward_rows(dy.data_ptr<float>(), z.data_ptr<float>(), n,
                    (training ? save_mean : running_mean).data_ptr<float>(),
                    training ? save_invstd.data_ptr<float>() : nullptr, running_var.data_ptr<float>(), training, eps,
                    dz.data_ptr<float>(), n, contracted_channels(n));
    } else {
      at::native::batch_norm_cpu_backward_stub(at::kCPU, dz, dgain, dshift, dy, z, gain, running_mean, running_var,
                                               save_mean, save_invstd, training, eps);
    }
    grad_gain.add_(dgain);
    if (shift.defined()) {
      TORCH_CHECK(grad_shift != nullptr && grad_shift->defined(), "a batch norm with a shift sums its gradient");
      grad_shift->add_(dshift);
    }
  }
};

// Batch norm, forward: pre row t becomes z_t = h_{t-1} W_hh^T, hs row t+1 h_t = phi(u_t + BN_t(z_t; gain)), BN_t
// with step t's batch statistics (training; the running row min(t, rows-1) updated in place) or that row's.
// Returns (save_mean, save_invstd) of every step, stacked ((T, H) each; (T, 0) in evaluation, as ATen's).
std::tuple<at::Tensor, at::Tensor> batch_norm_forward(at::Tensor hs, at::Tensor pre, const at::Tensor& u,
                                                      const at::Tensor& w_t, const at::Tensor& gain,
                                                      const at::Tensor& running_mean, const at::Tensor& running_var,
                                                      int64_t kind, bool training, double momentum, double eps) {
  check_blocks({&hs, &pre, &u, &running_mean, &running_var}, "every batch-norm buffer");
  const Rows states(hs), pres(pre), us(u), means(running_mean), variances(running_var);
  const int64_t steps = pres.size(), n = pres[0].numel(), rows = means.size();
  BatchNorm norm(gain, std::nullopt, pres[0]);
  TORCH_CHECK(running_mean.size(1) == norm.n && running_var.size(1) == norm.n, "running statistics of H each");
  const int64_t saved = training ? norm.n : 0;
  const at::Tensor save_mean = pre.new_empty({steps, saved}), save_invstd = pre.new_empty({steps, saved});
  const Rows save_means(save_mean), save_invstds(save_invstd);
  at::Tensor y = at::empty_like(pres[0]);
  for (int64_t t = 0; t < steps; ++t) {
    const at::Tensor z = at::mm_out(pres[t], states[t], w_t);
    const int64_t row = std::min(t, rows - 1);
    norm.forward(z, y, means[row], variances[row], training, momentum, eps, save_means[t], save_invstds[t]);
    add_activate_block(kind, y.data_ptr<float>(), us[t].data_ptr<float>(), states[t + 1].data_ptr<float>(), n);
  }
  return {save_mean, save_invstd};
}

// Batch norm, backward: delta becomes dL/du_t (= dL/d(BN output)), grad_pre dL/dz_t; adds dL/dgain to grad_gain.
void batch_norm_backward(at::Tensor delta, at::Tensor grad_pre, at::Tensor grad_gain, const at::Tensor& hs,
                         const at::Tensor& pre, const at::Tensor& save_mean, const at::Tensor& save_invstd,
                         const at::Tensor& w_hh, const at::Tensor& gain, const at::Tensor& running_mean,
                         const at::Tensor& running_var, int64_t kind, bool training, double eps,
                         const at::Tensor& final, const std::optional<at::Tensor>& outputs) {
  check_blocks({&delta, &grad_pre, &hs, &pre, &save_mean, &save_invstd, &running_mean, &running_var},
               "every batch-norm buffer");
  const Rows deltas(delta), grad_pres(grad_pre), pres(pre), saved_means(save_mean), saved_invstds(save_invstd),
      means(running_mean), variances(running_var), grads(outputs);
  const float* states = hs.data_ptr<float>();
  const int64_t steps = deltas.size(), n = deltas[0].numel(), rows = means.size();
  BatchNorm norm(gain, std::nullopt, pres[0]);
  deltas[steps - 1].copy_(final);
  for (int64_t t = steps - 1; t >= 0; --t) {
    backward_block(kind, deltas[t].data_ptr<float>(), states + (t + 1) * n, n);
    const int64_t row = std::min(t, rows - 1);
    norm.backward(deltas[t], pres[t], means[row], variances[row], saved_means[t], saved_invstds[t], training, eps,
                  grad_pres[t], grad_gain);
    if (t > 0) recurrent_grad(deltas[t - 1], grads, t, grad_pres[t], w_hh);
  }
}

// Asks the cache for ``rows`` rows of n floats, ``stride`` floats apart, from p (for writing where ``write``): the
// input part's rows of the next step lie one (B, T, H) row apart, a page or more, where the hardware's prefetchers
// do not look ahead; measured, the backward's first pass waited on them for most of its time.
void prefetch_rows(const float* p, int64_t rows, int64_t n, int64_t stride, bool write) {
  constexpr int64_t kLine = 64 / sizeof(float);
  for (int64_t b = 0; b < rows; ++b) {
    for (int64_t c = 0; c < n; c += kLine) {
      if (write) {
        __builtin_prefetch(p + b * stride + c, 1);
      } else {
        __builtin_prefetch(p + b * stride + c, 0);
      }
    }
  }
}

// Batch norm on both parts (the vanilla cell under batch norm: h_t = phi(BN_x,t(W_ih x_t) + bias + BN_t(W_hh h_{t-1}))),
// forward, the input part's batch norm done step by step in this loop (cells.CellNorms' input StepwiseBatchNorm
// normalizes the whole (B, T·H) block at once, channel t·H + j being step t's unit j: the same arithmetic channel by
// channel). v (B, T, H) holds W_ih x_t batch-major; per step, u_t = s (BN_x,t(v_t; in_gain) + bias) (s = 2 for tanh)
// and then the step of batch_norm_forward. One thread and B > 1 only (BatchNorm::written_out). Returns the saved
// statistics of the input part's batch norm and of the recurrent one, ((T, H) each; (T, 0) in evaluation).
std::vector<at::Tensor> batch_norm_fused_forward(at::Tensor hs, at::Tensor pre, const at::Tensor& v,
                                                 const at::Tensor& in_gain, const at::Tensor& bias, double scale,
                                                 const at::Tensor& in_running_mean, const at::Tensor& in_running_var,
                                                 const at::Tensor& w_t, const at::Tensor& gain,
                                                 const at::Tensor& running_mean, const at::Tensor& running_var,
                                                 int64_t kind, bool training, double momentum, double eps,
                                                 double in_momentum, double in_eps) {
  check_blocks({&hs, &pre, &v, &bias, &in_running_mean, &in_running_var, &running_mean, &running_var},
               "every batch-norm buffer");
  const int64_t batch = v.size(0), steps = v.size(1), n = v.size(2), block = batch * n;
  BatchNorm norm(gain, std::nullopt, batch, n), in_norm(in_gain, std::nullopt, batch, n);
  TORCH_CHECK(norm.written_out(), "the fused batch norm runs on one thread with B > 1");
  TORCH_CHECK(bias.numel() == n && pre.size(0) == steps && running_mean.size(1) == n && in_running_mean.size(1) == n,
              "a bias of H, pre (T, B, H) and running statistics of H each");
  const Rows states(hs), pres(pre);
  const int64_t rows = running_mean.size(0), in_rows = in_running_mean.size(0), saved = training ? n : 0;
  std::vector<at::Tensor> stats;
  for (int i = 0; i < 4; ++i) stats.push_back(pre.new_empty({steps, saved}));
  float *in_mean = stats[0].data_ptr<float>(), *in_invstd = stats[1].data_ptr<float>();
  float *mean = stats[2].data_ptr<float>(), *invstd = stats[3].data_ptr<float>();
  float *rm = running_mean.data_ptr<float>(), *rv = running_var.data_ptr<float>();
  float *in_rm = in_running_mean.data_ptr<float>(), *in_rv = in_running_var.data_ptr<float>();
  at::Tensor y = pre.new_empty({batch, n}), u = pre.new_empty({batch, n});
  float *yp = y.data_ptr<float>(), *up = u.data_ptr<float>();
  const float *vp = v.data_ptr<float>(), *bp = bias.data_ptr<float>();
  const float s = static_cast<float>(scale);
  for (int64_t t = 0; t < steps; ++t) {
    const int64_t row = std::min(t, rows - 1), in_row = std::min(t, in_rows - 1);
    if (t + 1 < steps) prefetch_rows(vp + (t + 1) * n, batch, n, steps * n, false);
    in_norm.forward_rows(vp + t * n, steps * n, up, in_rm + in_row * n, in_rv + in_row * n, training, in_momentum,
                         in_eps, in_mean + t * saved, in_invstd + t * saved);
    for (int64_t b = 0; b < batch; ++b) {
      float* r = up + b * n;
      for (int64_t c = 0; c < n; ++c) r[c] = r[c] + bp[c];
      if (scale != 1) {
        for (int64_t c = 0; c < n; ++c) r[c] = r[c] * s;
      }
    }
    const float* z = at::mm_out(pres[t], states[t], w_t).data_ptr<float>();
    norm.forward_rows(z, n, yp, rm + row * n, rv + row * n, training, momentum, eps, mean + t * saved,
                      invstd + t * saved);
    add_activate_block(kind, yp, up, states[t + 1].data_ptr<float>(), block);
  }
  return stats;
}

// Backward of batch_norm_fused_forward: delta (T, B, H) becomes dL/du_t (the bias's gradient, summed by the
// caller), grad_pre (T, B, H) dL/dz_t, grad_v (B, T, H) dL/dv, grad_in_gain (T, H) each step's dL/d(in_gain); adds
// dL/dgain to grad_gain. The input part's dL/dv takes the contraction of the whole (B, T·H) block's backward.
void batch_norm_fused_backward(at::Tensor delta, at::Tensor grad_pre, at::Tensor grad_gain, at::Tensor grad_v,
                               at::Tensor grad_in_gain, const at::Tensor& hs, const at::Tensor& pre,
                               const at::Tensor& v, const std::vector<at::Tensor>& stats, const at::Tensor& w_hh,
                               const at::Tensor& gain, const at::Tensor& in_gain, const at::Tensor& running_mean,
                               const at::Tensor& running_var, const at::Tensor& in_running_mean,
                               const at::Tensor& in_running_var, int64_t kind, bool training, double eps,
                               double in_eps, const at::Tensor& final, const std::optional<at::Tensor>& outputs) {
  check_blocks({&delta, &grad_pre, &grad_v, &grad_in_gain, &hs, &pre, &v, &running_mean, &running_var,
                &in_running_mean, &in_running_var},
               "every batch-norm buffer");
  TORCH_CHECK(stats.size() == 4, "the four statistics of batch_norm_fused_forward");
  const int64_t batch = v.size(0), steps = v.size(1), n = v.size(2), block = batch * n;
  BatchNorm norm(gain, std::nullopt, batch, n), in_norm(in_gain, std::nullopt, batch, n);
  TORCH_CHECK(norm.written_out(), "the fused batch norm runs on one thread with B > 1");
  const Rows deltas(delta), grad_pres(grad_pre), pres(pre), means(running_mean), variances(running_var),
      grads(outputs), saved_means(stats[2]), saved_invstds(stats[3]);
  const int64_t rows = running_mean.size(0), in_rows = in_running_mean.size(0), saved = training ? n : 0;
  const float *states = hs.data_ptr<float>(), *vp = v.data_ptr<float>();
  const float *in_mean = stats[0].data_ptr<float>(), *in_invstd = stats[1].data_ptr<float>();
  const float *in_rm = in_running_mean.data_ptr<float>(), *in_rv = in_running_var.data_ptr<float>();
  float *gv = grad_v.data_ptr<float>(), *gg = grad_in_gain.data_ptr<float>();
  const float* in_dgain = in_norm.dgain.data_ptr<float>();
  const int64_t in_contracted = BatchNorm::contracted_channels(steps * n);
  deltas[steps - 1].copy_(final);
  for (int64_t t = steps - 1; t >= 0; --t) {
    float* d = deltas[t].data_ptr<float>();
    if (t > 0) {
      prefetch_rows(vp + (t - 1) * n, batch, n, steps * n, false);
      prefetch_rows(gv + (t - 1) * n, batch, n, steps * n, true);
    }
    backward_block(kind, d, states + (t + 1) * block, block);
    const int64_t row = std::min(t, rows - 1), in_row = std::min(t, in_rows - 1);
    norm.backward(deltas[t], pres[t], means[row], variances[row], saved_means[t], saved_invstds[t], training, eps,
                  grad_pres[t], grad_gain);
    in_norm.backward_rows(d, vp + t * n, steps * n, training ? in_mean + t * saved : in_rm + in_row * n,
                          training ? in_invstd + t * saved : nullptr, in_rv + in_row * n, training, in_eps,
                          gv + t * n, steps * n, std::clamp<int64_t>(in_contracted - t * n, 0, n));
    std::copy(in_dgain, in_dgain + n, gg + t * n);
    if (t > 0) recurrent_grad(deltas[t - 1], grads, t, grad_pres[t], w_hh);
  }
}

// out[i] = lerp(start[i], end[i], weight[i]) over one row of n (torch.lerp walks a strided weight row by row).
void lerp_row(const float* start, const float* end, const float* weight, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + kChunk <= n; i += kChunk) {
    for (int64_t k = i; k < i + kChunk; k += Vec::size()) {
      lerp(Vec::loadu(start + k), Vec::loadu(end + k), Vec::loadu(weight + k)).store(out + k);
    }
  }
  for (; i < n; ++i) out[i] = lerp(start[i], end[i], weight[i]);
}

// The gates of one GRU step from gh_t (B, 3H) = W_hh h_{t-1} + b_hh (or its normalization plus b_hh) and the input
// parts u_t (B, 3H): rz_t = sigmoid(u_rz + gh_rz); n_t = tanh(u_n + r gh_n), as 2 sigmoid(2 u_n + 2 r gh_n) - 1;
// h_t = lerp(n_t, h_{t-1}, z).
void gru_gates(const float* g, const float* ut, float* gates, float* cand, const float* h_prev, float* h,
               int64_t batch, int64_t hidden) {
  const int64_t two = 2 * hidden, three = 3 * hidden;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t j = 0; j < two; ++j) gates[b * two + j] = ut[b * three + j] + g[b * three + j];
  }
  activate_block(kSigmoid, gates, gates, batch * two);
  for (int64_t b = 0; b < batch; ++b) {
    const float *un = ut + b * three + two, *gn = g + b * three + two, *r = gates + b * two;
    for (int64_t j = 0; j < hidden; ++j) cand[b * hidden + j] = std::fma(2.f * r[j], gn[j], 2.f * un[j]);
  }
  activate_block(kTanh, cand, cand, batch * hidden);
  for (int64_t b = 0; b < batch; ++b) {
    lerp_row(cand + b * hidden, h_prev + b * hidden, gates + b * two + hidden, h + b * hidden, hidden);
  }
}

// GRU, forward (bptt.GRURecurrence): hs (T+1, B, H) holds h_0 = 0 in row 0, gh (T, B, 3H) b_hh in every row,
// u (T, B, 3H) the input parts (r, z, n). Per step: gh_t += h_{t-1} W_hh^T, then gru_gates.
void gru_forward(at::Tensor hs, at::Tensor gh, at::Tensor rz, at::Tensor n, const at::Tensor& u,
                 const at::Tensor& w_t) {
  check_blocks({&hs, &gh, &rz, &n, &u}, "every GRU buffer");
  const Rows states(hs), ghs(gh);
  const int64_t steps = u.size(0), batch = u.size(1), hidden = n.size(2);
  for (int64_t t = 0; t < steps; ++t) {
    const float* g = ghs[t].addmm_(states[t], w_t).data_ptr<float>();
    gru_gates(g, u.data_ptr<float>() + t * batch * 3 * hidden, rz.data_ptr<float>() + t * batch * 2 * hidden,
              n.data_ptr<float>() + t * batch * hidden, states[t].data_ptr<float>(), states[t + 1].data_ptr<float>(),
              batch, hidden);
  }
}

// A normalization applied step by step inside a recurrence (step_norm.StepNorm): layer norm with a gain and a
// shift over the features of each example, or batch norm with a gain and an optional shift over the batch, step t
// with the running row min(t, rows - 1). Its statistics of every step: layer norm's mean and rstd (T, B, 1), batch
// norm's save_mean and save_invstd (T, F; (T, 0) in evaluation).
struct StepNorm {
  bool layer;
  std::optional<LayerNorm> ln;
  std::optional<BatchNorm> bn;
  Rows means, variances, first, second;  // running rows; each step's two statistics
  bool training;
  double momentum, eps;

  StepNorm(bool layer_, const at::Tensor& gain, const std::optional<at::Tensor>& shift,
           const std::optional<at::Tensor>& running_mean, const std::optional<at::Tensor>& running_var,
           bool training_, double momentum_, double eps_, const at::Tensor& block)
      : layer(layer_), training(training_), momentum(momentum_), eps(eps_) {
    if (layer) {
      TORCH_CHECK(shift.has_value(), "a recurrence's layer norm has a shift");
      ln.emplace(gain, *shift, block);
    } else {
      TORCH_CHECK(running_mean.has_value() && running_var.has_value(),
                  "a recurrence's batch norm has running statistics");
      check_blocks({&*running_mean, &*running_var}, "the batch norm's running statistics");
      bn.emplace(gain, shift, block);
      TORCH_CHECK(running_mean->dim() == 2 && running_mean->size(1) == bn->n && running_var->sizes() == running_mean->sizes(),
                  "running statistics of (rows, F) each");
      means = Rows(*running_mean);
      variances = Rows(*running_var);
    }
  }

  // The (T, ·) tensors the statistics of T steps go into, their rows kept for forward.
  std::tuple<at::Tensor, at::Tensor> statistics(int64_t steps, const at::Tensor& block) {
    const at::Tensor one = layer ? block.new_empty({steps, ln->rows, 1})
                                 : block.new_empty({steps, training ? bn->n : 0});
    const at::Tensor two = at::empty_like(one);
    first = Rows(one);
    second = Rows(two);
    return {one, two};
  }

  // From statistics already computed (the backward).
  void use(const at::Tensor& one, const at::Tensor& two) {
    check_blocks({&one, &two}, "the normalization's statistics");
    first = Rows(one);
    second = Rows(two);
  }

  int64_t row(int64_t t) const { return std::min(t, means.size() - 1); }

  void forward(const at::Tensor& z, at::Tensor& y, int64_t t) {
    if (layer) {
      ln->forward(z, eps, y, first[t], second[t]);
    } else {
      bn->forward(z, y, means[row(t)], variances[row(t)], training, momentum, eps, first[t], second[t]);
    }
  }

  // dz = N^T(dy) at step t; adds step t's dL/dgain to grad_gain, and dL/dshift to grad_shift where there is a shift.
  // dz may be z itself (the recurrences' backward overwrite z_t with its gradient, z_t's last use): ATen's layer-norm
  // backward and the written-out batch norm read each element of z before they write that element of dz, and read
  // no other row's; ATen's batch-norm kernel, the one path that is not written out here, gets a scratch block.
  void backward(const at::Tensor& dy, const at::Tensor& z, int64_t t, at::Tensor& dz, at::Tensor& grad_gain,
                at::Tensor* grad_shift) {
    if (layer) {
      TORCH_CHECK(grad_shift != nullptr && grad_shift->defined(), "a layer norm sums its shift's gradient");
      ln->backward(dy, z, first[t], second[t], dz, grad_gain, *grad_shift);
    } else if (bn->written_out() || dz.data_ptr() != z.data_ptr()) {
      bn->backward(dy, z, means[row(t)], variances[row(t)], first[t], second[t], training, eps, dz, grad_gain,
                   grad_shift);
    } else {
      at::Tensor own = at::empty_like(dz);
      bn->backward(dy, z, means[row(t)], variances[row(t)], first[t], second[t], training, eps, own, grad_gain,
                   grad_shift);
      dz.copy_(own);
    }
  }
};

// GRU under N_x and N_h, forward (gru_norm_bptt.GRUNormRecurrence): hs (T+1, B, H) holds h_0 = 0 in row 0; v
// (T, B, 3H) the input projections W_ih x_t. Per step: u_t = N_x(v_t) (its shift the input bias) into a scratch
// row, z_t = h_{t-1} W_hh^T (into z), gh_t = N_h(z_t) + b_hh (into gh), then gru_gates. Returns the statistics,
// N_x's two and N_h's two.
std::vector<at::Tensor> gru_norm_forward(at::Tensor hs, at::Tensor z, at::Tensor gh, at::Tensor rz, at::Tensor n,
                                         const at::Tensor& v, const at::Tensor& w_t, const at::Tensor& b_hh,
                                         bool x_layer, const at::Tensor& x_gain,
                                         const std::optional<at::Tensor>& x_shift,
                                         const std::optional<at::Tensor>& x_mean,
                                         const std::optional<at::Tensor>& x_var, bool x_training, double x_momentum,
                                         double x_eps, bool layer, const at::Tensor& gain,
                                         const std::optional<at::Tensor>& shift,
                                         const std::optional<at::Tensor>& running_mean,
                                         const std::optional<at::Tensor>& running_var, bool training,
                                         double momentum, double eps) {
  check_blocks({&hs, &z, &gh, &rz, &n, &v, &b_hh}, "every GRU buffer");
  const Rows states(hs), zs(z), ghs(gh), vs(v);
  const int64_t steps = v.size(0), batch = v.size(1), hidden = n.size(2), three = 3 * hidden;
  TORCH_CHECK(b_hh.numel() == three && v.sizes() == z.sizes(), "b_hh has 3H entries, v and z are (T, B, 3H)");
  StepNorm norm_x(x_layer, x_gain, x_shift, x_mean, x_var, x_training, x_momentum, x_eps, vs[0]);
  StepNorm norm(layer, gain, shift, running_mean, running_var, training, momentum, eps, zs[0]);
  auto [x_first, x_second] = norm_x.statistics(steps, vs[0]);
  auto [h_first, h_second] = norm.statistics(steps, zs[0]);
  at::Tensor u = at::empty_like(vs[0]);
  const float *ut = u.data_ptr<float>(), *bias = b_hh.data_ptr<float>();
  for (int64_t t = 0; t < steps; ++t) {
    norm_x.forward(vs[t], u, t);
    norm.forward(at::mm_out(zs[t], states[t], w_t), ghs[t], t);
    float* g = ghs[t].data_ptr<float>();
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t j = 0; j < three; ++j) g[b * three + j] += bias[j];  // torch.add(N(z), b_hh): one rounding
    }
    gru_gates(g, ut, rz.data_ptr<float>() + t * batch * 2 * hidden, n.data_ptr<float>() + t * batch * hidden,
              states[t].data_ptr<float>(), states[t + 1].data_ptr<float>(), batch, hidden);
  }
  return {x_first, x_second, h_first, h_second};
}

// One batch row of the GRU backward's per-step factors, read and written at columns j.. (one vector, or one float):
//   A = (1 - z)(1 - n^2);  dgh_r = d ((A gh_n)(r (1 - r))),  dgh_z = d ((h_{t-1} - n)(z (1 - z))),  dgh_n = d (A r)
// The same operations in the same order for a vector as for a float, so the vectors and the tail round alike.
struct GruRow {
  const float *r, *z, *n, *h_prev, *gh_n, *d;
  float *a, *out;  // a: the row of A; out: the row of dgh (r, z, n blocks of H each)
};

inline Vec load(const float* p, Vec /*tag*/) { return Vec::loadu(p); }
inline float load(const float* p, float /*tag*/) { return *p; }
inline void store(float* p, const Vec& v) { v.store(p); }
inline void store(float* p, float v) { *p = v; }

template <typename V>
void gru_factors(const GruRow& row, int64_t j, int64_t hidden) {
  const V one(1.f), r = load(row.r + j, V()), z = load(row.z + j, V()), cand = load(row.n + j, V());
  const V d = load(row.d + j, V());
  const V factor_a = (one - z) * (one - cand * cand);
  store(row.a + j, factor_a);
  store(row.out + j, d * ((factor_a * load(row.gh_n + j, V())) * (r * (one - r))));
  store(row.out + hidden + j, d * ((load(row.h_prev + j, V()) - cand) * (z * (one - z))));
  store(row.out + 2 * hidden + j, d * (factor_a * r));
}

// GRU, backward: the factors of bptt.gru_factors, computed per step, and the loop of bptt.gru_backward_loop.
// dh (T, B, H) becomes dL/dh_t, dgh (T, B, 3, H) dL/dgh_t, a (T, B, H) the factor A = (1 - z)(1 - n^2).
//   dgh_t = dh_t * F_t:  F_r = (A gh_n) (r (1 - r)),  F_z = (h_{t-1} - n) (z (1 - z)),  F_n = A r
//   dh_{t-1} = g_{t-1} + dh_t z_t + through(dgh_t, t) W_hh
// through(row, t) is the (B, 3H) gradient that meets W_hh: dgh_t itself, or N_h^T(dgh_t) under a normalization
// (called at every step, t = 0 included, as bptt.gru_backward_loop calls its ``recurrent``).
template <typename Through>
void gru_backward_loop(at::Tensor& dh, at::Tensor& dgh, at::Tensor& a, const at::Tensor& hs, const at::Tensor& gh,
                       const at::Tensor& rz, const at::Tensor& n, const at::Tensor& w_hh, const at::Tensor& final,
                       const std::optional<at::Tensor>& outputs, Through through) {
  check_blocks({&dh, &dgh, &a, &hs, &gh, &rz, &n}, "every GRU buffer");
  const Rows dhs(dh), rows(dgh.view({dgh.size(0), dgh.size(1), -1}));
  // Read through raw pointers below: the gradients from the outputs as one contiguous block (a copy changes no bit).
  const Rows grads(outputs.has_value() ? std::optional<at::Tensor>(outputs->contiguous()) : std::nullopt);
  const int64_t steps = n.size(0), batch = n.size(1), hidden = n.size(2);
  const int64_t two = 2 * hidden, three = 3 * hidden, block = batch * hidden;
  dhs[steps - 1].copy_(final);
  for (int64_t t = steps - 1; t >= 0; --t) {
    const float* d = dhs[t].data_ptr<float>();
    const float* h_prev = hs.data_ptr<float>() + t * block;
    const float* nt = n.data_ptr<float>() + t * block;
    const float* gates = rz.data_ptr<float>() + t * batch * two;
    const float* g = gh.data_ptr<float>() + t * batch * three;
    float* at_ = a.data_ptr<float>() + t * block;
    float* out = dgh.data_ptr<float>() + t * batch * three;
    for (int64_t b = 0; b < batch; ++b) {
      const GruRow row{gates + b * two, gates + b * two + hidden, nt + b * hidden, h_prev + b * hidden,
                       g + b * three + two, d + b * hidden, at_ + b * hidden, out + b * three};
      int64_t j = 0;
      for (; j + Vec::size() <= hidden; j += Vec::size()) gru_factors<Vec>(row, j, hidden);
      for (; j < hidden; ++j) gru_factors<float>(row, j, hidden);
    }
    const at::Tensor& recurrent = through(rows[t], t);
    if (t == 0) break;
    float* next = dhs[t - 1].data_ptr<float>();
    const float* g_prev = grads.empty() ? nullptr : grads[t - 1].data_ptr<float>();
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t j = 0; j < hidden; ++j) {
        const float dh_t = d[b * hidden + j], z = gates[b * two + hidden + j];
        next[b * hidden + j] = g_prev == nullptr ? dh_t * z : std::fma(dh_t, z, g_prev[b * hidden + j]);
      }
    }
    dhs[t - 1].addmm_(recurrent, w_hh);
  }
}

void gru_backward(at::Tensor dh, at::Tensor dgh, at::Tensor a, const at::Tensor& hs, const at::Tensor& gh,
                  const at::Tensor& rz, const at::Tensor& n, const at::Tensor& w_hh, const at::Tensor& final,
                  const std::optional<at::Tensor>& outputs) {
  gru_backward_loop(dh, dgh, a, hs, gh, rz, n, w_hh, final, outputs,
                    [](const at::Tensor& row, int64_t) -> const at::Tensor& { return row; });
}

// GRU under N_x and N_h, backward: as gru_backward, with dz (T, B, 3H) becoming dL/dz_t = N_h^T(dL/dgh_t), which
// meets W_hh, and dv (T, B, 3H) dL/dv_t = N_x^T(du_t), du_t = dL/du_t: dL/dgh_t in the r and z blocks, dh_t A_t in
// the n block (gru_norm_bptt.GRUNormRecurrence.backward's order and rounding). z, v and the statistics from
// gru_norm_forward; each step's share of the normalizations' gain and shift gradients is added to x_grad_gain,
// x_grad_shift, grad_gain and grad_shift (the last where N_h has a shift: batch norm has none).
void gru_norm_backward(at::Tensor dh, at::Tensor dgh, at::Tensor a, at::Tensor dz, at::Tensor dv,
                       at::Tensor x_grad_gain, at::Tensor x_grad_shift, at::Tensor grad_gain, const at::Tensor& hs,
                       const at::Tensor& z, const at::Tensor& gh, const at::Tensor& rz, const at::Tensor& n,
                       const at::Tensor& v, const at::Tensor& w_hh, bool x_layer, const at::Tensor& x_gain,
                       const std::optional<at::Tensor>& x_shift, const std::optional<at::Tensor>& x_mean,
                       const std::optional<at::Tensor>& x_var, const at::Tensor& x_first,
                       const at::Tensor& x_second, bool x_training, double x_eps, bool layer,
                       const at::Tensor& gain, const std::optional<at::Tensor>& shift,
                       const std::optional<at::Tensor>& running_mean, const std::optional<at::Tensor>& running_var,
                       const at::Tensor& first, const at::Tensor& second, bool training, double eps,
                       const at::Tensor& final, const std::optional<at::Tensor>& outputs,
                       std::optional<at::Tensor> grad_shift) {
  check_blocks({&dz, &z, &dv, &v}, "every GRU buffer");
  TORCH_CHECK(dv.sizes() == v.sizes() && v.sizes() == z.sizes(), "dv, v and z are (T, B, 3H)");
  at::Tensor* shift_grad = grad_shift.has_value() ? &*grad_shift : nullptr;
  const Rows dzs(dz), dvs(dv), zs(z), vs(v);
  StepNorm norm_x(x_layer, x_gain, x_shift, x_mean, x_var, x_training, 0.0, x_eps, vs[0]);
  StepNorm norm(layer, gain, shift, running_mean, running_var, training, 0.0, eps, zs[0]);
  norm_x.use(x_first, x_second);
  norm.use(first, second);
  const int64_t batch = n.size(1), hidden = n.size(2), two = 2 * hidden, three = 3 * hidden;
  const int64_t block = batch * hidden;
  at::Tensor du = at::empty_like(zs[0]);
  float* up = du.data_ptr<float>();
  gru_backward_loop(dh, dgh, a, hs, gh, rz, n, w_hh, final, outputs,
                    [&](const at::Tensor& row, int64_t t) -> const at::Tensor& {
                      norm.backward(row, zs[t], t, dzs[t], grad_gain, shift_grad);
                      const float *g = row.data_ptr<float>(), *d = dh.data_ptr<float>() + t * block;
                      const float* at_ = a.data_ptr<float>() + t * block;
                      for (int64_t b = 0; b < batch; ++b) {
                        std::copy(g + b * three, g + b * three + two, up + b * three);
                        for (int64_t j = 0; j < hidden; ++j) {
                          up[b * three + two + j] = d[b * hidden + j] * at_[b * hidden + j];
                        }
                      }
                      norm_x.backward(du, vs[t], t, dvs[t], x_grad_gain, &x_grad_shift);
                      return dzs[t];
                    });
}

// LSTM under N_x, N_h and N_c, forward (lstm_norm_bptt.LSTMNormRecurrence): hs (T+1, B, H) and c (T+1, B, H)
// hold h_0 = c_0 = 0 in row 0; v (T, B, 4H) the input projections W_ih x_t. Per step:
//   u_t = N_x(v_t) (its shift the input bias), the input parts (i, f, g, o), into a scratch row;
//   z_t = h_{t-1} W_hh^T (into z);  a = u_t + N_h(z_t), then in gates (T, B, 4H) sigmoid(a) over the i, f and o
//   blocks and tanh(a) = 2 sigmoid(2a) - 1 over the g block, row by row (as torch's sigmoid_ on a column slice);
//   c_t = fma(sigmoid(i), tanh(g), sigmoid(f) c_{t-1});  tc_t = tanh(N_c(c_t)) over the whole (B, H) block, by
//   ATen's tanh kernel (at::tanh_out, torch.tanh in the Python loop), not 2 sigmoid(2a) - 1: that identity's
//   absolute error near 0 (a few ulp of 1/2) reaches h_t directly here and doubled the distance to float64;
//   h_t = sigmoid(o) tc_t.
// Returns the six statistics (N_x's two, N_h's two, N_c's two).
std::vector<at::Tensor> lstm_norm_forward(at::Tensor hs, at::Tensor c, at::Tensor z, at::Tensor gates, at::Tensor tc,
                                          const at::Tensor& v, const at::Tensor& w_t, bool x_layer,
                                          const at::Tensor& x_gain, const std::optional<at::Tensor>& x_shift,
                                          const std::optional<at::Tensor>& x_mean,
                                          const std::optional<at::Tensor>& x_var, bool x_training, double x_momentum,
                                          double x_eps, bool h_layer,
                                          const at::Tensor& h_gain, const std::optional<at::Tensor>& h_shift,
                                          const std::optional<at::Tensor>& h_mean,
                                          const std::optional<at::Tensor>& h_var, bool h_training, double h_momentum,
                                          double h_eps, bool c_layer, const at::Tensor& c_gain,
                                          const std::optional<at::Tensor>& c_shift,
                                          const std::optional<at::Tensor>& c_mean,
                                          const std::optional<at::Tensor>& c_var, bool c_training, double c_momentum,
                                          double c_eps) {
  check_blocks({&hs, &c, &z, &gates, &tc, &v}, "every LSTM buffer");
  const Rows states(hs), cells(c), zs(z), vs(v), tcs(tc);
  const int64_t steps = v.size(0), batch = v.size(1), hidden = tc.size(2), four = 4 * hidden;
  TORCH_CHECK(v.size(2) == four && z.sizes() == v.sizes() && gates.sizes() == v.sizes(), "(T, B, 4H) gate buffers");
  StepNorm norm_x(x_layer, x_gain, x_shift, x_mean, x_var, x_training, x_momentum, x_eps, vs[0]);
  StepNorm norm_h(h_layer, h_gain, h_shift, h_mean, h_var, h_training, h_momentum, h_eps, zs[0]);
  StepNorm norm_c(c_layer, c_gain, c_shift, c_mean, c_var, c_training, c_momentum, c_eps, cells[1]);
  auto [x_first, x_second] = norm_x.statistics(steps, vs[0]);
  auto [h_first, h_second] = norm_h.statistics(steps, zs[0]);
  auto [c_first, c_second] = norm_c.statistics(steps, cells[1]);
  at::Tensor u = at::empty_like(zs[0]), y = at::empty_like(zs[0]), yc = at::empty_like(cells[1]);
  const float *ny = y.data_ptr<float>(), *ut = u.data_ptr<float>();
  for (int64_t t = 0; t < steps; ++t) {
    norm_x.forward(vs[t], u, t);
    norm_h.forward(at::mm_out(zs[t], states[t], w_t), y, t);
    float* a = gates.data_ptr<float>() + t * batch * four;
    for (int64_t b = 0; b < batch; ++b) {
      float* row = a + b * four;
      for (int64_t j = 0; j < four; ++j) row[j] = ut[b * four + j] + ny[b * four + j];
      for (int64_t j = 2 * hidden; j < 3 * hidden; ++j) row[j] = row[j] + row[j];  // g.mul_(2): exact
      activate_block(kSigmoid, row, row, 2 * hidden);
      activate_block(kTanh, row + 2 * hidden, row + 2 * hidden, hidden);
      activate_block(kSigmoid, row + 3 * hidden, row + 3 * hidden, hidden);
    }
    const float* c_prev = cells[t].data_ptr<float>();
    float* c_t = cells[t + 1].data_ptr<float>();
    for (int64_t b = 0; b < batch; ++b) {
      const float* row = a + b * four;
      for (int64_t j = 0; j < hidden; ++j) {
        c_t[b * hidden + j] = std::fma(row[j], row[2 * hidden + j], row[hidden + j] * c_prev[b * hidden + j]);
      }
    }
    norm_c.forward(cells[t + 1], yc, t);
    at::Tensor& tc_t = tcs[t];
    at::tanh_out(tc_t, yc);  // ATen's own tanh kernel, as the Python loop's torch.tanh: see the comment above
    const float* tct = tc_t.data_ptr<float>();
    float* h = states[t + 1].data_ptr<float>();
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t j = 0; j < hidden; ++j) h[b * hidden + j] = a[b * four + 3 * hidden + j] * tct[b * hidden + j];
    }
  }
  return {x_first, x_second, h_first, h_second, c_first, c_second};
}

// LSTM under N_x, N_h and N_c, backward: dh (T, B, H) becomes dL/dh_t, the row dgates (B, 4H) holds step t's
// dL/d(i, f, g, o) = dL/du_t, dz (T, B, 4H) becomes dL/dz_t = N_h^T(dgates_t) and dv (T, B, 4H) dL/dv_t =
// N_x^T(dgates_t); the statistics from lstm_norm_forward; each step's share of the normalizations' gain and shift
// gradients is added to x_grad_gain, x_grad_shift, h_grad_gain, h_grad_shift, c_grad_gain and c_grad_shift (the
// shifts where there are: none for the recurrent term's batch norm). Per step, in
// lstm_norm_bptt.LSTMNormRecurrence.backward's order and rounding:
//   do = (dh tc) (o (1 - o)),  delta = (dh o) (1 - tc tc),  dc = N_c^T(delta) (+ carry past the last step),
//   di = (dc g) (i (1 - i)),  df = (dc c_{t-1}) (f (1 - f)),  dg = (dc i) (1 - g g),  carry = dc f,
//   dz_t = N_h^T(dgates_t),  dv_t = N_x^T(dgates_t),  dh_{t-1} = g_{t-1} + dz_t W_hh.
void lstm_norm_backward(at::Tensor dh, at::Tensor dgates, at::Tensor dz, at::Tensor dv, at::Tensor x_grad_gain,
                        at::Tensor x_grad_shift, at::Tensor h_grad_gain, std::optional<at::Tensor> h_grad_shift,
                        at::Tensor c_grad_gain, std::optional<at::Tensor> c_grad_shift, const at::Tensor& c,
                        const at::Tensor& z, const at::Tensor& v, const at::Tensor& gates, const at::Tensor& tc,
                        const at::Tensor& w_hh, bool x_layer, const at::Tensor& x_gain,
                        const std::optional<at::Tensor>& x_shift, const std::optional<at::Tensor>& x_mean,
                        const std::optional<at::Tensor>& x_var, const at::Tensor& x_first,
                        const at::Tensor& x_second, bool x_training, double x_eps, bool h_layer,
                        const at::Tensor& h_gain, const std::optional<at::Tensor>& h_shift,
                        const std::optional<at::Tensor>& h_mean, const std::optional<at::Tensor>& h_var,
                        const at::Tensor& h_first, const at::Tensor& h_second, bool h_training, double h_eps,
                        bool c_layer, const at::Tensor& c_gain, const std::optional<at::Tensor>& c_shift,
                        const std::optional<at::Tensor>& c_mean, const std::optional<at::Tensor>& c_var,
                        const at::Tensor& c_first, const at::Tensor& c_second, bool c_training, double c_eps,
                        const at::Tensor& final, const std::optional<at::Tensor>& outputs) {
  check_blocks({&dh, &dgates, &dz, &dv, &c, &z, &v, &gates, &tc}, "every LSTM buffer");
  const Rows dhs(dh), dzs(dz), dvs(dv), cells(c), zs(z), vs(v), grads(outputs);
  const int64_t steps = tc.size(0), batch = tc.size(1), hidden = tc.size(2), four = 4 * hidden;
  const int64_t block = batch * hidden;
  TORCH_CHECK(dgates.sizes() == zs[0].sizes() && dv.sizes() == z.sizes() && v.sizes() == z.sizes(),
              "a (B, 4H) row of gate gradients; dv, v and z (T, B, 4H)");
  StepNorm norm_x(x_layer, x_gain, x_shift, x_mean, x_var, x_training, 0.0, x_eps, vs[0]);
  StepNorm norm_h(h_layer, h_gain, h_shift, h_mean, h_var, h_training, 0.0, h_eps, zs[0]);
  StepNorm norm_c(c_layer, c_gain, c_shift, c_mean, c_var, c_training, 0.0, c_eps, cells[1]);
  norm_x.use(x_first, x_second);
  norm_h.use(h_first, h_second);
  norm_c.use(c_first, c_second);
  at::Tensor delta = at::empty_like(cells[0]), dc = at::empty_like(cells[0]), carry = at::empty_like(cells[0]);
  at::Tensor* h_shift_grad = h_grad_shift.has_value() ? &*h_grad_shift : nullptr;
  at::Tensor* c_shift_grad = c_grad_shift.has_value() ? &*c_grad_shift : nullptr;
  float *dcp = dc.data_ptr<float>(), *kp = carry.data_ptr<float>();
  dhs[steps - 1].copy_(final);
  for (int64_t t = steps - 1; t >= 0; --t) {
    const float *d = dhs[t].data_ptr<float>(), *a = gates.data_ptr<float>() + t * batch * four;
    const float* tct = tc.data_ptr<float>() + t * block;
    float *dg = dgates.data_ptr<float>(), *dl = delta.data_ptr<float>();
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t j = 0; j < hidden; ++j) {
        const int64_t k = b * hidden + j;
        const float o = a[b * four + 3 * hidden + j], dk = d[k], tk = tct[k];
        dg[b * four + 3 * hidden + j] = (dk * tk) * (o * (1.f - o));
        dl[k] = (dk * o) * (1.f - tk * tk);
      }
    }
    norm_c.backward(delta, cells[t + 1], t, dc, c_grad_gain, c_shift_grad);
    if (t < steps - 1) {
      for (int64_t k = 0; k < block; ++k) dcp[k] = dcp[k] + kp[k];
    }
    const float* c_prev = cells[t].data_ptr<float>();
    for (int64_t b = 0; b < batch; ++b) {
      const float *row = a + b * four, *dcb = dcp + b * hidden, *cb = c_prev + b * hidden;
      float *out = dg + b * four, *kb = kp + b * hidden;
      // By hand in vectors (GCC leaves this loop scalar): each operation one rounding, as in the scalar tail.
      int64_t j = 0;
      for (; j + Vec::size() <= hidden; j += Vec::size()) {
        const Vec i = Vec::loadu(row + j), f = Vec::loadu(row + hidden + j), g = Vec::loadu(row + 2 * hidden + j);
        const Vec dck = Vec::loadu(dcb + j), one(1.f);
        ((dck * g) * (i * (one - i))).store(out + j);
        ((dck * Vec::loadu(cb + j)) * (f * (one - f))).store(out + hidden + j);
        ((dck * i) * (one - g * g)).store(out + 2 * hidden + j);
        (dck * f).store(kb + j);
      }
      for (; j < hidden; ++j) {
        const float i = row[j], f = row[hidden + j], g = row[2 * hidden + j], dck = dcb[j];
        out[j] = (dck * g) * (i * (1.f - i));
        out[hidden + j] = (dck * cb[j]) * (f * (1.f - f));
        out[2 * hidden + j] = (dck * i) * (1.f - g * g);
        kb[j] = dck * f;
      }
    }
    norm_h.backward(dgates, zs[t], t, dzs[t], h_grad_gain, h_shift_grad);
    norm_x.backward(dgates, vs[t], t, dvs[t], x_grad_gain, &x_grad_shift);
    if (t > 0) recurrent_grad(dhs[t - 1], grads, t, dzs[t], w_hh);
  }
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("vanilla_forward", &vanilla_forward, "the vanilla recurrence's forward over a state buffer, in place");
  m.def("vanilla_states", &vanilla_states, "the vanilla recurrence in place over its input parts (no graph)");
  m.def("vanilla_backward", &vanilla_backward, "dL/da_t of every step of the vanilla recurrence");
  m.def("layer_norm_forward", &layer_norm_forward, "the vanilla recurrence under layer norm, forward");
  m.def("layer_norm_backward", &layer_norm_backward, "the vanilla recurrence under layer norm, backward");
  m.def("batch_norm_forward", &batch_norm_forward, "the vanilla recurrence under batch norm, forward");
  m.def("batch_norm_backward", &batch_norm_backward, "the vanilla recurrence under batch norm, backward");
  m.def("batch_norm_fused_forward", &batch_norm_fused_forward,
        "the vanilla recurrence under batch norm with its input part's batch norm, forward");
  m.def("batch_norm_fused_backward", &batch_norm_fused_backward,
        "the vanilla recurrence under batch norm with its input part's batch norm, backward");
  m.def("layer_norm_gain_terms", &layer_norm_gain_terms, "((pre - mean) * rstd) * delta, the terms of dL/dgain");
  m.def("gru_forward", &gru_forward, "the GRU recurrence's forward over its buffers, in place");
  m.def("gru_backward", &gru_backward, "dL/dh_t and dL/dgh_t of every step of the GRU recurrence");
  m.def("gru_norm_forward", &gru_norm_forward, "the GRU recurrence under a normalization, forward");
  m.def("gru_norm_backward", &gru_norm_backward, "the GRU recurrence under a normalization, backward");
  m.def("lstm_norm_forward", &lstm_norm_forward, "the LSTM recurrence under a normalization, forward");
  m.def("lstm_norm_backward", &lstm_norm_backward, "the LSTM recurrence under a normalization, backward");
  m.def("gradient_norms", &rnn_gradients::gradient_norms, "the global and per-group gradient norms (GradientMeter)");
  m.def("adam_update", &rnn_gradients::adam_update, "one Adam update of every parameter, in place (optimizers.Adam)");
}
