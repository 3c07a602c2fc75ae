#define BOOST_TEST_MODULE reference_params
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "common/oracles.hpp"
#include "mixlens/io/reference_params.hpp"
#include "mixlens/io/reference_params_mamba2.hpp"

// The fixtures: tests/data/make_reference_module_fixtures.py (state_dicts as the
// reference modules store them, outputs of a step-by-step float64 re-implementation).

using namespace mixlens;
using mixlens::testing::check_error;

namespace {

const std::filesystem::path dir = std::filesystem::path(MIXLENS_TEST_DATA_DIR) / "reference_params";

std::filesystem::path params(const std::string& name) { return dir / (name + ".safetensors"); }

struct reference_io {
  matrix<double> input, output;
};

reference_io io_of(const std::string& name) {
  const io::safetensors_file f(dir / (name + ".io.safetensors"));
  auto load = [&](const char* t) {
    const auto& e = f.at(t);
    matrix<double> m(e.shape.at(0), e.shape.at(1));
    f.read(e, m.data());
    return m;
  };
  return {load("input"), load("output")};
}

// max |y − ref| / max |ref| over the module output (channels·H × L).
template <class T>
double relative_error(const matrix<T>& y, const matrix<double>& ref) {
  BOOST_REQUIRE_EQUAL(y.extent(0), ref.extent(0));
  BOOST_REQUIRE_EQUAL(y.extent(1), ref.extent(1));
  double err = 0, scale = 0;
  for (index_t k = 0; k < ref.size(); ++k) {
    err = std::max(err, std::abs(double(y.data()[k]) - ref.data()[k]));
    scale = std::max(scale, std::abs(ref.data()[k]));
  }
  return err / scale;
}

template <class T>
matrix<T> cast(const matrix<double>& m) {
  matrix<T> out(m.extent(0), m.extent(1));
  for (index_t k = 0; k < m.size(); ++k) out.data()[k] = static_cast<T>(m.data()[k]);
  return out;
}

// The module output of one mixer per kernel channel: channel c·H + h.
template <class Mixer>
matrix<typename Mixer::value_type> run(const std::vector<Mixer>& mixers, const matrix<double>& input) {
  using T = typename Mixer::value_type;
  const auto x = cast<T>(input);
  const index_t H = x.extent(0), L = x.extent(1);
  matrix<T> y(static_cast<index_t>(mixers.size()) * H, L);
  for (std::size_t c = 0; c < mixers.size(); ++c) {
    const auto yc = mix(mixers[c].bind(x.view()), x.view());
    for (index_t h = 0; h < H; ++h)
      for (index_t t = 0; t < L; ++t) y(static_cast<index_t>(c) * H + h, t) = yc(h, t);
  }
  return y;
}

template <class Mixer>
double check_against(const std::string& name, const std::vector<Mixer>& mixers, double tol) {
  const auto io = io_of(name);
  const double err = relative_error(run(mixers, io.input), io.output);
  BOOST_TEST_MESSAGE(name << ": max relative error " << err);
  BOOST_TEST(err < tol, name << ": relative error " << err);
  return err;
}

io::ssm_kernel_diag_options diag_options() { return {.prefix = "layer."}; }

}  // namespace

// ---- S4D ------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(s4d_module_reproduces_reference) {
  const auto m = io::load_s4d_module<double>(params("s4d_module"));
  BOOST_TEST(m.channels() == 3);
  BOOST_TEST(m.state_size() == 8);
  check_against("s4d_module", std::vector{m}, 1e-10);
  check_against("s4d_module", std::vector{io::load_s4d_module<float>(params("s4d_module"))}, 1e-5);
}

BOOST_AUTO_TEST_CASE(ssm_kernel_diag_reproduces_reference) {
  const auto zoh = io::load_ssm_kernel_diag<double>(params("diag_zoh"), diag_options());
  BOOST_TEST(zoh.size() == 2u);  // channels
  check_against("diag_zoh", zoh, 1e-10);

  auto o = diag_options();
  o.disc = "bilinear", o.dt_transform = "softplus", o.dt_fast = true, o.real_transform = "relu",
  o.imag_transform = "softplus", o.bandlimit = 0.1;
  check_against("diag_bilinear", io::load_ssm_kernel_diag<double>(params("diag_bilinear"), o), 1e-10);

  o = diag_options();
  o.is_real = true, o.dt_transform = "sigmoid", o.real_transform = "sigmoid";
  check_against("diag_is_real", io::load_ssm_kernel_diag<double>(params("diag_is_real"), o), 1e-10);

  o = diag_options();
  o.force_real = true, o.imag_transform = "exp";
  check_against("diag_force_real", io::load_ssm_kernel_diag<double>(params("diag_force_real"), o), 1e-10);

  check_against("diag_zoh", io::load_ssm_kernel_diag<float>(params("diag_zoh"), diag_options()), 1e-5);
}

// Bidirectional FFTConv, DSS and S5SSM: the two-sided kernels and the reverse
// scan against the references' outputs, in double and float.
BOOST_AUTO_TEST_CASE(bidirectional_modules_reproduce_reference) {
  const auto diag = io::load_ssm_kernel_diag_bidirectional<double>(params("diag_bidirectional"), diag_options());
  BOOST_TEST(diag.size() == 2u);  // D's channels; the kernel holds 4
  BOOST_TEST(!is_causal(diag[0].bind(8).view()));
  check_against("diag_bidirectional", diag, 1e-10);
  check_against("diag_bidirectional",
                io::load_ssm_kernel_diag_bidirectional<float>(params("diag_bidirectional"), diag_options()), 1e-5);
  check_against("dplr_bidirectional",
                io::load_ssm_kernel_dplr_bidirectional<double>(params("dplr_bidirectional"), {.prefix = "layer."}), 1e-10);
  check_against("dss_bidirectional", io::load_dss_module_bidirectional<double>(params("dss_bidirectional"), {.version = "exp"}),
                1e-10);
  check_against("dss_bidirectional", io::load_dss_module_bidirectional<float>(params("dss_bidirectional"), {.version = "exp"}),
                1e-5);
  const auto s5 = io::load_s5_ssm<double>(params("s5_bidirectional"), {.prefix = "layers_0/seq/", .clip_eigs = true});
  BOOST_TEST(s5.bidirectional());
  check_against("s5_bidirectional", std::vector{s5}, 1e-10);
  check_against("s5_bidirectional",
                std::vector{io::load_s5_ssm<float>(params("s5_bidirectional"), {.prefix = "layers_0/seq/", .clip_eigs = true})},
                1e-5);
  const auto s5c = io::load_s5_ssm<double>(params("s5_bidirectional_complex"),
                                           {.prefix = "layers_0/seq/", .discretization = "bilinear", .conj_sym = false});
  BOOST_TEST(s5c.bidirectional());
  check_against("s5_bidirectional_complex", std::vector{s5c}, 1e-10);
  // The unidirectional loaders name the bidirectional ones.
  check_error([&] { (void)io::load_dss_module<double>(params("dss_bidirectional"), {.version = "exp"}); },
              {"a bidirectional DSS", "io::load_dss_module_bidirectional"});
  check_error([&] { (void)io::load_ssm_kernel_dplr<double>(params("dplr_bidirectional"), {.prefix = "layer."}); },
              {"a bidirectional FFTConv", "io::load_ssm_kernel_dplr_bidirectional"});
}

