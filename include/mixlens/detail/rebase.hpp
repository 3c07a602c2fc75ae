// Copying the data behind a view: every data member a view lists in
// for_each_view (mdspans, spans, nested views) is copied and the view pointed at
// the copy. gpu::to_device / gpu::to_host use it across the bus; owned_copy
// here keeps a host view's data alive past the buffers it points into.
#pragma once

#include <cstddef>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "mixlens/linear_operator.hpp"

namespace mixlens {

// The host memory behind a copied view: one buffer per data member.
struct host_storage {
  std::vector<std::vector<std::byte>> buffers;
};

namespace detail {

template <class V>
concept mdspan_like = requires(const V& v) {
  v.mapping();
  v.data_handle();
};
template <class V>
concept span_like = !mdspan_like<V> && requires(const V& v) {
  v.data();
  v.size();
};

// Points every data member of `view` (recursively through nested views) at a
// copy made by copy(bytes, source) -> new address. Members that share memory
// keep sharing it; empty members become null views.
template <class View, class Copy>
void rebase(View& view, Copy& copy, std::vector<std::pair<const void*, void*>>& seen) {
  view.for_each_view([&](auto& member) {
    using M = std::remove_cvref_t<decltype(member)>;
    if constexpr (rebasable<M>) {
      rebase(member, copy, seen);
    } else {
      static_assert(mdspan_like<M> || span_like<M>, "for_each_view must list mdspans, spans or nested views");
      using E = typename M::element_type;
      const void* source = nullptr;
      std::size_t count = 0;
      if constexpr (mdspan_like<M>) source = member.data_handle(), count = member.mapping().required_span_size();
      else source = member.data(), count = member.size();
      void* target = nullptr;
      if (count > 0 && source) {
        for (const auto& [from, to] : seen)
          if (from == source) target = to;
        if (!target) target = copy(count * sizeof(E), source), seen.emplace_back(source, target);
      }
      auto* p = static_cast<E*>(target);
      if constexpr (mdspan_like<M>) member = M(p, member.mapping());
      else member = M(p, count);
    }
  });
}

template <class View, class Copy>
void rebase(View& view, Copy& copy) {
  std::vector<std::pair<const void*, void*>> seen;
  rebase(view, copy, seen);
}

// A copy of `view` that owns its data in host memory, each buffer filled by
// copy_bytes(destination, source, bytes) (memcpy, or a device-to-host copy).
template <class View, class CopyBytes>
[[nodiscard]] bound<View, host_storage> host_copy(const View& view, CopyBytes&& copy_bytes) {
  View v = view;
  host_storage storage;
  auto copy = [&](std::size_t bytes, const void* source) -> void* {
    storage.buffers.emplace_back(bytes);
    void* p = storage.buffers.back().data();
    copy_bytes(p, source, bytes);
    return p;
  };
  rebase(v, copy);
  return bound<View, host_storage>(std::move(storage), [&](const host_storage&) { return v; });
}

}  // namespace detail

// A copy of a host view that owns its data (the same view type).
template <class View>
  requires rebasable<View>
[[nodiscard]] bound<View, host_storage> owned_copy(const View& host_view) {
  return detail::host_copy(host_view, [](void* to, const void* from, std::size_t bytes) { std::memcpy(to, from, bytes); });
}

}  // namespace mixlens
