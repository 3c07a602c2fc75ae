// The one random source of every initialization: a seeded, platform-independent
// generator. std::*_distribution results differ between standard libraries, so
// the distributions are written out here and a seed means the same parameters
// everywhere.
#pragma once

#include <cmath>
#include <cstdint>

#include "mixlens/tensor.hpp"

namespace mixlens::detail {

class splitmix64 {
 public:
  explicit splitmix64(std::uint64_t seed) : state_(seed) {}

  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // exp(U[log lo, log hi]): how SSMs draw their step sizes.
  double log_uniform(double lo, double hi) { return std::exp(uniform(std::log(lo), std::log(hi))); }
  // Standard normal by Box–Muller (one draw per call).
  double normal() {
    constexpr double two_pi = 6.283185307179586476925286766559;
    const double u = 1.0 - uniform();  // (0, 1]: the log is finite
    return std::sqrt(-2 * std::log(u)) * std::cos(two_pi * uniform());
  }
  double normal(double mean, double stddev) { return mean + stddev * normal(); }
  // Normal truncated to ±2 standard deviations, rescaled to `stddev` (the
  // variance-scaling convention: the truncated standard normal has std 0.8796…).
  double truncated_normal(double stddev) {
    double z;
    do z = normal();
    while (std::abs(z) > 2);
    return z * stddev / 0.87962566103423978;
  }

 private:
  std::uint64_t state_;
};

// Fills a tensor with U(−bound, bound), PyTorch nn.Linear's default range.
template <class T, std::size_t Rank>
void uniform_fill(tensor<T, Rank>& m, std::uint64_t seed, double bound) {
  splitmix64 rng(seed);
  for (index_t i = 0; i < m.size(); ++i) m.data()[i] = static_cast<T>(rng.uniform(-bound, bound));
}

// A (rows × cols) matrix of standard normal entries.
template <class T>
[[nodiscard]] matrix<T> normal_matrix(index_t rows, index_t cols, std::uint64_t seed) {
  splitmix64 rng(seed);
  matrix<T> m(rows, cols);
  for (index_t i = 0; i < m.size(); ++i) m.data()[i] = static_cast<T>(rng.normal());
  return m;
}

}  // namespace mixlens::detail
