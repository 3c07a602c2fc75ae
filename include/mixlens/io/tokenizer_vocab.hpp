// Token strings from a Hugging Face tokenizer.json: the vocabulary (model.vocab,
// and added_tokens over it) and the display string of one token id. Decoding
// only: turning text into ids needs the tokenizer's normalizer, pre-tokenizer
// and model (BPE merges, Unigram's lattice), which the Python side takes from
// the `tokenizers` package (python -m mixlens --text).
//
//   const auto vocab = io::read_tokenizer_vocab("model/tokenizer.json");
//   vocab.text(72);   // "H" for a byte-level vocabulary
//
// The display string of a vocabulary entry follows the tokenizer's decoder (or,
// without one, its pre-tokenizer): ByteLevel maps each character back to its
// byte through GPT-2's byte-to-character table; Metaspace (or a Sequence
// decoder replacing "▁") turns '▁' into a space; ByteFallback entries "<0xHH>"
// are the byte HH; any other vocabulary keeps its string. Added tokens are their
// content as written. Bytes that are not UTF-8 (a piece of a multi-byte
// character) become U+FFFD, one per maximal invalid subsequence, so the result
// is always valid UTF-8. Needs nlohmann-json.
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "mixlens/config.hpp"
#include "mixlens/detail/file.hpp"
#include "mixlens/error.hpp"

namespace mixlens::io {

enum class token_decoding {
  plain,       // the vocabulary string as it is
  byte_level,  // GPT-2's byte-to-character table reversed
  metaspace,   // '▁' (U+2581) → ' '
};

inline std::string_view to_string(token_decoding d) {
  return d == token_decoding::byte_level ? "ByteLevel" : d == token_decoding::metaspace ? "Metaspace" : "plain";
}

namespace detail {

// GPT-2's table, reversed: the byte a character stands for, or -1. Printable
// Latin-1 (33–126, 161–172, 174–255) stand for themselves; the other 68 bytes,
// in order, are U+0100, U+0101, ...
inline int byte_of_char(char32_t c) {
  static const std::array<int, 324> table = [] {
    std::array<int, 324> t{};
    t.fill(-1);
    int shifted = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      t[static_cast<std::size_t>(printable ? b : 256 + shifted++)] = b;
    }
    return t;
  }();
  return c < table.size() ? table[c] : -1;
}

inline void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) out += static_cast<char>(c);
  else if (c < 0x800) out += static_cast<char>(0xc0 | (c >> 6)), out += static_cast<char>(0x80 | (c & 0x3f));
  else if (c < 0x10000)
    out += static_cast<char>(0xe0 | (c >> 12)), out += static_cast<char>(0x80 | ((c >> 6) & 0x3f)),
        out += static_cast<char>(0x80 | (c & 0x3f));
  else
    out += static_cast<char>(0xf0 | (c >> 18)), out += static_cast<char>(0x80 | ((c >> 12) & 0x3f)),
        out += static_cast<char>(0x80 | ((c >> 6) & 0x3f)), out += static_cast<char>(0x80 | (c & 0x3f));
}

// Code points of valid UTF-8 (nlohmann-json checked the file's strings).
inline std::vector<char32_t> code_points(std::string_view s) {
  std::vector<char32_t> out;
  for (std::size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    const std::size_t n = b < 0x80 ? 1 : b < 0xe0 ? 2 : b < 0xf0 ? 3 : 4;
    char32_t c = n == 1 ? b : n == 2 ? (b & 0x1f) : n == 3 ? (b & 0x0f) : (b & 0x07);
    for (std::size_t k = 1; k < n && i + k < s.size(); ++k) c = (c << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
    out.push_back(c);
    i += n;
  }
  return out;
}

}  // namespace detail

// Bytes as UTF-8: each maximal subpart of an ill-formed sequence (a lead byte
// and the continuation bytes that may follow it) becomes one U+FFFD.
inline std::string utf8_lossy(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      out += static_cast<char>(b), ++i;
      continue;
    }
    // The sequence length of a lead byte and the range of its second byte.
    std::size_t n = 0;
    unsigned char lo = 0x80, hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) n = 2;
    else if (b >= 0xe0 && b <= 0xef) n = 3, lo = b == 0xe0 ? 0xa0 : 0x80, hi = b == 0xed ? 0x9f : 0xbf;
    else if (b >= 0xf0 && b <= 0xf4) n = 4, lo = b == 0xf0 ? 0x90 : 0x80, hi = b == 0xf4 ? 0x8f : 0xbf;
    std::size_t k = 1;  // bytes of the sequence that are well formed so far
    while (n > 0 && k < n && i + k < s.size()) {
      const auto t = static_cast<unsigned char>(s[i + k]);
      if (t < (k == 1 ? lo : 0x80) || t > (k == 1 ? hi : 0xbf)) break;
      ++k;
    }
    if (n > 0 && k == n) out.append(s.substr(i, n));
    else out += "\xef\xbf\xbd";
    i += k;
  }
  return out;
}

