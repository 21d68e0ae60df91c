#pragma once

// Torch-free IDX parsing (the MNIST file format), kept apart from the tensor
// wrappers so that it can be fuzzed on its own (tests/fuzz/idx_fuzz.cpp).
//
// IDX: two zero bytes, a type byte (0x08 = unsigned byte, the only one we
// accept), the number of dimensions, then each dimension as a big-endian
// uint32, then the data in row-major order.

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace sbgm::detail {

/// Thrown for any malformed IDX input; the message names the file.
struct IdxError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// A parsed IDX array of unsigned bytes.
struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;
};

/// Largest payload we agree to read (bytes): 2^33, far above real MNIST-like
/// sets (47 MB), small enough to refuse absurd headers before allocating.
constexpr uint64_t kIdxMaxPayload = uint64_t{1} << 33;

/// Parses the header at the start of `buf` (which holds at least the first
/// `n` bytes of the file) and returns the dims; `*header_size` gets the
/// header's length. Expects `ndim` dimensions. Throws IdxError naming `what`.
std::vector<int64_t> parse_idx_header(
    const uint8_t* buf,
    size_t n,
    int ndim,
    const std::string& what,
    size_t* header_size);

/// Product of dims, checked against kIdxMaxPayload.
uint64_t idx_payload_size(
    const std::vector<int64_t>& dims, const std::string& what);

/// Parses a whole IDX file held in memory; its size must match exactly.
IdxArray parse_idx_buffer(
    const uint8_t* buf, size_t n, int ndim, const std::string& what);

/// Reads only the header of an IDX file (plain or gzip) and returns its dims.
std::vector<int64_t> peek_idx_dims(const std::string& path, int ndim);

/// Reads an IDX file, plain or gzip-compressed (told apart by content). The
/// header is checked against the file's size before anything large is
/// allocated; for gzip the payload is read in chunks (memory grows only with
/// data actually present) and the stream must end right after it.
IdxArray read_idx_file(const std::string& path, int ndim);

}  // namespace sbgm::detail
