// The DSS reference shared by the DSS and GSS tests: the diagonal SSM run as a
// recurrence in long double, independent of the library's kernel code.
#pragma once

#include <complex>
#include <vector>

#include "mixlens/ops/dss.hpp"

namespace mixlens::testing {

using cld = std::complex<long double>;

template <class T>
cld at(const matrix<complex<T>>& m, index_t r, index_t c) {
  return {static_cast<long double>(m(r, c).real()), static_cast<long double>(m(r, c).imag())};
}

// Λ·Δ straight from the parameters.
template <class T>
cld step(const dss_parameters<T>& p, index_t c, index_t n) {
  const long double dr = p.dt[c], di = p.dt_imag.empty() ? dr : p.dt_imag[c];
  return {at(p.lambda, c, n).real() * dr, at(p.lambda, c, n).imag() * di};
}

// Independent reference: the diagonal SSM run as a recurrence in long double,
//   h_t = e^{ΛΔ} h_{t−1} + u_t,  y_t = Re Σ_n c_n h_t[n] + D u_t,
// with c_n = W (e^{ΛΔ} − 1)/Λ (DSS-exp), W (DSS-exp-no-scale) or
// W / (Λ Σ_{r<L} e^{ΛΔr}) (DSS-softmax, normalizer summed term by term).
template <class T>
matrix<T> naive_dss(const dss_mixer<T>& mixer, const matrix<T>& u) {
  const auto& p = mixer.parameters();
  const index_t C = u.extent(0), L = u.extent(1), N = mixer.state_size();
  matrix<T> y(C, L);
  for (index_t c = 0; c < C; ++c) {
    std::vector<cld> a(N), coeff(N), h(N, cld(0));
    for (index_t n = 0; n < N; ++n) {
      const cld mu = step(p, c, n), lambda = at(p.lambda, c, n), w = at(p.w, c, n);
      a[n] = std::exp(mu);
      if (mixer.variant() == dss_variant::exp) {
        coeff[n] = w * (std::exp(mu) - cld(1)) / lambda;
      } else if (mixer.variant() == dss_variant::exp_no_scale) {
        coeff[n] = w;
      } else {
        cld z = 0;
        for (index_t r = 0; r < L; ++r) z += std::exp(mu * static_cast<long double>(r));
        coeff[n] = w / (lambda * z);
      }
    }
    for (index_t t = 0; t < L; ++t) {
      long double acc = p.skip.empty() ? 0.0L : static_cast<long double>(p.skip[c]) * u(c, t);
      for (index_t n = 0; n < N; ++n) {
        h[n] = a[n] * h[n] + cld(static_cast<long double>(u(c, t)));
        acc += (coeff[n] * h[n]).real();
      }
      y(c, t) = static_cast<T>(acc);
    }
  }
  return y;
}

}  // namespace mixlens::testing