BOOST_AUTO_TEST_CASE(ssm_kernel_diag_refuses_unsupported_variants) {
  const auto file = params("diag_zoh");
  const std::string where = "SSMKernelDiag parameters '" + file.string() + "'";
  auto with = [](auto f) {
    auto o = diag_options();
    f(o);
    return o;
  };
  check_error([&] { (void)io::load_ssm_kernel_diag<double>(file, with([](auto& o) { o.dt_transform = "tanh"; })); },
              {where, "unsupported dt_transform 'tanh'", "none, exp, relu, sigmoid or softplus"});
  check_error([&] { (void)io::load_ssm_kernel_diag<double>(file, with([](auto& o) { o.real_transform = "abs"; })); },
              {"unsupported real_transform 'abs'"});
  check_error([&] { (void)io::load_ssm_kernel_diag<double>(file, with([](auto& o) { o.imag_transform = ""; })); },
              {"unsupported imag_transform ''"});
  check_error([&] { (void)io::load_ssm_kernel_diag<double>(file, with([](auto& o) { o.disc = "dss"; })); },
              {"unsupported disc 'dss'", "zoh and bilinear"});
  check_error([&] { (void)io::load_ssm_kernel_diag<double>(file, with([](auto& o) { o.disc = "euler"; })); },
              {"unsupported disc 'euler'"});
  // A unidirectional FFTConv is not a bidirectional one.
  check_error([&] { (void)io::load_ssm_kernel_diag_bidirectional<double>(file, diag_options()); },
              {"'layer.kernel.C' has 2 channels and 'layer.D' 2", "twice D's channels", "io::load_ssm_kernel_diag"});
  // is_real on a complex state_dict: C has the complex axis.
  check_error([&] { (void)io::load_ssm_kernel_diag<double>(file, with([](auto& o) { o.is_real = true; })); },
              {"'layer.kernel.C'", "(2, 3, 4, 2)", "is_real"});
  // A bidirectional FFTConv stores twice the channels of D in the kernel.
  auto m = io::tensor_map::copy_of(io::safetensors_file(file));
  m.insert("layer.D", {1, 3}, {0.5, 0.5, 0.5});
  check_error([&] { (void)io::load_ssm_kernel_diag<double>(m, diag_options()); },
              {"'layer.kernel.C' has 2 channels, twice the 1", "a bidirectional FFTConv",
               "io::load_ssm_kernel_diag_bidirectional"});
  // bandlimit where the reference cannot broadcast.
  check_error(
      [&] {
        auto o = diag_options();
        o.bandlimit = 0.1, o.force_real = true, o.imag_transform = "exp";
        (void)io::load_ssm_kernel_diag<double>(params("diag_force_real"), o);
      },
      {"unsupported bandlimit", "n_ssm = 2 of H = 4"});
}

BOOST_AUTO_TEST_CASE(ssm_kernel_diag_names_wrong_tensors) {
  const auto stored = io::tensor_map::copy_of(io::safetensors_file(params("diag_zoh")));
  auto changed = [&](auto f) {
    auto m = stored;
    f(m);
    return m;
  };
  check_error([&] { (void)io::load_ssm_kernel_diag<double>(changed([](auto& m) { m.erase("layer.kernel.A_imag"); }), diag_options()); },
              {"SSMKernelDiag parameters '", "missing tensor 'layer.kernel.A_imag'"});
  check_error(
      [&] {
        (void)io::load_ssm_kernel_diag<double>(
            changed([](auto& m) { m.insert("layer.kernel.B", {1, 1, 5, 2}, std::vector<double>(10, 1.0)); }),
            diag_options());
      },
      {"tensor 'layer.kernel.B'", "has shape (1, 1, 5, 2), expected (1, 1, 4, 2)"});
  check_error(
      [&] {
        (void)io::load_ssm_kernel_diag<double>(
            changed([](auto& m) { m.insert("layer.kernel.inv_dt", {3, 2}, std::vector<double>(6, -3.0)); }),
            diag_options());
      },
      {"tensor 'layer.kernel.inv_dt'", "(3, 2)", "expected (3, 1) (dt_tie) or (3, 4)"});
  check_error(
      [&] {
        (void)io::load_ssm_kernel_diag<double>(
            changed([](auto& m) { m.insert("layer.kernel.A_real", {2, 4}, std::vector<double>(8, 0.0)); }),
            diag_options());
      },
      {"tensor 'layer.kernel.A_real'", "(2, 4)", "n_ssm dividing H = 3"});
  check_error(
      [&] {
        (void)io::load_ssm_kernel_diag<double>(
            changed([](auto& m) { m.insert("layer.kernel.P", {1, 1, 4, 2}, std::vector<double>(8, 0.0)); }),
            diag_options());
      },
      {"unexpected tensor 'layer.kernel.P'", "SSMKernelDPLR"});
  check_error([&] { (void)io::load_ssm_kernel_diag<double>(stored, {}); }, {"missing tensor 'kernel.C'"});
  // The S4D module's own layout names its tensors too.
  check_error([&] { (void)io::load_s4d_module<double>(params("s4d_module"), "model."); },
              {"S4D parameters '", "missing tensor 'model.kernel.C'"});
  auto s4d = io::tensor_map::copy_of(io::safetensors_file(params("s4d_module")));
  s4d.insert("kernel.log_dt", {3, 1}, {0, 0, 0});
  check_error([&] { (void)io::load_s4d_module<double>(s4d); }, {"tensor 'kernel.log_dt'", "(3, 1)", "expected (3,)"});
}

// ---- DSS ------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(dss_module_reproduces_reference) {
  const auto softmax = io::load_dss_module<double>(params("dss_softmax"));
  BOOST_TEST(softmax.size() == 2u);
  BOOST_TEST(!softmax[0].parameters().dt_imag.empty());  // sep_dt_re_im
  check_against("dss_softmax", softmax, 1e-10);
  check_against("dss_exp", io::load_dss_module<double>(params("dss_exp"), {.version = "exp"}), 1e-10);
  check_against("dss_exp_re_im", io::load_dss_module<double>(params("dss_exp_re_im"), {.version = "exp-re-im"}), 1e-10);
  check_against("dss_exp_no_scale",
                io::load_dss_module<double>(params("dss_exp_no_scale"), {.version = "exp-no-scale"}), 1e-10);
  check_against("dss_softmax", io::load_dss_module<float>(params("dss_softmax")), 1e-5);
}

BOOST_AUTO_TEST_CASE(dss_epsilon_is_the_references) {
  // Without the bounded reciprocal's ε the softmax kernel differs beyond the 1e-10 tolerance.
  const auto io = io_of("dss_softmax");
  const double err = relative_error(run(io::load_dss_module<double>(params("dss_softmax"), {.epsilon = 0}), io.input),
                                    io.output);
  BOOST_TEST(err > 1e-9);
}

