#define BOOST_TEST_MODULE tokenizer_vocab
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <string>

#include "common/oracles.hpp"
#include "mixlens/io/tokenizer_vocab.hpp"

// The decoder of tokenizer.json's vocabulary (mixlens/io/tokenizer_vocab.hpp):
// the demo's byte-level file (tests/data/make_demo_tokenizer.py), hand-written
// Metaspace, ByteFallback and Unigram files, ill-formed UTF-8, and the errors.

using namespace mixlens;
using mixlens::testing::check_error;

namespace {
const std::filesystem::path demo = std::filesystem::path(MIXLENS_TEST_DATA_DIR) / "mamba_demo" / "tokenizer.json";
}

BOOST_AUTO_TEST_CASE(demo_vocabulary_is_the_256_bytes) {
  const auto v = io::read_tokenizer_vocab(demo);
  BOOST_TEST(v.size() == 256);
  BOOST_TEST(io::to_string(v.decoding) == "ByteLevel");
  for (index_t b = 0; b < 256; ++b) {
    BOOST_TEST(v.contains(b));
    const std::string want = b < 0x80 ? std::string(1, static_cast<char>(b)) : std::string("\xef\xbf\xbd");
    BOOST_TEST(v.text(b) == want, "byte " << b);
  }
  check_error([&] { (void)v.text(256); }, {"tokenizer.json': token id 256 is not in its vocabulary (ids in [0, 256))"});
}

BOOST_AUTO_TEST_CASE(byte_level_entries_of_several_bytes) {
  // "Ġwor" (space + "wor"), "Ã©" (é's two bytes), "âĤ" (the first two bytes of €).
  const auto v = io::parse_tokenizer_vocab(
      R"({"model": {"type": "BPE", "vocab": {"\u0120wor": 0, "\u00c3\u00a9": 1, "\u00e2\u0124": 2}},
          "decoder": {"type": "ByteLevel"}})",
      "t.json");
  BOOST_TEST(v.text(0) == " wor");
  BOOST_TEST(v.text(1) == "\xc3\xa9");
  BOOST_TEST(v.text(2) == "\xef\xbf\xbd");  // one U+FFFD for the truncated sequence
}

BOOST_AUTO_TEST_CASE(metaspace_byte_fallback_and_added_tokens) {
  // Llama's decoder: Replace "▁" → " ", ByteFallback, Fuse, Strip.
  const auto v = io::parse_tokenizer_vocab(
      R"({"added_tokens": [{"id": 0, "content": "<s>"}, {"id": 5, "content": "<extra>"}],
          "model": {"type": "BPE", "byte_fallback": true,
                    "vocab": {"<s>": 0, "\u2581the": 1, "<0x0A>": 2, "<0xE2>": 3, "\u00e9": 4}},
          "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}})",
      "llama.json");
  BOOST_TEST(io::to_string(v.decoding) == "Metaspace");
  BOOST_TEST(v.text(0) == "<s>");
  BOOST_TEST(v.text(1) == " the");
  BOOST_TEST(v.text(2) == "\n");
  BOOST_TEST(v.text(3) == "\xef\xbf\xbd");
  BOOST_TEST(v.text(4) == "\xc3\xa9");  // not byte-level: the character itself
  BOOST_TEST(v.text(5) == "<extra>");
  BOOST_TEST(v.size() == 6);
}

BOOST_AUTO_TEST_CASE(unigram_with_a_metaspace_pre_tokenizer) {
  const auto v = io::parse_tokenizer_vocab(
      R"({"model": {"type": "Unigram", "vocab": [["<unk>", 0.0], ["\u2581a", -1.0], ["b", -2.0]]},
          "decoder": null, "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581"}})",
      "u.json");
  BOOST_TEST(v.text(1) == " a");
  BOOST_TEST(v.text(2) == "b");
}

BOOST_AUTO_TEST_CASE(lossy_utf8_replaces_maximal_ill_formed_parts) {
  BOOST_TEST(io::utf8_lossy("a\x80" "b") == "a\xef\xbf\xbd" "b");
  BOOST_TEST(io::utf8_lossy("\xe2\x82" "A") == "\xef\xbf\xbd" "A");          // truncated 3-byte sequence: one
  BOOST_TEST(io::utf8_lossy("\xe2\x82\xac") == "\xe2\x82\xac");              // €
  BOOST_TEST(io::utf8_lossy("\xc0\xaf") == "\xef\xbf\xbd\xef\xbf\xbd");      // overlong: each byte
  BOOST_TEST(io::utf8_lossy("\xed\xa0\x80") == "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // a surrogate
  BOOST_TEST(io::utf8_lossy("\xf0\x9f\x98") == "\xef\xbf\xbd");
}

BOOST_AUTO_TEST_CASE(malformed_files_name_the_file_and_the_field) {
  check_error([] { (void)io::parse_tokenizer_vocab("{\"model\": ", "t.json"); }, {"tokenizer file 't.json' at byte", "malformed JSON"});
  check_error([] { (void)io::parse_tokenizer_vocab("[1]", "t.json"); }, {"expected a JSON object at the top level, got array"});
  check_error([] { (void)io::parse_tokenizer_vocab("{}", "t.json"); }, {"field 'model': missing"});
  check_error([] { (void)io::parse_tokenizer_vocab(R"({"model": {}})", "t.json"); }, {"field 'model.vocab': missing"});
  check_error([] { (void)io::parse_tokenizer_vocab(R"({"model": {"vocab": "x"}})", "t.json"); },
              {"field 'model.vocab': expected an object of token → id", "got string"});
  check_error([] { (void)io::parse_tokenizer_vocab(R"({"model": {"vocab": {"a": -1}}})", "t.json"); },
              {"field 'model.vocab[\"a\"]': expected an id in [0, 16777216), got -1"});
  check_error([] { (void)io::parse_tokenizer_vocab(R"({"model": {"vocab": {"a": 1, "b": 1}}})", "t.json"); },
              {"field 'model.vocab': id 1 is given to both \"a\" and \"b\""});
  check_error([] { (void)io::parse_tokenizer_vocab(R"({"model": {"vocab": [["a", 0], 3]}})", "t.json"); },
              {"field 'model.vocab[1]': expected [token, score], got 3"});
  check_error([] { (void)io::parse_tokenizer_vocab(R"({"model": {"vocab": {}}, "added_tokens": {}})", "t.json"); },
              {"field 'added_tokens': expected an array, got object"});
  check_error([] { (void)io::parse_tokenizer_vocab(R"({"model": {"vocab": {}}, "added_tokens": [{"content": "x"}]})", "t.json"); },
              {"field 'added_tokens[0].id': missing"});
  check_error([] { (void)io::read_tokenizer_vocab("/nonexistent/tokenizer.json"); },
              {"cannot open tokenizer file '/nonexistent/tokenizer.json': no such file"});
  check_error([] { (void)io::read_tokenizer_vocab(MIXLENS_TEST_DATA_DIR); }, {"is not a regular file (it is a directory)"});
}
