// The attribution recipes of models/mamba_attribution.hpp for Mamba-2 language
// models, on any backend, built on mamba2_gradients (models/mamba2_backward.hpp):
//
//  - grad_input: Σ_h ∂target/∂e ⊙ e at the embedding output e;
//  - lrp: the same under MambaLRP's rules (propagation::lrp; the gated RMSNorm's
//    denominator detached and its gate product split half and half);
//  - mamba_attr: per layer the paper's α per head (α_h = L_h ∘ (C Bᵀ)·diag(Δ_h),
//    H matrices in place of Mamba's D), clamped at 0, min–max normalized over
//    the layer's H × L × L tensor, averaged over the heads, the columns weighted
//    by the token weights of the residual gradient; rolled out, the target row;
//  - attn_grad: the unified form's matrices of the whole Mamba-2 block (conv,
//    activation factor, SSD with D, the gated norm as a diagonal at its input:
//    one per SSM channel) clamped at 0, averaged over the channels, the columns
//    weighted, min–max normalized; rolled out, the target row.
// docs/attribution.md has the details.
// Needs nlohmann-json (through mamba2_model.hpp).
#pragma once

#include <span>

#include "mixlens/backend.hpp"
#include "mixlens/models/mamba2_backward.hpp"
#include "mixlens/models/mamba2_forward.hpp"
#include "mixlens/models/mamba2_model.hpp"
#include "mixlens/models/mamba_attribution.hpp"

namespace mixlens::models {

// On any backend, with the model's weights in its memory (host_weights,
// gpu::to_device); the overloads taking a mamba2_model run on the host.
template <class Backend, class T>
[[nodiscard]] attribution_result grad_input(const Backend& be, const mamba2_weights<T>& w,
                                            std::span<const index_t> tokens, gradient_target target = {}) {
  return detail::gradient_times_input(be, w, tokens, target, propagation::gradient);
}

// Conservation as for Mamba: Σ_t score_t = target when conv1d, in_proj and
// out_proj have no bias.
template <class Backend, class T>
[[nodiscard]] attribution_result lrp(const Backend& be, const mamba2_weights<T>& w, std::span<const index_t> tokens,
                                     gradient_target target = {}) {
  return detail::gradient_times_input(be, w, tokens, target, propagation::lrp);
}

template <class Backend, class T>
[[nodiscard]] attribution_result mamba_attr(const Backend& be, const mamba2_weights<T>& w,
                                            std::span<const index_t> tokens, gradient_target target = {},
                                            const mamba_attr_options& options = {}) {
  return detail::mamba_attr_rollout(be, w, tokens, target, options);
}

template <class Backend, class T>
[[nodiscard]] attribution_result attn_grad(const Backend& be, const mamba2_weights<T>& w,
                                           std::span<const index_t> tokens, gradient_target target = {},
                                           const mamba_attr_options& options = {}) {
  return detail::attn_grad_rollout(be, w, tokens, target, options);
}

template <class T>
[[nodiscard]] attribution_result grad_input(const mamba2_model<T>& m, std::span<const index_t> tokens,
                                            gradient_target target = {}) {
  return grad_input(host_backend<T>{}, host_weights(m).view(), tokens, target);
}
template <class T>
[[nodiscard]] attribution_result lrp(const mamba2_model<T>& m, std::span<const index_t> tokens,
                                     gradient_target target = {}) {
  return lrp(host_backend<T>{}, host_weights(m).view(), tokens, target);
}
template <class T>
[[nodiscard]] attribution_result mamba_attr(const mamba2_model<T>& m, std::span<const index_t> tokens,
                                            gradient_target target = {}, const mamba_attr_options& options = {}) {
  return mamba_attr(host_backend<T>{}, host_weights(m).view(), tokens, target, options);
}
template <class T>
[[nodiscard]] attribution_result attn_grad(const mamba2_model<T>& m, std::span<const index_t> tokens,
                                           gradient_target target = {}, const mamba_attr_options& options = {}) {
  return attn_grad(host_backend<T>{}, host_weights(m).view(), tokens, target, options);
}

}  // namespace mixlens::models