BOOST_AUTO_TEST_CASE(dss_module_refuses_unsupported_variants) {
  const auto file = params("dss_softmax");
  check_error([&] { (void)io::load_dss_module<double>(file, {.version = "softmax2"}); },
              {"DSS parameters '" + file.string() + "'", "unsupported version 'softmax2'"});
  check_error([&] { (void)io::load_dss_module_bidirectional<double>(file); },
              {"'kernel.W' has 2 channels and 'D' 2", "io::load_dss_module"});
  check_error([&] { (void)io::load_dss_module<double>(file, {.hyper = true}); }, {"unsupported hyper_act"});
  check_error([&] { (void)io::load_dss_module<double>(file, {.max_kernel_length = 8}); },
              {"unsupported max_kernel_length 8"});
  // The version must match what is stored.
  check_error([&] { (void)io::load_dss_module<double>(file, {.version = "exp"}); },
              {"missing tensor 'kernel.Lambda_log_neg_re'"});
  check_error([&] { (void)io::load_dss_module<double>(params("dss_exp"), {.version = "exp-re-im"}); },
              {"missing tensor 'kernel.Lambda_log_im'"});
  check_error([&] { (void)io::load_dss_module<double>(params("dss_exp"), {.version = "softmax"}); },
              {"missing tensor 'kernel.Lambda'"});
  // clip keeps Re Λ ≤ 1e-4, which can be ≥ 0: the exp kernel is then refused by the mixer.
  check_error([&] { (void)io::load_dss_module<double>(file, {.version = "clip"}); }, {"'lambda'", "Re Λ < 0", "DSS-exp"});
  auto m = io::tensor_map::copy_of(io::safetensors_file(file));
  m.insert("kernel.Lambda", {5, 2}, std::vector<double>(10, -0.5));
  check_error([&] { (void)io::load_dss_module<double>(m); }, {"tensor 'kernel.Lambda'", "(5, 2)", "expected (4, 2)"});
  m = io::tensor_map::copy_of(io::safetensors_file(file));
  m.insert("D", {1, 3}, {1, 1, 1});
  check_error([&] { (void)io::load_dss_module<double>(m); },
              {"'kernel.W' has 2 channels, twice the 1", "a bidirectional DSS", "io::load_dss_module_bidirectional"});
  m = io::tensor_map::copy_of(io::safetensors_file(file));
  m.insert("kernel.log_dt", {3, 3}, std::vector<double>(9, -2.0));
  check_error([&] { (void)io::load_dss_module<double>(m); }, {"tensor 'kernel.log_dt'", "(3, 3)", "sep_dt_re_im"});
}

// ---- S5 -------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(s5_ssm_reproduces_reference) {
  const io::s5_ssm_options zoh{.prefix = "layers_0/seq/", .clip_eigs = true, .step_rescale = 2.0};
  const auto m = io::load_s5_ssm<double>(params("s5_zoh"), zoh);
  BOOST_TEST(m.states() == 4);
  BOOST_TEST(m.lambda()[2].real() == -1e-4);  // clip_eigs
  check_against("s5_zoh", std::vector{m}, 1e-10);
  const io::s5_ssm_options bilinear{.prefix = "layers_0/seq/", .discretization = "bilinear", .conj_sym = false};
  check_against("s5_bilinear", std::vector{io::load_s5_ssm<double>(params("s5_bilinear"), bilinear)}, 1e-10);
  check_against("s5_zoh", std::vector{io::load_s5_ssm<float>(params("s5_zoh"), zoh)}, 1e-5);
  // The same parameters as .npy files under their flax names (an unzipped numpy.savez archive).
  const auto npy = io::read_npy_folder(dir / "s5_zoh_npy");
  BOOST_TEST(npy.tensor_names().size() == 6u);
  check_against("s5_zoh", std::vector{io::load_s5_ssm<double>(npy, zoh)}, 1e-10);
}

// A trained S5SSM without clip_eigs may hold Re Λ ≥ 0: loaded with a warning, computed as stored.
BOOST_AUTO_TEST_CASE(s5_ssm_with_growing_state_reproduces_reference) {
  std::vector<std::string> warnings;
  const io::s5_ssm_options o{.prefix = "layers_0/seq/", .warning = [&](const std::string& w) { warnings.push_back(w); }};
  const auto m = io::load_s5_ssm<double>(params("s5_unstable"), o);
  BOOST_TEST(m.allow_growth());
  BOOST_TEST(m.lambda()[2].real() > 0);
  BOOST_REQUIRE_EQUAL(warnings.size(), 1u);
  BOOST_TEST(warnings[0].find("'layers_0/seq/Lambda_re'[2] = 0.05") != std::string::npos, warnings[0]);
  BOOST_TEST(warnings[0].find("s5_unstable.safetensors") != std::string::npos);
  check_against("s5_unstable", std::vector{m}, 1e-10);
  check_against("s5_unstable", std::vector{io::load_s5_ssm<float>(params("s5_unstable"), o)}, 1e-5);
  // The bound operator's matrix is its scan's.
  const auto io = io_of("s5_unstable");
  const auto op = m.bind(io.input.view());
  const auto y = mix(op, io.input.view());
  const index_t H = io.input.extent(0), L = io.input.extent(1);
  double err = 0;
  matrix<double> block(L, L);
  matrix<double> acc(H, L);
  for (index_t o_ = 0; o_ < H; ++o_)
    for (index_t i = 0; i < H; ++i) {
      op->materialize(o_, i, block.view());
      for (index_t t = 0; t < L; ++t)
        for (index_t s_ = 0; s_ < L; ++s_) acc(o_, t) += block(t, s_) * io.input(i, s_);
    }
  for (index_t k = 0; k < y.size(); ++k) err = std::max(err, std::abs(acc.data()[k] - y.data()[k]));
  BOOST_TEST(err < 1e-12);
  // The growth must stay in range over the bound length: far too long an input is refused.
  check_error([&] { (void)m.bind(index_t(1) << 20); }, {"'lambda_bar'", "length 1048576"});
  // clip_eigs clips it instead, silently.
  warnings.clear();
  auto clipped = o;
  clipped.clip_eigs = true;
  BOOST_TEST(io::load_s5_ssm<double>(params("s5_unstable"), clipped).lambda()[2].real() == -1e-4);
  BOOST_TEST(warnings.empty());
  // A stable file gives no warning and no growth.
  BOOST_TEST(!io::load_s5_ssm<double>(params("s5_bilinear"), {.prefix = "layers_0/seq/", .discretization = "bilinear",
                                                               .conj_sym = false, .warning = o.warning})
                  .allow_growth());
  BOOST_TEST(warnings.empty());
}

