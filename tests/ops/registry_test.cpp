// The registry (mixlens/ops/registry.hpp) is the one list of operators: every
// entry binds, passes the shared oracle on the host, satisfies the concept on
// both sides (rebasable views), and appears in README.md's operator table with
// the data-control class its traits claim.
#define BOOST_TEST_MODULE registry
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include "common/oracles.hpp"
#include "mixlens/mixlens.hpp"

using namespace mixlens;

namespace {

const std::filesystem::path source_dir = std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();

std::string claimed(data_control c) {
  switch (c) {
    case data_control::none: return "none";
    case data_control::diagonal: return "diagonal";
    case data_control::non_diagonal: return "non-diagonal";
  }
  return "?";
}

// README rows: header (`ops/<key>.hpp`) → data-control column.
std::map<std::string, std::string> readme_table() {
  std::ifstream f(source_dir / "README.md");
  BOOST_REQUIRE_MESSAGE(f, "README.md not found next to tests/");
  std::map<std::string, std::string> rows;
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("| ", 0) != 0) continue;
    const auto h = line.find("`ops/");
    if (h == std::string::npos) continue;
    const auto end = line.find('`', h + 1);
    std::vector<std::string> cells;
    std::size_t p = 1;
    while (p < line.size()) {
      const auto q = line.find('|', p);
      if (q == std::string::npos) break;
      cells.push_back(line.substr(p, q - p));
      p = q + 1;
    }
    BOOST_REQUIRE_GE(cells.size(), 4u);
    std::string control = cells[3];
    control.erase(0, control.find_first_not_of(' '));
    rows[line.substr(h + 1, end - h - 1)] = control;
  }
  return rows;
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_entry_passes_the_oracle) {
  std::set<std::string> keys;
  const operator_options options{.channels = 4, .state = 8, .heads = 2, .max_length = 97, .seed = 1};
  for_each_operator<double>([&](auto entry) {
    using E = decltype(entry);
    BOOST_TEST(keys.insert(std::string(E::key)).second, "duplicate key " << E::key);
    using V = std::remove_cvref_t<decltype(view_of(std::declval<registry_operator_t<E, double>>()))>;
    static_assert(linear_operator<V>, "every registry operator satisfies the concept");
    static_assert(rebasable<V>, "every registry operator lists its data for the device");
    const auto mixer = E::init(options);
    for (index_t L : {1, 7, 97}) {
      const auto x = testing::random_matrix<double>(options.channels, L, 7 + static_cast<std::uint64_t>(L));
      BOOST_TEST_CONTEXT(E::key) { testing::check_linear_operator(E::bind(mixer, x.view()), x.view(), 1e-11); }
    }
  });
  BOOST_TEST(keys.size() == registry::count);
  BOOST_TEST(registry::count == 15u);
}

BOOST_AUTO_TEST_CASE(readme_lists_every_entry_with_its_class) {
  const auto rows = readme_table();
  BOOST_TEST(rows.size() == registry::count, "README operator table rows: " << rows.size());
  for_each_operator<double>([&](auto entry) {
    using E = decltype(entry);
    using V = std::remove_cvref_t<decltype(view_of(std::declval<registry_operator_t<E, double>>()))>;
    const std::string header = "ops/" + std::string(E::key) + ".hpp";
    const auto it = rows.find(header);
    BOOST_TEST_REQUIRE((it != rows.end()), "README lacks a row for " << header);
    const std::string want = claimed(operator_traits<V>::control);
    BOOST_TEST(it->second.rfind(want, 0) == 0,
               header << ": README says '" << it->second << "', traits say '" << want << "'");
    BOOST_TEST(std::filesystem::exists(source_dir / "include" / "mixlens" / header), header << " missing");
  });
}
