#pragma once

/// \file
/// NumPy .npy files, format version 1.0
/// (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html):
/// the magic "\x93NUMPY", version 1.0, a little-endian uint16 header length,
/// then a Python dict literal
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (N, 2), }` padded with
/// spaces and a final '\n' so that the data starts at a multiple of 64 bytes;
/// then the data, C order, little-endian.

#include <torch/types.h>

#include <string>

namespace sbgm::io {

/// Writes a float32, float64, int64 or uint8 tensor (any device, any
/// strides; it is copied to a contiguous CPU tensor) to `path` as .npy v1.0.
/// descr: '<f4', '<f8', '<i8', '|u1'; a 0-d tensor has shape ().
void write_npy(const std::string& path, const torch::Tensor& t);

/// The .npy header for a dtype and shape, exactly as write_npy writes it
/// (magic, version, length and padded dict): a multiple of 64 bytes.
std::string npy_header(torch::ScalarType dtype, torch::IntArrayRef shape);

/// Reads a .npy v1.0 file written by write_npy (or NumPy) with one of the
/// four dtypes above, C order; returns a CPU tensor.
torch::Tensor read_npy(const std::string& path);

}  // namespace sbgm::io
