// Token strings for the tools' outputs: the tokenizer.json of a model folder
// (or --tokenizer FILE), tokens.json, and the labels the figures draw.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mixlens/error.hpp"
#include "mixlens/io/tokenizer_vocab.hpp"

namespace mixlens::tools {

// --tokenizer FILE when given (it must be a readable tokenizer.json), else the
// model folder's tokenizer.json when there is one, else none.
inline std::optional<io::token_vocabulary> find_tokenizer(const std::filesystem::path& model,
                                                          const std::filesystem::path& tokenizer) {
  if (!tokenizer.empty()) {
    try {
      return io::read_tokenizer_vocab(tokenizer);
    } catch (const mixlens::error& e) {
      throw mixlens::error(std::string("--tokenizer: ") + e.what());
    }
  }
  const auto file = model / "tokenizer.json";
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) return std::nullopt;
  return io::read_tokenizer_vocab(file);
}

// The display string of every token; an id the tokenizer has no entry for (a
// vocabulary padded beyond the tokenizer's) is shown as "<id N>", with a warning.
inline std::vector<std::string> token_texts(const io::token_vocabulary& vocab, std::span<const index_t> ids,
                                            std::string_view tool) {
  std::vector<std::string> out;
  out.reserve(ids.size());
  std::size_t missing = 0;
  for (const index_t id : ids) {
    if (vocab.contains(id)) out.push_back(vocab.text(id));
    else out.push_back("<id " + std::to_string(id) + ">"), ++missing;
  }
  if (missing > 0)
    std::cerr << tool << ": warning: " << missing << " token id(s) have no entry in tokenizer file '" << vocab.source
              << "' (ids in [0, " << vocab.size() << ")); they are shown as <id N>\n";
  return out;
}

// tokens.json: one object per position, [{"id": 72, "text": "H"}, ...].
inline void write_tokens_json(const std::filesystem::path& file, std::span<const index_t> ids,
                              std::span<const std::string> texts) {
  std::ofstream out(file, std::ios::binary);
  out << "[";
  for (std::size_t i = 0; i < ids.size(); ++i)
    out << (i ? ",\n " : "\n ") << "{\"id\": " << ids[i] << ", \"text\": " << nlohmann::json(texts[i]).dump() << "}";
  out << (ids.empty() ? "]\n" : "\n]\n");
  if (!out.flush()) throw mixlens::error("cannot write '" + file.string() + "'");
}

// The answer to --text / --texts: the C++ tools read token ids; text goes
// through the Python entry, which tokenizes with the `tokenizers` package.
inline std::string text_input_refusal(std::string_view option) {
  return std::string(option) +
         ": mixlens-attn takes token ids, not text (tokenizing needs the tokenizer's own code, the Python "
         "`tokenizers` package, and Debian packages no C++ tokenizer library). Run python -m mixlens --model DIR " +
         std::string(option) + (option == "--texts" ? " FILE" : " \"...\"") +
         " --out DIR (the same outputs, with tokens.json), or give the ids with --tokens or --tokens-file";
}

// A token string as an axis label: whitespace and control characters made
// visible (space ␣, newline ↵, tab →, others \xNN), an empty string as ∅.
inline std::string tick_label(std::string_view text) {
  std::string out;
  for (const char ch : text) {
    const auto b = static_cast<unsigned char>(ch);
    if (ch == ' ') out += "\u2423";
    else if (ch == '\n') out += "\u21b5";
    else if (ch == '\t') out += "\u2192";
    else if (b < 0x20 || b == 0x7f) {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\x", out += hex[b >> 4], out += hex[b & 15];
    } else out += ch;
  }
  return out.empty() ? "\u2205" : out;
}

}  // namespace mixlens::tools