BOOST_AUTO_TEST_CASE(s5_ssm_refuses_unsupported_variants) {
  const auto file = params("s5_zoh");
  const io::s5_ssm_options base{.prefix = "layers_0/seq/"};
  auto with = [&](auto f) {
    auto o = base;
    f(o);
    return o;
  };
  check_error([&] { (void)io::load_s5_ssm<double>(file, with([](auto& o) { o.discretization = "dirac"; })); },
              {"S5SSM parameters '" + file.string() + "'", "unsupported discretization 'dirac'"});
  check_error([&] { (void)io::load_s5_ssm<double>(file, with([](auto& o) { o.step_rescale = 0; })); },
              {"unsupported step_rescale"});
  auto m = io::tensor_map::copy_of(io::safetensors_file(file));
  // Bidirectional: C1 and C2 replace C, both (H, P, 2); or C holds 2P columns.
  m.insert("layers_0/seq/C1", {3, 4, 2}, std::vector<double>(24, 0.0));
  check_error([&] { (void)io::load_s5_ssm<double>(m, base); }, {"unexpected tensor 'layers_0/seq/C'", "C1 and C2"});
  m = io::tensor_map::copy_of(io::safetensors_file(file));
  m.erase("layers_0/seq/C");
  m.insert("layers_0/seq/C1", {3, 4, 2}, std::vector<double>(24, 0.0));
  check_error([&] { (void)io::load_s5_ssm<double>(m, base); }, {"missing tensor 'layers_0/seq/C2'"});
  m.insert("layers_0/seq/C2", {3, 5, 2}, std::vector<double>(30, 0.0));
  check_error([&] { (void)io::load_s5_ssm<double>(m, base); }, {"tensor 'layers_0/seq/C2'", "(3, 5, 2)", "(3, 4, 2)"});
  m = io::tensor_map::copy_of(io::safetensors_file(file));
  m.insert("layers_0/seq/C", {3, 6, 2}, std::vector<double>(36, 0.0));
  check_error([&] { (void)io::load_s5_ssm<double>(m, base); }, {"tensor 'layers_0/seq/C'", "(3, 6, 2)", "(3, 4, 2)"});
  m = io::tensor_map::copy_of(io::safetensors_file(file));
  m.insert("layers_0/seq/B", {4, 3}, std::vector<double>(12, 0.0));
  check_error([&] { (void)io::load_s5_ssm<double>(m, base); }, {"tensor 'layers_0/seq/B'", "(4, 3)", "expected (4, H, 2)"});
  m = io::tensor_map::copy_of(io::safetensors_file(file));
  m.insert("layers_0/seq/D", {4}, std::vector<double>(4, 0.0));
  check_error([&] { (void)io::load_s5_ssm<double>(m, base); }, {"tensor 'layers_0/seq/D'", "(4,)", "expected (3,)"});
  // Λ = 0 without clip_eigs: the reference's ZOH divides by it.
  m = io::tensor_map::copy_of(io::safetensors_file(file));
  m.insert("layers_0/seq/Lambda_re", {4}, {-0.5, -0.5, 0.0, -0.5});
  m.insert("layers_0/seq/Lambda_im", {4}, {1.0, 1.0, 0.0, 1.0});
  check_error([&] { (void)io::load_s5_ssm<double>(m, base); }, {"Λ[2] = 0", "divides by Λ"});
  check_error([&] { (void)io::load_s5_ssm<double>(file, {}); }, {"missing tensor 'Lambda_re'"});
}

// ---- Hyena ----------------------------------------------------------------------------------

namespace {

template <class T>
double hyena_error(const std::string& name, const hyena_mixer<T>& m) {
  const auto io = io_of(name);
  const double err = relative_error(m.forward(cast<T>(io.input).view()), io.output);
  BOOST_TEST_MESSAGE(name << ": max relative error " << err);
  return err;
}

}  // namespace

BOOST_AUTO_TEST_CASE(hyena_operator_reproduces_reference) {
  const auto m = io::load_hyena_operator<double>(params("hyena_order3"));
  BOOST_TEST(m.d_model() == 3);
  BOOST_TEST(m.order() == 3);
  BOOST_TEST(m.config().l_max == 16);
  BOOST_TEST(m.config().num_inner_mlps == 2);
  BOOST_TEST(hyena_error("hyena_order3", m) < 1e-10);
  const io::hyena_operator_options normalized{.normalized = true, .bias = false, .shift = 0.1};
  const auto n = io::load_hyena_operator<double>(params("hyena_normalized"), normalized);
  BOOST_TEST(n.config().short_filter_order == 4);
  BOOST_TEST(hyena_error("hyena_normalized", n) < 1e-10);
  // Without the options the same tensors give another operator.
  BOOST_TEST(hyena_error("hyena_normalized", io::load_hyena_operator<double>(params("hyena_normalized"))) > 1e-3);
  BOOST_TEST(hyena_error("hyena_order3", io::load_hyena_operator<float>(params("hyena_order3"))) < 1e-5);
  // Under a prefix, as in a whole model's file.
  io::tensor_map prefixed;
  const io::safetensors_file f(params("hyena_order3"));
  for (const auto& t : f.tensors()) {
    std::vector<double> v(static_cast<std::size_t>(mixlens::detail::checked_element_count("test", t.name, t.shape)));
    f.read(t, v.data());
    prefixed.insert("backbone.layers.0.mixer." + t.name, t.shape, std::move(v));
  }
  BOOST_TEST(hyena_error("hyena_order3", io::load_hyena_operator<double>(
                                             prefixed, {.prefix = "backbone.layers.0.mixer."})) < 1e-10);
}

