// The scan primitive: the affine recurrence h_t = a_t·h_{t-1} + b_t as a monoid,
// and host scan policies over it. The element and its composition are
// host/device code, shared with the GPU scans.
#pragma once

#include <algorithm>
#include <bit>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "mixlens/config.hpp"
#include "mixlens/detail/float_mode.hpp"
#include "mixlens/detail/host_scan.hpp"
#include "mixlens/detail/parallel.hpp"
#include "mixlens/error.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens {

// The map h ↦ a·h + b. `A` and `B` are real or complex; a complex b with a real a
// is allowed (a real decay acting on a complex state).
template <class A, class B = A>
struct affine {
  A a;
  B b;

  [[nodiscard]] MIXLENS_HD static constexpr affine identity() { return {A(1), B(0)}; }
};

// (a1, b1) ∘ (a2, b2) = (a2·a1, a2·b1 + b2): apply `first`, then `second`.
// Associative, not commutative.
struct affine_compose {
  template <class A, class B>
  [[nodiscard]] MIXLENS_HD constexpr affine<A, B> operator()(const affine<A, B>& first,
                                                             const affine<A, B>& second) const {
    return {second.a * first.a, second.a * first.b + second.b};
  }
};

// ---- host scan policies ------------------------------------------------------
// Each computes the inclusive scan in place: afterwards e[t] = e[0] ∘ … ∘ e[t],
// so e[t].b is the state h_t of the recurrence started from h_{-1} = 0.
//
// Every policy runs its loops with flush-to-zero and denormals-are-zero on (x86;
// detail/float_mode.hpp), restoring the caller's mode on return or throw: the
// running decay product e[t].a otherwise sticks at a subnormal value, and every
// later step ran about 20 times slower. Only subnormal contributions change.

// One left-to-right pass: the reference every other policy must equal.
struct sequential_scan {
  template <class A, class B>
  void operator()(vector_view<affine<A, B>> e) const {
    const detail::flush_subnormals_guard guard;
    detail::sequential_inclusive_scan(e.data(), static_cast<index_t>(e.size()), affine_compose{});
  }
};

// Two levels: scan each chunk, scan the chunk totals (the carries), then fix up
// every element with the carry of the chunks before it. Any chunk size ≥ 1.
struct chunked_scan {
  index_t chunk = 64;

  template <class A, class B>
  void operator()(vector_view<affine<A, B>> e) const {
    if (chunk < 1) detail::fail("mixlens::chunked_scan", "chunk", "a chunk size >= 1", chunk);
    const detail::flush_subnormals_guard guard;
    const index_t n = static_cast<index_t>(e.size());
    const index_t chunks = (n + chunk - 1) / chunk;
    affine_compose op;
    std::vector<affine<A, B>> carry(static_cast<std::size_t>(chunks));
    for (index_t c = 0; c < chunks; ++c) {  // independent: one chunk per worker
      const index_t begin = c * chunk, end = std::min(n, begin + chunk);
      sequential_scan{}(e.subspan(static_cast<std::size_t>(begin), static_cast<std::size_t>(end - begin)));
      carry[static_cast<std::size_t>(c)] = e[static_cast<std::size_t>(end - 1)];
    }
    sequential_scan{}(vector_view<affine<A, B>>(carry));  // inclusive carries
    for (index_t c = 1; c < chunks; ++c) {  // fix-up, independent per chunk
      const auto& before = carry[static_cast<std::size_t>(c - 1)];
      const index_t begin = c * chunk, end = std::min(n, begin + chunk);
      for (index_t t = begin; t < end; ++t) e[static_cast<std::size_t>(t)] = op(before, e[static_cast<std::size_t>(t)]);
    }
  }
};

