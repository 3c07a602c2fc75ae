// Uses the installed mixlens: a causal convolution, applied and materialized.
#include <mixlens/mixlens.hpp>

#include <cstdio>

int main() {
  const mixlens::index_t L = 8;
  mixlens::matrix<double> kernel(1, 3), x(1, L);
  kernel(0, 0) = 1.0, kernel(0, 1) = 0.5, kernel(0, 2) = 0.25;
  for (mixlens::index_t t = 0; t < L; ++t) x(0, t) = double(t);
  mixlens::causal_conv_operator<double, mixlens::short_conv_kind> op(kernel.view(), {}, L);
  auto y = mixlens::mix(op, x.view());
  auto m = mixlens::materialize(op, 0, 0);
  std::printf("y[L-1] = %g, M[L-1][L-3] = %g\n", y(0, L - 1), m(L - 1, L - 3));
  return y(0, L - 1) == 7.0 + 3.0 + 1.25 ? 0 : 1;
}