BOOST_AUTO_TEST_CASE(hyena_operator_refuses_unsupported_variants) {
  const auto file = params("hyena_order3");
  const std::string where = "HyenaOperator parameters '" + file.string() + "'";
  check_error([&] { (void)io::load_hyena_operator<double>(file, {.num_heads = 3}); },
              {where, "unsupported num_heads 3", "one head"});
  check_error([&] { (void)io::load_hyena_operator<double>(file, {.num_blocks = 2}); }, {"unsupported num_blocks 2"});
  check_error([&] { (void)io::load_hyena_operator<double>(file, {.inner_factor = 2}); }, {"unsupported inner_factor 2"});
  check_error([&] { (void)io::load_hyena_operator<double>(file, {.outer_mixing = true}); }, {"unsupported outer_mixing"});
  check_error([&] { (void)io::load_hyena_operator<double>(file, {.post_order_ffn = true}); },
              {"unsupported post_order_ffn"});
  check_error([&] { (void)io::load_hyena_operator<double>(file, {.activation = "gelu"}); },
              {"unsupported activation 'gelu'"});
  check_error([&] { (void)io::load_hyena_operator<double>(file, {.filter_cls = "hyena-filter-nemo"}); },
              {"unsupported filter_cls 'hyena-filter-nemo'"});
  const auto stored = io::tensor_map::copy_of(io::safetensors_file(file));
  auto changed = [&](auto f) {
    auto m = stored;
    f(m);
    return m;
  };
  // What the state_dict itself shows of the refused variants.
  check_error([&] { (void)io::load_hyena_operator<double>(changed([](auto& m) {
                      m.insert("ord_proj_w", {2, 1, 1}, {1.0, 1.0});
                    })); },
              {"unsupported post_order_ffn", "ord_proj_w stored"});
  check_error([&] { (void)io::load_hyena_operator<double>(changed([](auto& m) {
                      m.insert("out_proj.weight", {3, 6}, std::vector<double>(18, 0.1));
                    })); },
              {"unsupported inner_factor 2", "(3, 6)"});
  check_error([&] { (void)io::load_hyena_operator<double>(changed([](auto& m) {
                      m.insert("filter_fn.implicit_filter.6.weight", {2, 4}, std::vector<double>(8, 0.1));
                    })); },
              {"unsupported num_heads 3"});
  // Distinct Sin frequencies per layer: HyenaFilter shares one Sin.
  check_error([&] { (void)io::load_hyena_operator<double>(changed([](auto& m) {
                      m.insert("filter_fn.implicit_filter.3.freq", {1, 4}, {1.0, 2.0, 3.0, 4.0});
                    })); },
              {"'filter_fn.implicit_filter.3.freq' differs from 'filter_fn.implicit_filter.1.freq'", "shares one"});
  check_error([&] { (void)io::load_hyena_operator<double>(changed([](auto& m) {
                      m.erase("filter_fn.implicit_filter.1.freq");
                      m.erase("filter_fn.implicit_filter.3.freq");
                      m.erase("filter_fn.implicit_filter.5.freq");
                    })); },
              {"missing tensor 'filter_fn.implicit_filter.1.freq'"});
  // Wrong and unexpected tensors are named with their shapes.
  check_error([&] { (void)io::load_hyena_operator<double>(changed([](auto& m) {
                      m.insert("filter_fn.modulation.deltas", {1, 1, 5}, std::vector<double>(5, -1.0));
                    })); },
              {"tensor 'filter_fn.modulation.deltas'", "(1, 1, 5)", "expected (1, 1, 6)"});
  check_error([&] { (void)io::load_hyena_operator<double>(changed([](auto& m) {
                      m.insert("short_filter.weight", {12, 3}, std::vector<double>(36, 0.1));
                    })); },
              {"tensor 'short_filter.weight'", "(12, 3)", "expected (12, 1, K)"});
  check_error([&] { (void)io::load_hyena_operator<double>(changed([](auto& m) {
                      m.insert("filter_fn.implicit_filter.6.bias", {6}, std::vector<double>(6, 0.1));
                    })); },
              {"unexpected tensor 'filter_fn.implicit_filter.6.bias'", "no bias"});
  check_error([&] { (void)io::load_hyena_operator<double>(changed([](auto& m) {
                      m.insert("filter_fn.pos_emb.extra", {1}, {0.0});
                    })); },
              {"unexpected tensor 'filter_fn.pos_emb.extra'", "HyenaFilter"});
  check_error([&] { (void)io::load_hyena_operator<double>(stored, {.prefix = "model."}); },
              {"missing tensor 'model.in_proj.weight'"});
}

// ---- Mamba ----------------------------------------------------------------------------------

namespace {

const std::string mamba_prefix = "backbone.layers.0.mixer.";

template <class T>
double mamba_error(const s6_mixer<T>& m, const std::string& name = "mamba_mixer") {
  const io::safetensors_file f(dir / (name + ".io.safetensors"));
  auto load = [&](const char* t) {
    const auto& e = f.at(t);
    matrix<double> out(e.shape.at(0), e.shape.at(1));
    f.read(e, out.data());
    return out;
  };
  const auto x = cast<T>(load("input")), z = cast<T>(load("z"));
  const auto op = m.bind(x.view(), s6_fold{.skip = true, .gate = true}, z.view());
  return relative_error(mix(op, x.view()), load("output"));
}

}  // namespace

BOOST_AUTO_TEST_CASE(mamba_mixer_reproduces_reference) {
  const auto m = io::load_mamba_mixer<double>(params("mamba_mixer"), {.prefix = mamba_prefix});
  BOOST_TEST(m.channels() == 4);
  BOOST_TEST(m.state_size() == 3);
  BOOST_TEST(m.dt_rank() == 2);
  const double err = mamba_error(m);
  BOOST_TEST_MESSAGE("mamba_mixer: max relative error " << err);
  BOOST_TEST(err < 1e-10);
  BOOST_TEST(mamba_error(io::load_mamba_mixer<float>(params("mamba_mixer"), {.prefix = mamba_prefix})) < 1e-5);
}

BOOST_AUTO_TEST_CASE(mamba_mixer_options_reproduce_reference) {
  auto check = [](const std::string& name, io::mamba_mixer_options o) {
    o.prefix = mamba_prefix;
    const auto m = io::load_mamba_mixer<double>(params(name), o);
    const double err = mamba_error(m, name);
    BOOST_TEST_MESSAGE(name << ": max relative error " << err);
    BOOST_TEST(err < 1e-10, name << ": relative error " << err);
    BOOST_TEST(mamba_error(io::load_mamba_mixer<float>(params(name), o), name) < 1e-5, name << " in float");
    return m;
  };
  // Jamba: weighted norms of δ, B, C (stored) and an x_proj bias (stored).
  const auto jamba = check("mamba_jamba", {});
  BOOST_TEST(jamba.dt_norm.enabled);
  BOOST_TEST(jamba.b_norm.weight.size() == 3u);
  BOOST_TEST(jamba.x_proj_bias.size() == 8u);
  // Falcon-Mamba: weightless norms, ε = mixer_rms_eps.
  const auto falcon = check("mamba_falcon", {.b_c_dt_rms = true, .mixer_rms_eps = 1e-3});
  BOOST_TEST(falcon.c_norm.enabled);
  BOOST_TEST(falcon.c_norm.weight.empty());
  // The same tensors without the norms, or with another ε, give another output.
  BOOST_TEST(mamba_error(io::load_mamba_mixer<double>(params("mamba_falcon"), {.prefix = mamba_prefix}), "mamba_falcon") > 1e-3);
  BOOST_TEST(mamba_error(io::load_mamba_mixer<double>(params("mamba_falcon"),
                                                      {.prefix = mamba_prefix, .b_c_dt_rms = true}),
                         "mamba_falcon") > 1e-6);
  // Δ without softplus, a time-invariant B (one per channel: groups = channels); a time-invariant C.
  const auto fixed_b = check("mamba_fixed_b", {.delta_softplus = false, .is_variable_B = false});
  BOOST_TEST(fixed_b.b_fixed.extent(0) == 4);
  check("mamba_fixed_c", {.is_variable_C = false});
  // The bound operator's matrix is the scan's: α per channel with the group of its own B.
  const io::safetensors_file f(dir / "mamba_fixed_b.io.safetensors");
  matrix<double> x(f.at("input").shape[0], f.at("input").shape[1]);
  f.read(f.at("input"), x.data());
  const auto op = fixed_b.bind(x.view(), s6_fold{.skip = true});
  BOOST_TEST(op->groups() == 4);
  const auto y = mix(op, x.view());
  for (index_t d = 0; d < x.extent(0); ++d) {
    matrix<double> m(x.extent(1), x.extent(1));
    op->materialize(d, d, m.view());
    double err = 0;
    for (index_t i = 0; i < x.extent(1); ++i) {
      double acc = 0;
      for (index_t j = 0; j < x.extent(1); ++j) acc += m(i, j) * x(d, j);
      err = std::max(err, std::abs(acc - y(d, i)));
    }
    BOOST_TEST(err < 1e-12);
  }
}

