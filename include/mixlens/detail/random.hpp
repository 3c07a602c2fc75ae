// A small, seeded, platform-independent generator for parameter initialization
// (std::*_distribution results differ between standard libraries).
#pragma once

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

 private:
  std::uint64_t state_;
};

// Fills a tensor with U(−bound, bound), PyTorch nn.Linear's default range.
template <class T, std::size_t Rank>
void uniform_fill(tensor<T, Rank>& m, std::uint64_t seed, double bound) {
  splitmix64 rng(seed);
  for (index_t i = 0; i < m.size(); ++i) m.data()[i] = static_cast<T>(bound * (2.0 * rng.uniform() - 1.0));
}

}  // namespace mixlens::detail
