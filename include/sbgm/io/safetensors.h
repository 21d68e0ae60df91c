#pragma once

/// \file
/// safetensors files (https://github.com/huggingface/safetensors): an
/// 8-byte little-endian header length N, N bytes of JSON
///   {"__metadata__": {"key": "value", ...},
///    "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [b, e]}, ...}
/// then the data section, each tensor's bytes (C order, little-endian) at
/// [b, e) from its start. Written here in the order given, 8-byte aligned
/// (the header is padded with spaces), as Python's safetensors does.
///
/// Reading checks everything before it allocates: the header length
/// against the file's size, the JSON, every dtype, shape and offset range
/// against the data section, so a damaged or hostile file gets an error
/// that names the file and the problem, and no allocation larger than the
/// file itself.

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace sbgm::io {

/// Named tensors in file order.
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

/// A safetensors file's contents.
struct SafetensorsFile {
  /// Tensors in the order of their data offsets (CPU, contiguous).
  NamedTensors tensors;
  /// The "__metadata__" strings (empty when absent).
  std::map<std::string, std::string> metadata;
  /// CRC-32 (IEEE, as zlib.crc32) of the whole data section.
  uint32_t data_crc32 = 0;

  /// The tensor of that name; throws (naming it) when there is none.
  const torch::Tensor& at(const std::string& name) const;
  /// True when a tensor of that name is present.
  bool contains(const std::string& name) const;
};

/// Writes `tensors` (any device and strides; copied to contiguous CPU;
/// float64/32/16, bfloat16, int64/32/16/8, uint8, bool) with `metadata`
/// to `path`, atomically: `path + ".tmp"` is written, flushed and renamed
/// over `path`. Names must be unique and non-empty and not
/// "__metadata__".
void save_safetensors(
    const std::string& path,
    const NamedTensors& tensors,
    const std::map<std::string, std::string>& metadata = {});

/// Reads a safetensors file (see the file comment for what is checked).
SafetensorsFile load_safetensors(const std::string& path);

/// CRC-32 (IEEE 802.3, reflected, as zlib.crc32) of `size` bytes,
/// continuing from `crc` (0 to start).
uint32_t crc32(const void* data, size_t size, uint32_t crc = 0);

/// "F32", "F64", "BF16", ... for a dtype; throws for others.
std::string safetensors_dtype(torch::ScalarType dtype);

}  // namespace sbgm::io