BOOST_AUTO_TEST_CASE(mamba_mixer_refuses_unsupported_variants) {
  const auto file = params("mamba_mixer");
  const std::string where = "Mamba parameters '" + file.string() + "'";
  const auto stored = io::tensor_map::copy_of(io::safetensors_file(file));
  auto changed = [&](auto f) {
    auto m = stored;
    f(m);
    return m;
  };
  const io::mamba_mixer_options o{.prefix = mamba_prefix};
  check_error([&] { (void)io::load_mamba_mixer<double>(params("mamba_jamba"), {.prefix = mamba_prefix, .b_c_dt_rms = true}); },
              {"Mamba parameters '", "unsupported b_c_dt_rms true", "'backbone.layers.0.mixer.dt_layernorm.weight'",
               "at most one"});
  check_error([&] { (void)io::load_mamba_mixer<double>(changed([](auto& m) {
                      m.insert(mamba_prefix + "b_layernorm.weight", {4}, {1.0, 1.0, 1.0, 1.0});
                    }), o); },
              {"tensor 'backbone.layers.0.mixer.b_layernorm.weight'", "(4,)", "expected (3,)"});
  check_error([&] { (void)io::load_mamba_mixer<double>(changed([](auto& m) {
                      m.insert(mamba_prefix + "b_layernorm.weight", {3}, {1.0, 1.0, 1.0});
                      m.insert(mamba_prefix + "B_layernorm.weight", {3}, {1.0, 1.0, 1.0});
                    }), o); },
              {"'backbone.layers.0.mixer.b_layernorm.weight' and 'backbone.layers.0.mixer.B_layernorm.weight'"});
  check_error([&] { (void)io::load_mamba_mixer<double>(changed([](auto& m) {
                      m.insert(mamba_prefix + "dt_bias", {2}, {0.0, 0.0});
                      m.insert(mamba_prefix + "A_log", {2}, {0.0, 0.0});
                    }), o); },
              {where, "unsupported layer Mamba-2", "load_mamba2_mixer"});
  check_error([&] { (void)io::load_mamba_mixer<double>(changed([](auto& m) {
                      m.insert(mamba_prefix + "x_proj.bias", {7}, std::vector<double>(7, 0.0));
                    }), o); },
              {"tensor 'backbone.layers.0.mixer.x_proj.bias'", "(7,)", "expected (8,)"});
  // Time-invariant B or C: stored as B / C (D_inner, N) with the flag off, refused otherwise.
  check_error([&] { (void)io::load_mamba_mixer<double>(params("mamba_fixed_c"), o); },
              {"tensor 'backbone.layers.0.mixer.x_proj.weight'", "(5, 4)", "expected (8, 4)"});
  check_error([&] { (void)io::load_mamba_mixer<double>(changed([](auto& m) {
                      m.insert(mamba_prefix + "C", {4, 3}, std::vector<double>(12, 0.0));
                    }), o); },
              {"unexpected tensor 'backbone.layers.0.mixer.C'", "is_variable_C"});
  check_error([&] { (void)io::load_mamba_mixer<double>(file, {.prefix = mamba_prefix, .is_variable_B = false}); },
              {"expected (5, 4)"});
  // Without the softplus Δ can be negative (here dt_proj.bias is softplus⁻¹ of a small step): the
  // bound operator refuses it, naming Δ.
  const auto no_softplus = io::load_mamba_mixer<double>(file, {.prefix = mamba_prefix, .delta_softplus = false});
  matrix<double> x(4, 16);
  std::fill(x.data(), x.data() + x.size(), 1.0);
  check_error([&] { (void)no_softplus.bind(x.view()); }, {"'delta'", "delta >= 0"});
  check_error([&] { (void)io::load_mamba_mixer<double>(file, {.prefix = mamba_prefix, .mixer_rms_eps = -1}); },
              {"unsupported mixer_rms_eps"});
  check_error([&] { (void)io::load_mamba_mixer<double>(changed([](auto& m) {
                      m.insert(mamba_prefix + "D", {1}, {1.0});
                    }), o); },
              {"tensor 'backbone.layers.0.mixer.D'", "(1,)", "expected (4,)", "one per channel"});
  check_error([&] { (void)io::load_mamba_mixer<double>(changed([](auto& m) {
                      m.insert(mamba_prefix + "x_proj.weight", {7, 4}, std::vector<double>(28, 0.0));
                    }), o); },
              {"tensor 'backbone.layers.0.mixer.x_proj.weight'", "(7, 4)", "expected (8, 4)"});
  check_error([&] { (void)io::load_mamba_mixer<double>(changed([](auto& m) { m.erase(mamba_prefix + "dt_proj.bias"); }), o); },
              {"missing tensor 'backbone.layers.0.mixer.dt_proj.bias'"});
  check_error([&] { (void)io::load_mamba_mixer<double>(file); }, {"missing tensor 'A_log'"});
}

// ---- S4: SSMKernelDPLR ----------------------------------------------------------------------

namespace {

// A safetensors file as a tensor_map, its int64 buffers (l_kernel) as their values.
io::tensor_map map_with_counts(const std::filesystem::path& file) {
  const io::safetensors_file f(file);
  io::tensor_map m(file);
  for (const auto& t : f.tensors()) {
    std::vector<double> v(static_cast<std::size_t>(mixlens::detail::checked_element_count("test", t.name, t.shape)));
    if (t.dtype == "I64") {
      std::int64_t x = 0;
      std::memcpy(&x, f.bytes(t), sizeof x);
      v.assign(1, static_cast<double>(x));
    } else {
      f.read(t, v.data());
    }
    m.insert(t.name, t.shape, std::move(v));
  }
  return m;
}

}  // namespace

BOOST_AUTO_TEST_CASE(ssm_kernel_dplr_reproduces_reference) {
  const io::ssm_kernel_dplr_options o{.prefix = "layer."};
  const auto rank1 = io::load_ssm_kernel_dplr<double>(params("dplr_rank1"), o);
  BOOST_TEST(rank1.size() == 1u);
  BOOST_TEST(rank1[0].rank() == 1);
  BOOST_TEST(rank1[0].state_size() == 8);
  check_against("dplr_rank1", rank1, 1e-10);
  auto o2 = o;
  o2.dt_transform = "softplus", o2.imag_transform = "exp";
  const auto rank2 = io::load_ssm_kernel_dplr<double>(params("dplr_rank2"), o2);
  BOOST_TEST(rank2.size() == 2u);
  BOOST_TEST(rank2[0].rank() == 2);
  check_against("dplr_rank2", rank2, 1e-10);
  check_against("dplr_rank1", io::load_ssm_kernel_dplr<float>(params("dplr_rank1"), o), 1e-5);
  // The same from a tensor_map (l_kernel as a float64 value).
  check_against("dplr_rank2", io::load_ssm_kernel_dplr<double>(map_with_counts(params("dplr_rank2")), o2), 1e-10);
  // The stored C is C̃: read as C (l_kernel = 0, a kernel never run) it gives another kernel.
  auto m = map_with_counts(params("dplr_rank1"));
  m.insert("layer.kernel.l_kernel", {}, {0.0});
  const auto io1 = io_of("dplr_rank1");
  BOOST_TEST(relative_error(run(io::load_ssm_kernel_dplr<double>(m, o), io1.input), io1.output) > 1e-3);
}