// Work-efficient parallel prefix (Blelloch 1990): an up-sweep builds partial
// reductions in a balanced tree, a down-sweep distributes the exclusive prefixes;
// O(n) compositions, O(log n) depth. The tree is padded with identities to a
// power of two; order is preserved because the monoid is not commutative.
struct blelloch_scan {
  template <class A, class B>
  void operator()(vector_view<affine<A, B>> e) const {
    const std::size_t n = e.size();
    if (n < 2) return;
    const detail::flush_subnormals_guard guard;
    using element = affine<A, B>;
    const std::size_t size = std::bit_ceil(n);
    std::vector<element> tree(size, element::identity());
    std::copy(e.begin(), e.end(), tree.begin());
    affine_compose op;
    for (std::size_t stride = 1; stride < size; stride *= 2)  // up-sweep
      for (std::size_t i = 2 * stride - 1; i < size; i += 2 * stride) tree[i] = op(tree[i - stride], tree[i]);
    tree[size - 1] = element::identity();
    for (std::size_t stride = size / 2; stride >= 1; stride /= 2) {  // down-sweep
      for (std::size_t i = 2 * stride - 1; i < size; i += 2 * stride) {
        const element left = tree[i - stride];
        tree[i - stride] = tree[i];
        tree[i] = op(tree[i], left);
      }
    }
    for (std::size_t t = 0; t < n; ++t) e[t] = op(tree[t], e[t]);  // exclusive -> inclusive
  }
};

// ---- threaded host scan policies (OpenMP) -------------------------------------
// `threads`: 0 is every core (OpenMP's default team; OMP_NUM_THREADS if set), n > 0
// is n threads; negative is an error. `grain`: the fewest elements a thread is
// given, so short work runs on fewer threads (on one below 2·grain). With
// threads = 1, or in a build without OpenMP (threads is then ignored), each policy
// gives the sequential scan's results bit for bit.

// How many threads a policy's `threads` field stands for here (1 without OpenMP).
[[nodiscard]] inline int host_threads(int threads = 0) { return detail::resolve_threads("mixlens::host_threads", threads); }

// Parallel over independent sequences (channels × states × batch): the rows of a
// matrix of elements, each scanned sequentially, a contiguous block of rows per
// thread. Results equal the sequential scan of every row bit for bit, for any
// thread count. A single sequence (a vector) is scanned sequentially.
struct sequence_parallel_scan {
  int threads = 0;
  index_t grain = index_t(1) << 14;

  template <class A, class B>
  void operator()(vector_view<affine<A, B>> e) const {
    (void)checked_threads();
    sequential_scan{}(e);
  }

  // Every row of `e` (sequences × length) is one sequence.
  template <class A, class B>
  void operator()(matrix_view<affine<A, B>> e) const {
    const index_t rows = e.extent(0), length = e.extent(1);
    const index_t used = detail::threads_for(checked_threads(), rows * length, grain, rows);
    if (length == 0) return;
    detail::parallel_for(rows, used, [&](index_t r) {
      detail::sequential_inclusive_scan(&e(r, 0), length, affine_compose{});
    });
  }

  // The thread count `threads` stands for, after checking both fields.
  [[nodiscard]] int checked_threads() const {
    constexpr std::string_view where = "mixlens::sequence_parallel_scan";
    if (grain < 1) detail::fail(where, "grain", "a grain >= 1 (elements per thread)", grain);
    return detail::resolve_threads(where, threads);
  }
};

// Parallel over time for single long sequences: the sequence is cut into one
// chunk per thread; each thread scans its chunk, one thread scans the chunk
// totals (a pass over `threads` elements), then each chunk composes its carry-in
// into its elements (detail::time_parallel_inclusive_scan). Equal to the
// sequential scan within rounding (the chunks' products are associated
// differently); bit for bit with one thread. scan_rows runs it row after row.
struct time_parallel_scan {
  int threads = 0;
  index_t grain = index_t(1) << 14;

  template <class A, class B>
  void operator()(vector_view<affine<A, B>> e) const {
    const index_t n = static_cast<index_t>(e.size());
    const index_t used = detail::threads_for(checked_threads(), n, grain, n);
    detail::time_parallel_inclusive_scan(e.data(), n, used, affine_compose{});
  }

