// Pieces shared by the S4 and S4D kernels: parameter checks, accurate complex
// expm1/log1p for the discretizations, and the random initialization of
// state-spaces/s4 (log-uniform Δ, complex normal C).
#pragma once

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "mixlens/detail/math.hpp"
#include "mixlens/detail/random.hpp"
#include "mixlens/error.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::detail {

using s4_complex = complex<double>;

template <class T>
[[nodiscard]] s4_complex to_s4_complex(const complex<T>& z) {
  return s4_complex(static_cast<double>(z.real()), static_cast<double>(z.imag()));
}

// log(1 + w), accurate for small |w|.
[[nodiscard]] inline s4_complex s4_log1p(s4_complex w) {
  const double x = w.real(), y = w.imag();
  return {0.5 * std::log1p(2.0 * x + x * x + y * y), std::atan2(y, 1.0 + x)};
}

// Every diagonal entry of a (channels × states) array must have Re < 0.
template <class T>
void s4_check_stable(std::string_view where, std::string_view argument, matrix_view<const complex<T>> a) {
  for (index_t h = 0; h < a.extent(0); ++h)
    for (index_t n = 0; n < a.extent(1); ++n) {
      const s4_complex z = to_s4_complex(a(h, n));
      if (!(z.real() < 0.0) || !std::isfinite(z.imag()))
        fail(where, argument,
             "Re < 0 (a stable state) at (" + std::to_string(h) + ", " + std::to_string(n) + ")",
             format_complex(z));
    }
}

// log Δ per channel: Δ = exp(log Δ) must be a positive, finite step.
template <class T>
void s4_check_log_dt(std::string_view where, const std::vector<T>& log_dt, index_t channels) {
  check_equal(where, "log_dt", "size", channels, static_cast<index_t>(log_dt.size()));
  for (std::size_t h = 0; h < log_dt.size(); ++h) {
    const double dt = std::exp(static_cast<double>(log_dt[h]));
    if (!(dt > 0.0) || !std::isfinite(dt))
      fail(where, "log_dt", "a step dt = exp(log_dt) > 0 and finite at channel " + std::to_string(h),
           "dt = " + std::to_string(dt));
  }
}

template <class T>
void s4_check_shape(std::string_view where, std::string_view argument, index_t rows, index_t cols,
                    matrix_view<const complex<T>> m) {
  check_equal(where, argument, "channels (extent 0)", rows, m.extent(0));
  check_equal(where, argument, "states (extent 1)", cols, m.extent(1));
}

// Random parameters as state-spaces/s4 draws them: log Δ ~ U[log dt_min, log dt_max],
// C ~ complex normal with unit variance (each part N(0, 1/2)), D ~ N(0, 1).
class s4_random {
 public:
  explicit s4_random(std::uint64_t seed) : gen_(seed) {}

  template <class T>
  std::vector<T> log_dt(index_t channels, double dt_min, double dt_max) {
    constexpr std::string_view where = "mixlens::s4 initialization";
    check_positive(where, "dt_min", dt_min);
    if (!(dt_max >= dt_min)) fail(where, "dt_max", "dt_max >= dt_min = " + std::to_string(dt_min), dt_max);
    std::vector<T> v(static_cast<std::size_t>(channels));
    for (auto& e : v) e = static_cast<T>(std::log(gen_.log_uniform(dt_min, dt_max)));
    return v;
  }

  template <class T>
  matrix<complex<T>> complex_normal(index_t rows, index_t cols) {
    matrix<complex<T>> m(rows, cols);
    for (index_t i = 0; i < m.size(); ++i) {
      const double re = gen_.normal(0.0, std::sqrt(0.5)), im = gen_.normal(0.0, std::sqrt(0.5));
      m.data()[i] = complex<T>(static_cast<T>(re), static_cast<T>(im));
    }
    return m;
  }

  template <class T>
  std::vector<T> normal(index_t count) {
    std::vector<T> v(static_cast<std::size_t>(count));
    for (auto& e : v) e = static_cast<T>(gen_.normal());
    return v;
  }

 private:
  splitmix64 gen_;
};

}  // namespace mixlens::detail
