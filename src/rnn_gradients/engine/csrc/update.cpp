// What a training step does between the backward pass and the next step, in one call each instead of one torch
// call per op and parameter: the gradient norms (training.GradientMeter) and Adam's update (optimizers.Adam).
//
// gradient_norms: the same ATen ops as GradientMeter.measure, in its order, so the same values by construction.
//
// adam_update: bit for bit optimizers.Adam (torch.optim's single-tensor Adam), whose five in-place ATen ops on a
// parameter p, its gradient g and its moments m, v are
//
//   m.lerp_(g, 1 - b1)                       m = lerp(m, g, w)                 (elementwise.h)
//   v.mul_(b2).addcmul_(g, g, value=1 - b2)  v = fma(s g, g, v b2)             (addcmul: one FMA of (s g) and g)
//   denom = (v.sqrt() / c2).add_(eps)        d = sqrt(v) / c2 + eps
//   p.addcdiv_(m, denom, value=-a)           p = p + (-a m) / d
//
// with every coefficient rounded to float32 as ATen rounds a Scalar for a float32 tensor. Each op is elementwise,
// so doing them per element in this order, instead of one op over the whole tensor after another, changes no bit;
// each is one IEEE operation (or an FMA, written out), so the vector code and the scalar tail round alike. The
// square root is the exception: ATen's float32 sqrt kernel is not the correctly rounded vector sqrt (Vec::sqrt)
// for every value, so it stays ATen's op, between a pass for the moments and one for the parameter.
// rnn_gradients.engine.extension checks both functions against the torch ops before the module is used.
#include "elementwise.h"

namespace rnn_gradients {

namespace {

struct Coefficients {
  float weight, beta2, value, correction, eps, step;
};

bool takes(const at::Tensor& t, int64_t numel) {
  return t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous() && t.numel() == numel;
}

void update_tensor(const at::Tensor& param, const at::Tensor& grad, const at::Tensor& exp_avg,
                   const at::Tensor& exp_avg_sq, const Coefficients& c) {
  const int64_t n = param.numel();
  const float* g = grad.data_ptr<float>();
  float* m = exp_avg.data_ptr<float>();
  float* v = exp_avg_sq.data_ptr<float>();
  const Vec weight(c.weight), beta2(c.beta2), value(c.value), correction(c.correction), eps(c.eps), step(c.step);
  int64_t i = 0;
  for (; i + Vec::size() <= n; i += Vec::size()) {
    const Vec gi = Vec::loadu(g + i);
    lerp(Vec::loadu(m + i), gi, weight).store(m + i);
    at::vec::fmadd(value * gi, gi, Vec::loadu(v + i) * beta2).store(v + i);
  }
  for (; i < n; ++i) {
    m[i] = lerp(m[i], g[i], c.weight);
    v[i] = std::fma(c.value * g[i], g[i], v[i] * c.beta2);
  }
  // ATen's sqrt kernel, not Vec::sqrt: on this project's machine it differed from the correctly rounded sqrt in
  // 29 of 4,096 random values.
  const at::Tensor root = exp_avg_sq.sqrt();
  const float* r = root.data_ptr<float>();
  float* p = param.data_ptr<float>();
  for (i = 0; i + Vec::size() <= n; i += Vec::size()) {
    (Vec::loadu(p + i) + (step * Vec::loadu(m + i)) / (Vec::loadu(r + i) / correction + eps)).store(p + i);
  }
  for (; i < n; ++i) p[i] = p[i] + (c.step * m[i]) / (r[i] / c.correction + c.eps);
}

}  // namespace

std::vector<double> gradient_norms(const std::vector<at::Tensor>& grads, const at::Tensor& group_of,
                                   int64_t groups) {
  std::vector<at::Tensor> norms;
  norms.reserve(grads.size());
  for (const at::Tensor& grad : grads) norms.push_back(at::linalg_vector_norm(grad));
  const at::Tensor squares = at::pow(at::stack(norms).to(at::kDouble), 2);
  at::Tensor per_group = at::zeros({groups}, squares.options());
  per_group.index_add_(0, group_of, squares);
  // One transfer to the host where the gradients live on a device, as tolist() makes.
  const at::Tensor values = at::cat({squares.sum().sqrt().reshape({1}), per_group.sqrt()}).cpu();
  const double* data = values.data_ptr<double>();
  return std::vector<double>(data, data + values.numel());
}

bool adam_update(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& grads,
                 const std::vector<at::Tensor>& exp_avgs, const std::vector<at::Tensor>& exp_avg_sqs, double weight,
                 double beta2, double value, double eps, const std::vector<double>& bias_corrections2_sqrt,
                 const std::vector<double>& neg_step_sizes) {
  const size_t count = params.size();
  TORCH_CHECK(grads.size() == count && exp_avgs.size() == count && exp_avg_sqs.size() == count &&
                  bias_corrections2_sqrt.size() == count && neg_step_sizes.size() == count,
              "adam_update takes one gradient, two moments and two step coefficients per parameter");
  for (size_t k = 0; k < count; ++k) {
    const int64_t n = params[k].numel();
    if (!(takes(params[k], n) && takes(grads[k], n) && takes(exp_avgs[k], n) && takes(exp_avg_sqs[k], n))) {
      return false;
    }
  }
  for (size_t k = 0; k < count; ++k) {
    const Coefficients c{static_cast<float>(weight), static_cast<float>(beta2),
                         static_cast<float>(value),  static_cast<float>(bias_corrections2_sqrt[k]),
                         static_cast<float>(eps),    static_cast<float>(neg_step_sizes[k])};
    update_tensor(params[k], grads[k], exp_avgs[k], exp_avg_sqs[k], c);
  }
  return true;
}

}  // namespace rnn_gradients
