// Attention span: how far back a mixing matrix reaches.
#pragma once

#include <cmath>
#include <string_view>
#include <vector>

#include "mixlens/linear_operator.hpp"

namespace mixlens::analysis {

struct attention_span_result {
  std::vector<double> profile;  // profile[k] = mean over rows i ≥ k of |M[i][i−k]|
  double mass_distance = 0;     // mean over rows with mass of the distance holding `mass` of the row
  double max_distance = 0;      // the largest such distance over the rows
  index_t rows = 0;             // rows with nonzero mass (the mean's denominator)
};

// For each row i, the smallest k with Σ_{k'≤k} |M[i][i−k']| ≥ mass · Σ_j |M[i][j]|
// (only the causal part j ≤ i counts). A pure shift by s gives s for every row
// that reaches back s steps; an exponential decay ρ^{i−j} gives about
// log(1 − mass)/log ρ on long rows. M is L × L, `mass` in (0, 1].
template <class T>
[[nodiscard]] attention_span_result attention_span(matrix_view<T> m, double mass = 0.9) {
  constexpr std::string_view where = "mixlens::analysis::attention_span";
  detail::check_square(where, "m", m.extent(0), m.extent(0), m.extent(1));
  if (!(mass > 0 && mass <= 1)) detail::fail(where, "mass", "a fraction in (0, 1]", mass);
  const index_t L = m.extent(0);
  attention_span_result out;
  out.profile.assign(static_cast<std::size_t>(L), 0.0);
  double distances = 0;
  for (index_t i = 0; i < L; ++i) {
    double total = 0;
    for (index_t k = 0; k <= i; ++k) {
      const double e = std::abs(double(m(i, i - k)));
      out.profile[static_cast<std::size_t>(k)] += e;
      total += e;
    }
    if (!(total > 0)) continue;
    // Relative slack so that rounding in the running sum cannot push a row
    // whose mass is exactly reached one step further.
    const double target = mass * total * (1 - 1e-12);
    double run = 0;
    index_t k = 0;
    for (; k <= i; ++k) {
      run += std::abs(double(m(i, i - k)));
      if (run >= target) break;
    }
    k = std::min(k, i);
    distances += double(k);
    out.max_distance = std::max(out.max_distance, double(k));
    ++out.rows;
  }
  for (index_t k = 0; k < L; ++k) out.profile[static_cast<std::size_t>(k)] /= double(L - k);
  out.mass_distance = out.rows > 0 ? distances / double(out.rows) : 0.0;
  return out;
}

}  // namespace mixlens::analysis