// The loaders on tensor_views (a framework's arrays read in place, as mixlens.from_module hands a
// state_dict over): float64 and float32 tensors and an int64 count, the file's results.
BOOST_AUTO_TEST_CASE(loaders_read_tensor_views) {
  const io::ssm_kernel_dplr_options o{.prefix = "layer.", .dt_transform = "softplus", .imag_transform = "exp"};
  const io::safetensors_file f(params("dplr_rank2"));
  std::vector<std::vector<double>> f64;
  std::vector<std::vector<float>> f32;
  std::vector<std::int64_t> count;
  for (const auto& t : f.tensors()) {
    if (t.dtype == "I64") continue;
    f64.emplace_back(static_cast<std::size_t>(t.size()));
    f.read(t, f64.back().data());
    f32.emplace_back(f64.back().begin(), f64.back().end());
  }
  io::tensor_views doubles("<views>"), floats("<views>");
  std::size_t k = 0;
  for (const auto& t : f.tensors()) {
    if (t.dtype == "I64") {
      count.resize(1);
      std::memcpy(count.data(), f.bytes(t), sizeof(std::int64_t));
      doubles.insert(t.name, t.shape, count.data());
      floats.insert(t.name, t.shape, count.data());
      continue;
    }
    doubles.insert(t.name, t.shape, f64[k].data());
    floats.insert(t.name, t.shape, f32[k].data());
    ++k;
  }
  BOOST_TEST(count.at(0) == 16);
  check_against("dplr_rank2", io::load_ssm_kernel_dplr<double>(doubles, o), 1e-10);
  check_against("dplr_rank2", io::load_ssm_kernel_dplr<float>(floats, o), 1e-5);
  const auto io2 = io_of("dplr_rank2");
  const auto from_file = run(io::load_ssm_kernel_dplr<double>(params("dplr_rank2"), o), io2.input);
  const auto from_views = run(io::load_ssm_kernel_dplr<double>(doubles, o), io2.input);
  BOOST_TEST(relative_error(from_views, cast<double>(from_file)) == 0.0);
  // Messages name the views' origin; a replaced view is read.
  doubles.insert("layer.D", {3}, f64[0].data());
  check_error([&] { (void)io::load_ssm_kernel_dplr<double>(doubles, o); }, {"SSMKernelDPLR parameters '<views>'", "'layer.D'"});
  check_error([&] { doubles.insert("layer.D", {2}, static_cast<const double*>(nullptr)); }, {"layer.D", "null"});
}

BOOST_AUTO_TEST_CASE(ssm_kernel_dplr_refuses_unsupported_variants) {
  const auto file = params("dplr_rank1");
  const std::string where = "SSMKernelDPLR parameters '" + file.string() + "'";
  auto with = [](auto f) {
    io::ssm_kernel_dplr_options o{.prefix = "layer."};
    f(o);
    return o;
  };
  check_error([&] { (void)io::load_ssm_kernel_dplr_bidirectional<double>(file, with([](auto&) {})); },
              {where, "a bidirectional FFTConv stores twice D's channels", "io::load_ssm_kernel_dplr"});
  check_error([&] { (void)io::load_ssm_kernel_dplr<double>(file, with([](auto& o) { o.bandlimit = 0.1; })); },
              {"unsupported bandlimit"});
  check_error([&] { (void)io::load_ssm_kernel_dplr<double>(file, with([](auto& o) { o.is_real = true; })); },
              {"unsupported is_real"});
  check_error([&] { (void)io::load_ssm_kernel_dplr<double>(file, with([](auto& o) { o.force_real = true; })); },
              {"unsupported force_real"});
  check_error([&] { (void)io::load_ssm_kernel_dplr<double>(file, with([](auto& o) { o.dt_transform = "tanh"; })); },
              {"unsupported dt_transform 'tanh'"});
  const io::ssm_kernel_dplr_options o{.prefix = "layer."};
  const auto stored = map_with_counts(file);
  auto changed = [&](auto f) {
    auto m = stored;
    f(m);
    return m;
  };
  check_error([&] { (void)io::load_ssm_kernel_dplr<double>(changed([](auto& m) {
                      m.insert("layer.kernel.inv_dt", {3, 4}, std::vector<double>(12, -3.0));
                    }), o); },
              {"unsupported dt_tie false", "(3, 4)"});
  check_error([&] { (void)io::load_ssm_kernel_dplr<double>(changed([](auto& m) { m.erase("layer.kernel.P"); }), o); },
              {"missing tensor 'layer.kernel.P'"});
  check_error([&] { (void)io::load_ssm_kernel_dplr<double>(changed([](auto& m) { m.erase("layer.kernel.l_kernel"); }), o); },
              {"missing tensor 'layer.kernel.l_kernel'"});
  check_error([&] { (void)io::load_ssm_kernel_dplr<double>(changed([](auto& m) {
                      m.insert("layer.kernel.l_kernel", {}, {2.5});
                    }), o); },
              {"'layer.kernel.l_kernel' holds 2.5", "a count"});
  check_error([&] { (void)io::load_ssm_kernel_dplr<double>(changed([](auto& m) {
                      m.insert("layer.kernel.P", {1, 1, 3, 2}, std::vector<double>(6, 0.0));
                    }), o); },
              {"tensor 'layer.kernel.P'", "(1, 1, 3, 2)", "expected (1, 1, 4, 2)"});
  check_error([&] { (void)io::load_ssm_kernel_dplr<double>(changed([](auto& m) {
                      m.insert("layer.kernel.Q", {1, 1, 4, 2}, std::vector<double>(8, 0.0));
                    }), o); },
              {"unexpected tensor 'layer.kernel.Q'"});
  check_error([&] { (void)io::load_ssm_kernel_dplr<double>(changed([](auto& m) {
                      m.insert("layer.D", {0, 3}, {});
                    }), o); },
              {"tensor 'layer.D'", "expected (1, 3)"});
  // A diagonal kernel's file is not a DPLR one.
  check_error([&] { (void)io::load_ssm_kernel_dplr<double>(params("diag_zoh"), o); }, {"missing tensor 'layer.kernel.P'"});
}

// ---- Mamba-2 --------------------------------------------------------------------------------

namespace {

template <class T>
double mamba2_error(const io::mamba2_mixer<T>& m, const std::string& name) {
  const auto io = io_of(name);
  return relative_error(m.forward(cast<T>(io.input).view()), io.output);
}

}  // namespace