// A tokenizer.json's vocabulary: id → string, and how its strings decode.
struct token_vocabulary {
  std::string source;  // the file, for messages
  token_decoding decoding = token_decoding::plain;
  bool byte_fallback = false;                   // "<0xHH>" entries are bytes
  std::vector<std::optional<std::string>> entries;  // by id: the vocabulary (or added token) string
  std::vector<bool> added;                          // by id: an added token (its content is shown as is)

  // One more than the largest id.
  [[nodiscard]] index_t size() const { return static_cast<index_t>(entries.size()); }
  [[nodiscard]] bool contains(index_t id) const {
    return id >= 0 && id < size() && entries[static_cast<std::size_t>(id)].has_value();
  }

  // The display string of token `id` (valid UTF-8).
  [[nodiscard]] std::string text(index_t id) const {
    if (!contains(id))
      throw error("tokenizer file '" + source + "': token id " + std::to_string(id) + " is not in its vocabulary (" +
                  (size() == 0 ? std::string("which is empty") : "ids in [0, " + std::to_string(size()) + ")") +
                  (id >= 0 && id < size() ? ", this one unassigned" : "") + ")");
    const std::string& s = *entries[static_cast<std::size_t>(id)];
    if (added[static_cast<std::size_t>(id)]) return s;
    if (byte_fallback && s.size() == 6 && s.starts_with("<0x") && s.back() == '>') {
      const auto hex = [](char ch) {
        return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
      };
      const int h = hex(s[3]), l = hex(s[4]);
      if (h >= 0 && l >= 0) return utf8_lossy(std::string(1, static_cast<char>(h * 16 + l)));
    }
    std::string out;
    for (const char32_t c : detail::code_points(s)) {
      if (decoding == token_decoding::byte_level) {
        const int byte = detail::byte_of_char(c);
        if (byte >= 0) {
          out += static_cast<char>(byte);
          continue;
        }
      } else if (decoding == token_decoding::metaspace && c == 0x2581) {
        out += ' ';
        continue;
      }
      detail::append_utf8(out, c);
    }
    return utf8_lossy(out);
  }
};

namespace detail {

[[noreturn]] inline void tokenizer_fail(std::string_view source, std::string_view field, std::string_view what) {
  throw error("tokenizer file '" + std::string(source) + "': field '" + std::string(field) + "': " + std::string(what));
}

inline std::string json_type(const nlohmann::json& j) { return j.type_name(); }

// The decoding a decoder or pre-tokenizer object names (a Sequence: any of its
// steps), and whether a ByteFallback step is there.
inline void find_decoding(const nlohmann::json& j, token_decoding& d, bool& fallback, int depth = 0) {
  if (!j.is_object() || depth > 8) return;
  const auto type = j.find("type");
  if (type == j.end() || !type->is_string()) return;
  const std::string t = *type;
  if (t == "ByteLevel") d = token_decoding::byte_level;
  else if (t == "Metaspace" && d == token_decoding::plain) d = token_decoding::metaspace;
  else if (t == "ByteFallback") fallback = true;
  else if (t == "Replace" && d == token_decoding::plain) {  // Llama's decoder: Replace "▁" → " "
    const auto p = j.find("pattern");
    if (p != j.end() && p->is_object() && p->contains("String") && (*p)["String"] == "\u2581")
      d = token_decoding::metaspace;
  } else if (t == "Sequence")
    for (const char* key : {"decoders", "pretokenizers"})
      if (const auto steps = j.find(key); steps != j.end() && steps->is_array())
        for (const auto& step : *steps) find_decoding(step, d, fallback, depth + 1);
}

}  // namespace detail

// Ids above this are refused (no tokenizer has 16 M tokens; a typo must not
// allocate gigabytes).
inline constexpr index_t max_token_id = index_t{1} << 24;

