#include "sbgm/io/npy.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <cstring>
#include <fstream>
#include <sstream>

namespace sbgm::io {
namespace {

static_assert(sizeof(float) == 4 && sizeof(double) == 8, "IEEE floats");

bool little_endian() {
  const uint16_t one = 1;
  uint8_t b;
  std::memcpy(&b, &one, 1);
  return b == 1;
}

std::string descr_of(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat:
      return "<f4";
    case torch::kDouble:
      return "<f8";
    case torch::kLong:
      return "<i8";
    case torch::kByte:
      return "|u1";
    default:
      TORCH_CHECK(
          false,
          "npy: dtype ",
          dtype,
          " is not supported (float32, float64, int64, uint8)");
  }
}

}  // namespace

std::string npy_header(torch::ScalarType dtype, torch::IntArrayRef shape) {
  std::ostringstream dict;
  dict << "{'descr': '" << descr_of(dtype)
       << "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < shape.size(); ++i) {
    TORCH_CHECK(shape[i] >= 0, "npy: negative dimension ", shape[i]);
    dict << shape[i];
    if (shape.size() == 1 || i + 1 < shape.size()) {
      dict << ",";
    }
    if (i + 1 < shape.size()) {
      dict << " ";
    }
  }
  dict << "), }";
  std::string d = dict.str();
  // 6 magic + 2 version + 2 length + dict + padding + '\n' = multiple of 64.
  size_t total = 10 + d.size() + 1;
  size_t padded = (total + 63) / 64 * 64;
  d.append(padded - total, ' ');
  d.push_back('\n');
  TORCH_CHECK(d.size() <= 65535, "npy: header too long (", d.size(), ")");
  std::string h("\x93NUMPY\x01\x00", 8);
  h.push_back(static_cast<char>(d.size() & 0xff));
  h.push_back(static_cast<char>(d.size() >> 8));
  return h + d;
}

void write_npy(const std::string& path, const torch::Tensor& t) {
  TORCH_CHECK(t.defined(), "write_npy: the tensor is undefined");
  TORCH_CHECK(little_endian(), "write_npy: big-endian hosts are not supported");
  std::string header = npy_header(t.scalar_type(), t.sizes());
  auto c = t.detach().to(torch::kCPU).contiguous();
  std::ofstream out(path, std::ios::binary);
  TORCH_CHECK(out, "write_npy: cannot open ", path, " for writing");
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(
      static_cast<const char*>(c.data_ptr()),
      static_cast<std::streamsize>(c.numel() * c.element_size()));
  out.close();
  TORCH_CHECK(out, "write_npy: error writing ", path);
}

torch::Tensor read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in, "read_npy: cannot open ", path);
  char pre[10];
  in.read(pre, 10);
  TORCH_CHECK(
      in && std::memcmp(pre, "\x93NUMPY", 6) == 0,
      "read_npy: ",
      path,
      " is not a .npy file");
  TORCH_CHECK(
      pre[6] == 1 && pre[7] == 0,
      "read_npy: ",
      path,
      ": only format version 1.0 is supported, got ",
      int(pre[6]),
      ".",
      int(pre[7]));
  size_t len = static_cast<uint8_t>(pre[8]) |
               (static_cast<size_t>(static_cast<uint8_t>(pre[9])) << 8);
  std::string dict(len, '\0');
  in.read(&dict[0], static_cast<std::streamsize>(len));
  TORCH_CHECK(in, "read_npy: ", path, ": truncated header");
  auto field = [&](const std::string& key) {
    auto p = dict.find("'" + key + "':");
    TORCH_CHECK(p != std::string::npos, "read_npy: ", path, ": no ", key);
    p += key.size() + 3;
    while (p < dict.size() && dict[p] == ' ') {
      ++p;
    }
    return p;
  };
  auto pd = field("descr");
  TORCH_CHECK(
      pd + 4 < dict.size() && dict[pd] == '\'' && dict[pd + 4] == '\'',
      "read_npy: ",
      path,
      ": bad descr");
  auto descr = dict.substr(pd + 1, 3);
  torch::ScalarType dtype;
  if (descr == "<f4") {
    dtype = torch::kFloat;
  } else if (descr == "<f8") {
    dtype = torch::kDouble;
  } else if (descr == "<i8") {
    dtype = torch::kLong;
  } else if (descr == "|u1") {
    dtype = torch::kByte;
  } else {
    TORCH_CHECK(false, "read_npy: ", path, ": unsupported descr ", descr);
  }
  TORCH_CHECK(
      dict.compare(field("fortran_order"), 5, "False") == 0,
      "read_npy: ",
      path,
      ": fortran_order arrays are not supported");
  auto ps = field("shape");
  auto pe = dict.find(')', ps);
  TORCH_CHECK(
      dict[ps] == '(' && pe != std::string::npos,
      "read_npy: ",
      path,
      ": bad shape");
  std::vector<int64_t> shape;
  std::istringstream ss(dict.substr(ps + 1, pe - ps - 1));
  std::string tok;
  int64_t numel = 1;
  while (std::getline(ss, tok, ',')) {
    if (tok.find_first_not_of(' ') == std::string::npos) {
      continue;
    }
    size_t used = 0;
    int64_t d = -1;
    try {
      d = std::stoll(tok, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    TORCH_CHECK(
        used > 0 && tok.find_first_not_of(' ', used) == std::string::npos &&
            d >= 0 && d < (int64_t{1} << 40),
        "read_npy: ",
        path,
        ": bad dimension \"",
        tok,
        "\" in shape");
    shape.push_back(d);
    // numel < 2^40 and d < 2^40 before this check: no overflow.
    TORCH_CHECK(
        d == 0 || numel <= ((int64_t{1} << 40) - 1) / d,
        "read_npy: ",
        path,
        ": shape ",
        c10::IntArrayRef(shape),
        " is too large");
    numel *= d;
  }
  // Check the size before allocating what the header claims.
  auto here = in.tellg();
  in.seekg(0, std::ios::end);
  auto remaining = static_cast<int64_t>(in.tellg() - here);
  in.seekg(here);
  int64_t need = numel * static_cast<int64_t>(c10::elementSize(dtype));
  TORCH_CHECK(
      remaining >= need,
      "read_npy: ",
      path,
      ": truncated data (header promises ",
      need,
      " bytes, file holds ",
      remaining,
      ")");
  auto t = torch::empty(shape, torch::dtype(dtype));
  in.read(
      static_cast<char*>(t.data_ptr()),
      static_cast<std::streamsize>(t.numel() * t.element_size()));
  TORCH_CHECK(in, "read_npy: ", path, ": truncated data");
  return t;
}

}  // namespace sbgm::io