  // The thread count `threads` stands for, after checking both fields.
  [[nodiscard]] int checked_threads() const {
    constexpr std::string_view where = "mixlens::time_parallel_scan";
    if (grain < 1) detail::fail(where, "grain", "a grain >= 1 (elements per thread)", grain);
    return detail::resolve_threads(where, threads);
  }
};

template <class Policy>
concept scan_policy = requires(const Policy& p, vector_view<affine<double>> e) { p(e); };

// Scans every row of `e` (independent sequences × length) with `policy`: by the
// policy's own matrix overload where it has one (sequence_parallel_scan: rows in
// parallel), otherwise row after row.
template <scan_policy Policy = sequential_scan, class A, class B>
void scan_rows(matrix_view<affine<A, B>> e, Policy policy = {}) {
  if constexpr (requires { policy(e); }) {
    policy(e);
  } else {
    const index_t length = e.extent(1);
    if (length == 0) return;
    const detail::flush_subnormals_guard guard;  // once for all rows: the policy's own guard then writes nothing
    for (index_t r = 0; r < e.extent(0); ++r)
      policy(vector_view<affine<A, B>>(&e(r, 0), static_cast<std::size_t>(length)));
  }
}

// Runs the recurrence h_t = a_t·h_{t-1} + b_t with the chosen policy; h receives
// every state. `a`, `b`, `h` have equal length.
template <scan_policy Policy = sequential_scan, class A, class B>
void linear_recurrence(vector_view<const A> a, vector_view<const B> b, vector_view<B> h, Policy policy = {}) {
  detail::check_equal("mixlens::linear_recurrence", "b", "size", a.size(), b.size());
  detail::check_equal("mixlens::linear_recurrence", "h", "size", a.size(), h.size());
  std::vector<affine<A, B>> e(a.size());
  for (std::size_t t = 0; t < a.size(); ++t) e[t] = {a[t], b[t]};
  policy(vector_view<affine<A, B>>(e));
  for (std::size_t t = 0; t < a.size(); ++t) h[t] = e[t].b;
}

// The same for independent sequences, the rows of `a`, `b`, `h` (equal shapes,
// sequences × length). With sequence_parallel_scan the rows run in parallel,
// each row's packing and unpacking included; any other policy runs row by row.
template <scan_policy Policy = sequential_scan, class A, class B>
void linear_recurrence(matrix_view<const A> a, matrix_view<const B> b, matrix_view<B> h, Policy policy = {}) {
  constexpr std::string_view where = "mixlens::linear_recurrence";
  for (std::size_t r = 0; r < 2; ++r) {
    detail::check_equal(where, "b", "extent(" + std::to_string(r) + ")", a.extent(r), b.extent(r));
    detail::check_equal(where, "h", "extent(" + std::to_string(r) + ")", a.extent(r), h.extent(r));
  }
  const index_t rows = a.extent(0), length = a.extent(1);
  if (rows == 0 || length == 0) return;
  // Rows [first, last) through one buffer.
  const auto run = [&](index_t first, index_t last, const auto& scan) {
    std::vector<affine<A, B>> e(static_cast<std::size_t>(length));
    for (index_t r = first; r < last; ++r) {
      for (index_t t = 0; t < length; ++t) e[static_cast<std::size_t>(t)] = {a(r, t), b(r, t)};
      scan(vector_view<affine<A, B>>(e));
      for (index_t t = 0; t < length; ++t) h(r, t) = e[static_cast<std::size_t>(t)].b;
    }
  };
  if constexpr (std::is_same_v<Policy, sequence_parallel_scan>) {
    const index_t blocks = detail::threads_for(policy.checked_threads(), rows * length, policy.grain, rows);
    detail::parallel_for(blocks, blocks, [&](index_t k) {
      run(detail::chunk_begin(rows, blocks, k), detail::chunk_begin(rows, blocks, k + 1), sequential_scan{});
    });
  } else {
    const detail::flush_subnormals_guard guard;  // once for all rows
    run(0, rows, policy);
  }
}

}  // namespace mixlens