// The vocabulary of `text`, a tokenizer.json's contents (`source` names it in errors).
inline token_vocabulary parse_tokenizer_vocab(std::string_view text, std::string_view source) {
  using detail::tokenizer_fail;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::parse_error& e) {
    std::ostringstream os;
    os << "tokenizer file '" << source << "' at byte " << e.byte << ": malformed JSON (" << e.what() << ")";
    throw error(os.str());
  } catch (const nlohmann::json::exception& e) {
    throw error("tokenizer file '" + std::string(source) + "': malformed JSON (" + e.what() + ")");
  }
  if (!j.is_object())
    throw error("tokenizer file '" + std::string(source) + "': expected a JSON object at the top level, got " +
                detail::json_type(j));
  token_vocabulary v;
  v.source = source;
  const auto model = j.find("model");
  if (model == j.end()) tokenizer_fail(source, "model", "missing (a Hugging Face tokenizer.json has model.vocab)");
  if (!model->is_object()) tokenizer_fail(source, "model", "expected an object, got " + detail::json_type(*model));
  const auto vocab = model->find("vocab");
  if (vocab == model->end()) tokenizer_fail(source, "model.vocab", "missing");

  std::vector<std::pair<index_t, std::string>> items;  // (id, string)
  const auto id_of = [&](const nlohmann::json& id, const std::string& field) -> index_t {
    if (!id.is_number_integer())
      tokenizer_fail(source, field, "expected a whole number id, got " + detail::json_type(id) + " " + id.dump());
    const auto value = id.get<std::int64_t>();
    if (value < 0 || value >= max_token_id)
      tokenizer_fail(source, field, "expected an id in [0, " + std::to_string(max_token_id) + "), got " + std::to_string(value));
    return static_cast<index_t>(value);
  };
  if (vocab->is_object()) {  // BPE, WordPiece, WordLevel: token → id
    for (auto it = vocab->begin(); it != vocab->end(); ++it)
      items.emplace_back(id_of(it.value(), "model.vocab[\"" + it.key() + "\"]"), it.key());
  } else if (vocab->is_array()) {  // Unigram: [token, score] by id
    for (std::size_t i = 0; i < vocab->size(); ++i) {
      const auto& e = (*vocab)[i];
      if (!e.is_array() || e.empty() || !e[0].is_string())
        tokenizer_fail(source, "model.vocab[" + std::to_string(i) + "]", "expected [token, score], got " + e.dump());
      if (static_cast<index_t>(i) >= max_token_id)
        tokenizer_fail(source, "model.vocab", "more than " + std::to_string(max_token_id) + " entries");
      items.emplace_back(static_cast<index_t>(i), e[0].get<std::string>());
    }
  } else {
    tokenizer_fail(source, "model.vocab",
                   "expected an object of token → id (BPE, WordPiece, WordLevel) or an array of [token, score] "
                   "(Unigram), got " + detail::json_type(*vocab));
  }
  const auto grow = [&](index_t id) {
    if (id >= v.size()) v.entries.resize(static_cast<std::size_t>(id + 1)), v.added.resize(static_cast<std::size_t>(id + 1));
  };
  for (const auto& [id, s] : items) {
    grow(id);
    auto& e = v.entries[static_cast<std::size_t>(id)];
    if (e && *e != s)
      tokenizer_fail(source, "model.vocab", "id " + std::to_string(id) + " is given to both \"" + *e + "\" and \"" + s + "\"");
    e = s;
  }
  if (const auto added = j.find("added_tokens"); added != j.end() && !added->is_null()) {
    if (!added->is_array()) tokenizer_fail(source, "added_tokens", "expected an array, got " + detail::json_type(*added));
    for (std::size_t i = 0; i < added->size(); ++i) {
      const auto& a = (*added)[i];
      const std::string field = "added_tokens[" + std::to_string(i) + "]";
      if (!a.is_object()) tokenizer_fail(source, field, "expected an object {\"id\", \"content\"}, got " + detail::json_type(a));
      const auto id = a.find("id"), content = a.find("content");
      if (id == a.end()) tokenizer_fail(source, field + ".id", "missing");
      if (content == a.end() || !content->is_string())
        tokenizer_fail(source, field + ".content", content == a.end() ? "missing" : "expected a string, got " + detail::json_type(*content));
      const index_t k = id_of(*id, field + ".id");
      grow(k);
      v.entries[static_cast<std::size_t>(k)] = content->get<std::string>();
      v.added[static_cast<std::size_t>(k)] = true;
    }
  }
  if (const auto model_fallback = model->find("byte_fallback"); model_fallback != model->end() && model_fallback->is_boolean())
    v.byte_fallback = model_fallback->get<bool>();
  const auto decoder = j.find("decoder");
  if (decoder != j.end() && !decoder->is_null()) {
    if (!decoder->is_object()) tokenizer_fail(source, "decoder", "expected an object or null, got " + detail::json_type(*decoder));
    detail::find_decoding(*decoder, v.decoding, v.byte_fallback);
  } else if (const auto pre = j.find("pre_tokenizer"); pre != j.end() && pre->is_object()) {
    detail::find_decoding(*pre, v.decoding, v.byte_fallback);
  }
  return v;
}

// Reads a tokenizer.json file.
inline token_vocabulary read_tokenizer_vocab(const std::filesystem::path& file) {
  (void)mixlens::detail::regular_file_size(file, "tokenizer file");
  std::ifstream in(file, std::ios::binary);
  if (!in) throw error("cannot open tokenizer file '" + file.string() + "'");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_tokenizer_vocab(text.str(), file.string());
}

}  // namespace mixlens::io