BOOST_AUTO_TEST_CASE(mamba2_mixer_reproduces_reference) {
  const io::mamba2_mixer_options groups{.prefix = mamba_prefix, .ngroups = 2, .dt_min = 0.002, .dt_max = 0.05};
  const auto m = io::load_mamba2_mixer<double>(params("mamba2_groups"), groups);
  BOOST_TEST(m.config().num_heads == 4);
  BOOST_TEST(m.config().head_dim == 2);
  BOOST_TEST(m.config().state_size == 3);
  BOOST_TEST(m.config().d_mlp == 2);
  BOOST_TEST(m.config().norm_group_size == 4);
  const double err = mamba2_error(m, "mamba2_groups");
  BOOST_TEST_MESSAGE("mamba2_groups: max relative error " << err);
  BOOST_TEST(err < 1e-10);
  BOOST_TEST(mamba2_error(io::load_mamba2_mixer<float>(params("mamba2_groups"), groups), "mamba2_groups") < 1e-5);
  // The options matter: without the groups (N = 6 of one group) or the time-step limit, another output.
  BOOST_TEST(mamba2_error(io::load_mamba2_mixer<double>(params("mamba2_groups"), {.prefix = mamba_prefix}), "mamba2_groups") > 1e-3);
  BOOST_TEST(mamba2_error(io::load_mamba2_mixer<double>(params("mamba2_groups"), {.prefix = mamba_prefix, .ngroups = 2}),
                          "mamba2_groups") > 1e-6);

  // D per channel (D_has_hdim), in_proj and out_proj biases, the norm over the whole width.
  const io::mamba2_mixer_options hdim{.prefix = mamba_prefix, .norm_group_size = 6};
  const auto h = io::load_mamba2_mixer<double>(params("mamba2_hdim"), hdim);
  BOOST_TEST(h.layer().skip.size() == 6u);
  const double err_h = mamba2_error(h, "mamba2_hdim");
  BOOST_TEST_MESSAGE("mamba2_hdim: max relative error " << err_h);
  BOOST_TEST(err_h < 1e-10);
  // (one group: state-spaces' default group d_ssm / ngroups is the whole width too; a smaller one differs)
  BOOST_TEST(mamba2_error(io::load_mamba2_mixer<double>(params("mamba2_hdim"), {.prefix = mamba_prefix}), "mamba2_hdim") < 1e-10);
  BOOST_TEST(mamba2_error(io::load_mamba2_mixer<double>(params("mamba2_hdim"), {.prefix = mamba_prefix, .norm_group_size = 2}),
                          "mamba2_hdim") > 1e-6);

  // The layer's SSD as an operator: with D and the gated norm folded, applied to its input u it
  // gives out_proj's SSM input y, and its materialized matrices give the same.
  for (const auto* mixer : {&m, &h}) {
    const auto run = mixer->bind(cast<double>(io_of(mixer == &m ? "mamba2_groups" : "mamba2_hdim").input).view());
    const auto& s = run.signals;
    const auto op = s.ssm(s6_fold{.skip = true, .gate = true});
    const index_t C = s.channels(), L = s.length();
    matrix<double> y(C, L);
    op.apply(s.u, y.view());
    double err_apply = 0, err_dense = 0, scale = 0;
    matrix<double> dense(L, L);
    for (index_t ch = 0; ch < C; ++ch) {
      op.materialize(ch, ch, dense.view());
      for (index_t i = 0; i < L; ++i) {
        double acc = 0;
        for (index_t j = 0; j < L; ++j) acc += dense(i, j) * s.u(ch, j);
        err_apply = std::max(err_apply, std::abs(y(ch, i) - s.y(ch, i)));
        err_dense = std::max(err_dense, std::abs(acc - s.y(ch, i)));
        scale = std::max(scale, std::abs(s.y(ch, i)));
      }
    }
    BOOST_TEST(err_apply / scale < 1e-12);
    BOOST_TEST(err_dense / scale < 1e-12);
  }
}

BOOST_AUTO_TEST_CASE(mamba2_mixer_refuses_unsupported_variants) {
  const auto file = params("mamba2_groups");
  const std::string where = "Mamba2 parameters '" + file.string() + "'";
  const io::mamba2_mixer_options o{.prefix = mamba_prefix, .ngroups = 2};
  auto with = [&](auto f) {
    auto x = o;
    f(x);
    return x;
  };
  check_error([&] { (void)io::load_mamba2_mixer<double>(file, with([](auto& x) { x.rmsnorm = false; })); },
              {where, "unsupported rmsnorm false"});
  check_error([&] { (void)io::load_mamba2_mixer<double>(file, with([](auto& x) { x.norm_before_gate = true; })); },
              {"unsupported norm_before_gate true"});
  check_error([&] { (void)io::load_mamba2_mixer<double>(file, with([](auto& x) { x.ngroups = 4; })); },
              {"unsupported ngroups 4", "does not divide ngroups·d_state = 6"});
  check_error([&] { (void)io::load_mamba2_mixer<double>(file, with([](auto& x) { x.ngroups = 3; })); },
              {"unsupported ngroups 3", "nheads = 4"});
  check_error([&] { (void)io::load_mamba2_mixer<double>(file, with([](auto& x) { x.dt_min = 0.1, x.dt_max = 0.05; })); },
              {"unsupported dt_limit"});
  check_error([&] { (void)io::load_mamba2_mixer<double>(file, with([](auto& x) { x.norm_group_size = 3; })); },
              {"unsupported norm_group_size 3", "d_ssm = 8"});
  const auto stored = io::tensor_map::copy_of(io::safetensors_file(file));
  auto changed = [&](auto f) {
    auto m = stored;
    f(m);
    return m;
  };
  check_error([&] { (void)io::load_mamba2_mixer<double>(changed([](auto& m) {
                      m.insert(mamba_prefix + "D", {3}, {1.0, 1.0, 1.0});
                    }), o); },
              {"tensor 'backbone.layers.0.mixer.D'", "(3,)", "(4,) (per head) or (8,) (D_has_hdim"});
  check_error([&] { (void)io::load_mamba2_mixer<double>(changed([](auto& m) {
                      m.insert(mamba_prefix + "in_proj.weight", {30, 3}, std::vector<double>(90, 0.1));
                    }), o); },
              {"tensor 'backbone.layers.0.mixer.in_proj.weight'", "(30, 3)", "expected (36, 3)"});
  check_error([&] { (void)io::load_mamba2_mixer<double>(changed([](auto& m) {
                      m.insert(mamba_prefix + "conv1d.bias", {5}, std::vector<double>(5, 0.1));
                    }), o); },
              {"tensor 'backbone.layers.0.mixer.conv1d.bias'", "(5,)", "expected (20,)"});
  check_error([&] { (void)io::load_mamba2_mixer<double>(changed([](auto& m) { m.erase(mamba_prefix + "dt_bias"); }), o); },
              {"missing tensor 'backbone.layers.0.mixer.dt_bias'"});
  check_error([&] { (void)io::load_mamba2_mixer<double>(changed([](auto& m) {
                      m.insert(mamba_prefix + "A_log", {4, 3}, std::vector<double>(12, 0.0));
                    }), o); },
              {"tensor 'backbone.layers.0.mixer.A_log'", "(4, 3)", "expected (nheads,)"});
  // A Mamba-1 layer's file names the other loader, and the other loader names this one.
  check_error([&] { (void)io::load_mamba2_mixer<double>(params("mamba_mixer"), {.prefix = mamba_prefix}); },
              {"Mamba2 parameters '", "x_proj.weight' is stored", "load_mamba_mixer"});
  check_error([&] { (void)io::load_mamba_mixer<double>(file, {.prefix = mamba_prefix}); },
              {"Mamba parameters '", "unsupported layer Mamba-2", "load_mamba2_mixer"});
  // The input's channels are d_model's.
  const auto m = io::load_mamba2_mixer<double>(file, o);
  matrix<double> u(2, 8);
  check_error([&] { (void)m.forward(u.view()); }, {"mixlens::io::mamba2_mixer::bind", "'u'", "d_model) = 3"});
}
