// The JSON reader of file headers (mixlens/io/json.hpp).
#include <string_view>

#include "fuzz_common.hpp"
#include "mixlens/io/json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return mixlens::fuzz::expect_only_mixlens_errors([&] {
    const auto v = mixlens::io::parse_json(std::string_view(reinterpret_cast<const char*>(data), size));
    (void)v.find("dtype");
  });
}
