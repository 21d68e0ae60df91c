#include "sbgm/io/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

namespace sbgm::io {
namespace {

static_assert(sizeof(void*) == 8, "safetensors I/O assumes a 64-bit platform");

bool host_is_little_endian() {
  const uint16_t one = 1;
  unsigned char b = 0;
  std::memcpy(&b, &one, 1);
  return b == 1;
}

struct DtypeEntry {
  const char* name;
  torch::ScalarType type;
};

constexpr std::array<DtypeEntry, 10> kDtypes{{
    {"F64", torch::kDouble},
    {"F32", torch::kFloat},
    {"F16", torch::kHalf},
    {"BF16", torch::kBFloat16},
    {"I64", torch::kLong},
    {"I32", torch::kInt},
    {"I16", torch::kShort},
    {"I8", torch::kChar},
    {"U8", torch::kByte},
    {"BOOL", torch::kBool},
}};

// The largest header read; real headers are kilobytes.
constexpr uint64_t kMaxHeader = uint64_t{100} << 20;

void sync_and_rename(const std::string& tmp, const std::string& path) {
  int fd = ::open(tmp.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  TORCH_CHECK(
      !ec,
      "save_safetensors: cannot rename '",
      tmp,
      "' to '",
      path,
      "': ",
      ec.message());
  auto dir = std::filesystem::path(path).parent_path();
  fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

uint32_t crc32(const void* data, size_t size, uint32_t crc) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) {
        c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      }
      t[i] = c;
    }
    return t;
  }();
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) {
    crc = table[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
  }
  return ~crc;
}

std::string safetensors_dtype(torch::ScalarType dtype) {
  for (const auto& d : kDtypes) {
    if (d.type == dtype) {
      return d.name;
    }
  }
  TORCH_CHECK(false, "safetensors: dtype ", dtype, " is not supported");
}

const torch::Tensor& SafetensorsFile::at(const std::string& name) const {
  for (const auto& [n, t] : tensors) {
    if (n == name) {
      return t;
    }
  }
  TORCH_CHECK(false, "safetensors: no tensor named '", name, "'");
}

bool SafetensorsFile::contains(const std::string& name) const {
  for (const auto& entry : tensors) {
    if (entry.first == name) {
      return true;
    }
  }
  return false;
}

void save_safetensors(
    const std::string& path,
    const NamedTensors& tensors,
    const std::map<std::string, std::string>& metadata) {
  TORCH_CHECK(
      host_is_little_endian(),
      "save_safetensors: only little-endian hosts are supported");
  nlohmann::ordered_json header;
  if (!metadata.empty()) {
    header["__metadata__"] = metadata;
  }
  std::vector<torch::Tensor> data;
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    TORCH_CHECK(
        !name.empty() && name != "__metadata__",
        "save_safetensors: invalid tensor name '",
        name,
        "'");
    TORCH_CHECK(
        seen.insert(name).second,
        "save_safetensors: tensor name '",
        name,
        "' appears twice");
    TORCH_CHECK(
        tensor.defined(), "save_safetensors: tensor '", name, "' is undefined");
    auto t = tensor.detach().to(torch::kCPU).contiguous();
    const uint64_t bytes = t.numel() * t.element_size();
    header[name] = {
        {"dtype", safetensors_dtype(t.scalar_type())},
        {"shape", t.sizes().vec()},
        {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(std::move(t));
  }
  std::string json = header.empty() ? std::string("{}") : header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');
  const uint64_t n = json.size();
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) {
    len[i] = static_cast<unsigned char>((n >> (8 * i)) & 0xFFu);
  }
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    TORCH_CHECK(out, "save_safetensors: cannot open '", tmp, "' for writing");
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(json.data(), static_cast<std::streamsize>(json.size()));
    for (const auto& t : data) {
      out.write(
          static_cast<const char*>(t.data_ptr()),
          static_cast<std::streamsize>(t.numel() * t.element_size()));
    }
    out.flush();
    if (!out) {
      out.close();
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      TORCH_CHECK(
          false,
          "save_safetensors: writing '",
          tmp,
          "' failed; '",
          path,
          "' is unchanged");
    }
  }
  sync_and_rename(tmp, path);
}

