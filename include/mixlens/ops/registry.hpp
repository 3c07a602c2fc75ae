// Every operator of the library, listed once: its key, and how to make it as
// its reference code initializes it from one set of sizes. The experiments
// (examples/01_operator_classes), the verdict and device oracle tests and the
// documentation check iterate this list; mixlens.hpp includes it, so the whole
// host library is what it lists.
//
//   for_each_operator<double>([&](auto entry) {
//     using E = decltype(entry);
//     const auto mixer = E::init(options);          // an unbound mixer
//     const auto op = E::bind(mixer, x.view());    // a bound operator
//     ... operator_traits<view type of op>::name, ::control ...
//   });
//
// Names, classes and traits come from operator_traits of the bound view.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <tuple>
#include <utility>

#include "mixlens/ops/causal_conv.hpp"
#include "mixlens/ops/dss.hpp"
#include "mixlens/ops/gss.hpp"
#include "mixlens/ops/hyena.hpp"
#include "mixlens/ops/linear_attention.hpp"
#include "mixlens/ops/mamba_block.hpp"
#include "mixlens/ops/retnet.hpp"
#include "mixlens/ops/rg_lru.hpp"
#include "mixlens/ops/rwkv4.hpp"
#include "mixlens/ops/s4.hpp"
#include "mixlens/ops/s4d.hpp"
#include "mixlens/ops/s5.hpp"
#include "mixlens/ops/s6.hpp"
#include "mixlens/ops/softmax_attention.hpp"
#include "mixlens/ops/ssd.hpp"

namespace mixlens {

// The sizes every registry operator is made from: channels of the input, state
// size of the SSMs, heads of the attention-like operators and SSD (each head
// has channels / heads channels), the longest input (Hyena's implicit filters
// are made for it), and the seed of every initialization.
struct operator_options {
  index_t channels = 8, state = 16, heads = 2, max_length = 256;
  std::uint64_t seed = 0;

  [[nodiscard]] index_t head_size() const { return channels / heads; }
};

namespace registry {

// An entry binds with mixer.bind(x) unless it says otherwise.
struct plain_bind {
  template <class Mixer, class X>
  static auto bind(const Mixer& m, X x) {
    return m.bind(x);
  }
};

template <class T>
struct s4 : plain_bind {
  static constexpr std::string_view key = "s4";
  static auto init(const operator_options& o) { return s4_mixer<T>::init(o.channels, o.state, o.seed); }
};
template <class T>
struct s4d : plain_bind {
  static constexpr std::string_view key = "s4d";
  static auto init(const operator_options& o) { return s4d_mixer<T>::init(o.channels, o.state, s4d_init::lin, o.seed); }
};
template <class T>
struct dss : plain_bind {
  static constexpr std::string_view key = "dss";
  static auto init(const operator_options& o) {
    return dss_mixer<T>::init(o.channels, o.state, dss_variant::exp, {.seed = o.seed});
  }
};
template <class T>
struct s5 : plain_bind {
  static constexpr std::string_view key = "s5";
  static auto init(const operator_options& o) {
    return s5_mixer<T>::init(o.channels, {.state_size = o.state, .seed = o.seed});
  }
};
template <class T>
struct gss : plain_bind {
  static constexpr std::string_view key = "gss";
  static auto init(const operator_options& o) {
    return gss_mixer<T>::init(o.channels, o.channels, o.state, dss_variant::exp, {.seed = o.seed});
  }
};
template <class T>
struct hyena : plain_bind {
  static constexpr std::string_view key = "hyena";
  static auto init(const operator_options& o) {
    hyena_config cfg;
    cfg.d_model = o.channels;
    cfg.l_max = o.max_length;
    cfg.order = 2;
    cfg.seed = o.seed;
    return hyena_mixer<T>::init(cfg);
  }
};
template <class T>
struct causal_conv : plain_bind {
  static constexpr std::string_view key = "causal_conv";
  static auto init(const operator_options& o) { return short_conv_mixer<T>::init(o.channels, 4, o.seed); }
};
template <class T>
struct s6 : plain_bind {
  static constexpr std::string_view key = "s6";
  static auto init(const operator_options& o) {
    return s6_mixer<T>::init(o.channels, o.state, std::max<index_t>(1, (o.channels + 15) / 16), o.seed);
  }
};
template <class T>
struct mamba_block : plain_bind {
  static constexpr std::string_view key = "mamba_block";
  static auto init(const operator_options& o) {
    return mamba_block_mixer<T>::init(o.channels, o.channels, o.state, o.seed);
  }
};
template <class T>
struct ssd : plain_bind {
  static constexpr std::string_view key = "ssd";
  static auto init(const operator_options& o) { return ssd_mixer<T>::init(o.heads, o.head_size(), o.state, o.seed); }
};
template <class T>
struct rg_lru : plain_bind {
  static constexpr std::string_view key = "rg_lru";
  static auto init(const operator_options& o) { return rg_lru_mixer<T>::init(o.channels, o.seed); }
};
template <class T>
struct rwkv4 {
  static constexpr std::string_view key = "rwkv4";
  static auto init(const operator_options& o) { return rwkv4_mixer<T>::init(o.channels, o.seed, 1, 4); }
  template <class X>
  static auto bind(const rwkv4_mixer<T>& m, X x) {
    return m.bind(x, {.receptance = true});
  }
};
template <class T>
struct retnet : plain_bind {
  static constexpr std::string_view key = "retnet";
  static auto init(const operator_options& o) {
    return retnet_mixer<T>::init(o.channels, o.heads, o.head_size(), o.head_size(), o.seed);
  }
};
template <class T>
struct linear_attention : plain_bind {
  static constexpr std::string_view key = "linear_attention";
  static auto init(const operator_options& o) {
    return linear_attention_mixer<T>::init(o.channels, o.heads, o.head_size(), o.head_size(), o.seed);
  }
};
template <class T>
struct softmax_attention : plain_bind {
  static constexpr std::string_view key = "softmax_attention";
  static auto init(const operator_options& o) {
    return softmax_attention_mixer<T>::init(o.channels, o.heads, o.head_size(), o.head_size(), o.seed);
  }
};

// The list, in the order of the README table.
template <class T>
using all = std::tuple<s4d<T>, s4<T>, dss<T>, s5<T>, gss<T>, hyena<T>, s6<T>, mamba_block<T>, causal_conv<T>, ssd<T>,
                       rg_lru<T>, rwkv4<T>, retnet<T>, linear_attention<T>, softmax_attention<T>>;

inline constexpr std::size_t count = std::tuple_size_v<all<double>>;

}  // namespace registry

// Calls f(entry) for every registry entry, in order (entry is a value of the
// entry type; its members are static).
template <class T, class F>
void for_each_operator(F&& f) {
  std::apply([&](auto... entry) { (f(entry), ...); }, registry::all<T>{});
}

// The bound operator type of an entry.
template <class Entry, class T>
using registry_operator_t = decltype(Entry::bind(Entry::init(operator_options{}), std::declval<matrix_view<const T>>()));

}  // namespace mixlens
