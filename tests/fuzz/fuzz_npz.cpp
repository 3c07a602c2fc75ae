// .npz reader: libzip's archive parsing, the member checks and the .npy parser
// over inflated bytes. Members are capped at 16 MiB so that a declared size does
// not spend the fuzzer's memory limit.
#include "fuzz_common.hpp"
#include "mixlens/io/npz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto file = mixlens::fuzz::write_scratch(data, size, ".npz");
  return mixlens::fuzz::expect_only_mixlens_errors(
      [&] { (void)mixlens::io::read_npz(file, {.max_member_bytes = std::uint64_t(1) << 24}); });
}
