// Must not compile: a type with apply and rows but no materialize is not a
// mixlens::linear_operator; the diagnostic names the unmet `materializable`.
#include "mixlens/linear_operator.hpp"

struct no_materialize {
  using value_type = double;
  [[nodiscard]] mixlens::index_t length() const { return 1; }
  [[nodiscard]] mixlens::index_t in_channels() const { return 1; }
  [[nodiscard]] mixlens::index_t out_channels() const { return 1; }
  void apply(mixlens::matrix_view<const double>, mixlens::matrix_view<double>) const {}
  void row(mixlens::index_t, mixlens::index_t, mixlens::index_t, mixlens::vector_view<double>) const {}
};

template <mixlens::linear_operator Op>
void use(const Op&) {}

int main() { use(no_materialize{}); }
