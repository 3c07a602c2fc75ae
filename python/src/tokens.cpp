// Token strings from a tokenizer.json (mixlens/io/tokenizer_vocab.hpp): the same
// decoding mixlens-attn writes into tokens.json.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mixlens/io/tokenizer_vocab.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace mixlens::python {

void bind_tokens(nb::module_& m) {
  m.def(
      "token_strings",
      [](const std::string& file, const std::vector<std::int64_t>& ids) {
        const io::token_vocabulary vocab = io::read_tokenizer_vocab(file);
        std::vector<std::string> out;
        out.reserve(ids.size());
        for (const std::int64_t id : ids)
          out.push_back(vocab.contains(id) ? vocab.text(id) : "<id " + std::to_string(id) + ">");
        return out;
      },
      "file"_a, "ids"_a,
      "The display string of each token id from a Hugging Face tokenizer.json (model.vocab and\n"
      "added_tokens): ByteLevel vocabularies map back to bytes, Metaspace's '▁' becomes a space, added\n"
      "tokens are their content; bytes that are not UTF-8 become U+FFFD. An id without an entry is\n"
      "'<id N>'. The strings mixlens-attn writes into tokens.json; a malformed file raises\n"
      "mixlens.Error naming the file and the field.");
}

}  // namespace mixlens::python
