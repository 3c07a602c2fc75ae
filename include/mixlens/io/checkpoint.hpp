// The weights of a checkpoint folder as transformers' save_pretrained writes
// them: one model.safetensors, or shards listed by model.safetensors.index.json
// (its "weight_map": tensor name → shard file). Tensors are looked up by name
// across the shards; every shard is memory-mapped and validated when opened.
// PyTorch pickle checkpoints (pytorch_model.bin, *.pt, *.pth) are refused with
// the command that converts them: unpickling runs arbitrary code.
#pragma once

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "mixlens/detail/file.hpp"
#include "mixlens/error.hpp"
#include "mixlens/io/json.hpp"
#include "mixlens/io/safetensors.hpp"

namespace mixlens::io {

class safetensors_checkpoint {
 public:
  // One safetensors file.
  explicit safetensors_checkpoint(const std::filesystem::path& file) : path_(file) {
    files_.push_back(std::make_unique<safetensors_file>(file));
    for (const auto& t : files_.back()->tensors()) owner_[t.name] = 0, names_.push_back(t.name);
  }

  // The weights of `dir`: model.safetensors, else the shards of
  // model.safetensors.index.json. `what` names the model in messages.
  [[nodiscard]] static safetensors_checkpoint open_folder(const std::filesystem::path& dir,
                                                          std::string_view what = "model") {
    namespace fs = std::filesystem;
    const std::string folder = std::string(what) + " folder '" + dir.string() + "'";
    if (fs::exists(dir / "model.safetensors")) return safetensors_checkpoint(dir / "model.safetensors");
    if (fs::exists(dir / "model.safetensors.index.json")) return safetensors_checkpoint(dir / "model.safetensors.index.json", 0);
    for (const char* pickle : {"pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth",
                               "consolidated.00.pth"})
      if (fs::exists(dir / pickle))
        throw error(folder + " holds a PyTorch pickle checkpoint (" + pickle +
                    "), which mixlens does not read (loading a pickle runs code from the file). Convert it once to "
                    "safetensors: for a Hugging Face folder\n  python3 -c \"from transformers import "
                    "AutoModelForCausalLM as M; M.from_pretrained('" + dir.string() +
                    "').save_pretrained('" + dir.string() +
                    "-safetensors', safe_serialization=True)\"\nand copy config.json along; for a state-spaces "
                    "folder (config.json with d_model)\n  python3 -c \"import torch; from safetensors.torch import "
                    "save_file; sd = torch.load('" + (dir / pickle).string() +
                    "', map_location='cpu'); save_file({k: v.contiguous().clone() for k, v in sd.items()}, '" +
                    (dir / "model.safetensors").string() + "')\"");
    throw error(folder + " has no model.safetensors (nor model.safetensors.index.json for a sharded checkpoint)");
  }

  // The file (or index) the checkpoint was opened from, for messages.
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] std::size_t file_count() const { return files_.size(); }

  [[nodiscard]] const safetensors_tensor* find(std::string_view name) const {
    const auto it = owner_.find(std::string(name));
    return it == owner_.end() ? nullptr : files_[it->second]->find(name);
  }
  [[nodiscard]] bool contains(std::string_view name) const { return find(name) != nullptr; }

  // Every tensor's name, in the order of the file's header (or of the index).
  [[nodiscard]] const std::vector<std::string>& tensor_names() const { return names_; }

  // Converts tensor t (from find) to T in `out`, reading it from its shard.
  template <class T>
  void read(const safetensors_tensor& t, T* out) const {
    files_[owner_.at(t.name)]->read(t, out);
  }

 private:
  // From model.safetensors.index.json.
  safetensors_checkpoint(const std::filesystem::path& index, int) : path_(index) {
    (void)mixlens::detail::regular_file_size(index, "checkpoint index");  // a directory or a FIFO is no JSON
    std::ifstream in(index, std::ios::binary);
    if (!in) throw error("cannot open checkpoint index '" + index.string() + "'");
    std::ostringstream text;
    text << in.rdbuf();
    const auto fail = [&](std::size_t at, const std::string& what) {
      throw error("checkpoint index '" + index.string() + "' at byte " + std::to_string(at) + ": " + what);
    };
    json_value root;
    try {
      root = parse_json(text.str());
    } catch (const json_error& e) {
      fail(e.offset(), "malformed JSON: " + e.reason());
    }
    const json_value* map = root.is(json_value::kind::object) ? root.find("weight_map") : nullptr;
    if (!map || !map->is(json_value::kind::object)) fail(root.offset, "expected an object with a \"weight_map\" object");
    std::map<std::string, std::size_t> shard_of;  // shard file name → index into files_
    for (const json_member& entry : map->members) {
      const std::string& name = entry.key;
      const json_value& file = entry.value;
      if (!file.is(json_value::kind::string)) fail(file.offset, "weight_map['" + name + "'] is not a file name");
      const std::filesystem::path shard = index.parent_path() / file.string;
      if (file.string.empty() || file.string.find('/') != std::string::npos || file.string.find('\\') != std::string::npos)
        fail(file.offset, "weight_map['" + name + "'] = '" + file.string + "' is not a file name in the folder");
      auto [it, added] = shard_of.try_emplace(file.string, files_.size());
      if (added) {
        if (!std::filesystem::exists(shard))
          fail(file.offset, "shard '" + file.string + "' (of tensor '" + name + "') does not exist");
        files_.push_back(std::make_unique<safetensors_file>(shard));
      }
      if (!files_[it->second]->contains(name))
        fail(file.offset, "tensor '" + name + "' is not in its shard '" + file.string + "'");
      owner_[name] = it->second;
      names_.push_back(name);
    }
  }

  std::filesystem::path path_;
  std::vector<std::unique_ptr<safetensors_file>> files_;
  std::map<std::string, std::size_t> owner_;  // tensor name → index into files_
  std::vector<std::string> names_;
};

}  // namespace mixlens::io