SafetensorsFile load_safetensors(const std::string& path) {
  TORCH_CHECK(
      host_is_little_endian(),
      "load_safetensors: only little-endian hosts are supported");
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(path, ec);
  TORCH_CHECK(
      !ec, "load_safetensors: cannot read '", path, "': ", ec.message());
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in, "load_safetensors: cannot open '", path, "'");
  TORCH_CHECK(
      size >= 8,
      "load_safetensors: '",
      path,
      "' is truncated: ",
      size,
      " bytes, shorter than the 8-byte header length");
  unsigned char len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) {
    n = (n << 8) | len[i];
  }
  TORCH_CHECK(
      n <= size - 8,
      "load_safetensors: '",
      path,
      "': the header length ",
      n,
      " runs past the end of the file (",
      size,
      " bytes); the file is truncated or not a safetensors file");
  TORCH_CHECK(
      n <= kMaxHeader,
      "load_safetensors: '",
      path,
      "': a header of ",
      n,
      " bytes is larger than the ",
      kMaxHeader,
      " bytes allowed");
  std::string text(n, '\0');
  in.read(text.data(), static_cast<std::streamsize>(n));
  TORCH_CHECK(in, "load_safetensors: cannot read the header of '", path, "'");
  TORCH_CHECK(
      n >= 2 && text[0] == '{',
      "load_safetensors: '",
      path,
      "' is not a safetensors file (wrong magic: the header does not start "
      "with '{')");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    TORCH_CHECK(
        false,
        "load_safetensors: '",
        path,
        "': the header is not valid JSON (",
        e.what(),
        ")");
  }
  TORCH_CHECK(
      header.is_object(),
      "load_safetensors: '",
      path,
      "': the header is not a JSON object");
  const uint64_t data_size = size - 8 - n;
  SafetensorsFile file;
  struct Entry {
    std::string name;
    torch::ScalarType type;
    std::vector<int64_t> shape;
    uint64_t begin, end;
  };
  std::vector<Entry> entries;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      TORCH_CHECK(
          value.is_object(),
          "load_safetensors: '",
          path,
          "': __metadata__ is not an object");
      for (const auto& [k, v] : value.items()) {
        TORCH_CHECK(
            v.is_string(),
            "load_safetensors: '",
            path,
            "': metadata '",
            k,
            "' is not a string");
        file.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    const auto where = "load_safetensors: '" + path + "': tensor '" + name;
    TORCH_CHECK(
        value.is_object() && value.contains("dtype") &&
            value["dtype"].is_string() && value.contains("shape") &&
            value["shape"].is_array() && value.contains("data_offsets") &&
            value["data_offsets"].is_array() &&
            value["data_offsets"].size() == 2 &&
            value["data_offsets"][0].is_number_unsigned() &&
            value["data_offsets"][1].is_number_unsigned(),
        where,
        "' needs a dtype, a shape and two data_offsets");
    Entry e;
    e.name = name;
    const auto dtype = value["dtype"].get<std::string>();
    bool known = false;
    for (const auto& d : kDtypes) {
      if (dtype == d.name) {
        e.type = d.type;
        known = true;
      }
    }
    TORCH_CHECK(known, where, "' has unsupported dtype '", dtype, "'");
    // The element count, checked against overflow; its bytes must then
    // fit the data section, so every allocation is bounded by the file.
    uint64_t numel = 1;
    for (const auto& d : value["shape"]) {
      TORCH_CHECK(
          d.is_number_unsigned(),
          where,
          "' has a shape entry that is not a non-negative integer: ",
          d.dump());
      const auto dim = d.get<uint64_t>();
      TORCH_CHECK(
          dim <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) &&
              (dim == 0 || numel <= std::numeric_limits<uint64_t>::max() / dim),
          where,
          "' has a shape too large for the file: ",
          value["shape"].dump());
      numel *= dim;
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    e.begin = value["data_offsets"][0].get<uint64_t>();
    e.end = value["data_offsets"][1].get<uint64_t>();
    TORCH_CHECK(
        e.begin <= e.end,
        where,
        "' has data_offsets [",
        e.begin,
        ", ",
        e.end,
        ") that run backwards");
    TORCH_CHECK(
        e.end <= data_size,
        where,
        "' has bytes [",
        e.begin,
        ", ",
        e.end,
        ") that overrun the data section (",
        data_size,
        " bytes): the file is truncated or damaged");
    const uint64_t item = c10::elementSize(e.type);
    TORCH_CHECK(
        numel <= data_size / item && e.end - e.begin == numel * item,
        where,
        "' has ",
        e.end - e.begin,
        " bytes but its dtype ",
        dtype,
        " and shape ",
        value["shape"].dump(),
        " need ",
        numel * item);
    entries.push_back(std::move(e));
  }
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    return a.begin < b.begin;
  });
  for (size_t i = 1; i < entries.size(); ++i) {
    TORCH_CHECK(
        entries[i].begin >= entries[i - 1].end,
        "load_safetensors: '",
        path,
        "': tensors '",
        entries[i - 1].name,
        "' and '",
        entries[i].name,
        "' overlap");
  }
  // Every size is now bounded by the file's: read the data section.
  std::vector<char> data(data_size);
  in.read(data.data(), static_cast<std::streamsize>(data_size));
  TORCH_CHECK(
      in || data_size == 0,
      "load_safetensors: cannot read the data section of '",
      path,
      "'");
  file.data_crc32 = crc32(data.data(), data.size());
  for (const auto& e : entries) {
    auto t = torch::empty(e.shape, torch::TensorOptions().dtype(e.type));
    if (e.end > e.begin) {
      std::memcpy(t.data_ptr(), data.data() + e.begin, e.end - e.begin);
    }
    file.tensors.emplace_back(e.name, std::move(t));
  }
  return file;
}

}  // namespace sbgm::io
