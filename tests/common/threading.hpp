// The check of a threaded host apply: sequence_parallel_scan at 1, 2, 3 and
// all threads, and host_backend::apply with as many, give the single-threaded
// apply's results bit for bit.
#pragma once

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <string>
#include <type_traits>

#include "mixlens/backend.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/scan.hpp"

namespace mixlens::testing {

// `x` contiguous (in_channels × L); `context` names the case in failures.
template <class Op>
void check_threaded_apply(const Op& op, matrix_view<const typename Op::value_type> x, const std::string& context) {
  const auto& v = view_of(op);
  using V = std::remove_cvref_t<decltype(v)>;
  using T = typename V::value_type;
  static_assert(detail::splits_channels<V>, "the operator's apply takes a sequence_parallel_scan");
  const index_t C = v.out_channels(), L = v.length();
  matrix<T> want(C, L);
  v.apply(x, want.view());
  for (int threads : {1, 2, 3, 0}) {
    matrix<T> got(C, L), backend_out(C, L);
    v.apply(x, got.view(), sequence_parallel_scan{.threads = threads, .grain = 1});  // grain 1: every thread used
    BOOST_TEST(std::equal(got.data(), got.data() + got.size(), want.data()), context << ", threads " << threads);
    host_backend<T> be;
    be.threads = threads;
    be.apply(v, x.data_handle(), backend_out.data());
    BOOST_TEST(std::equal(backend_out.data(), backend_out.data() + backend_out.size(), want.data()),
               context << ", host_backend, threads " << threads);
  }
}

}  // namespace mixlens::testing
