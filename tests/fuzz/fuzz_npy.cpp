// .npy reader: header, shape, sizes against the file, and the conversions.
#include "fuzz_common.hpp"
#include "mixlens/io/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto file = mixlens::fuzz::write_scratch(data, size, ".npy");
  return mixlens::fuzz::expect_only_mixlens_errors([&] {
    const auto a = mixlens::io::read_npy(file);
    (void)a.as<double>();
    (void)a.as<std::int64_t>();
  });
}
