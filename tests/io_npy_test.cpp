// .npy writer: exact header bytes and value round trips.

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "sbgm/io/npy.h"
#include "support.h"

using sbgm::io::npy_header;
using sbgm::io::read_npy;
using sbgm::io::write_npy;

namespace {

std::string tmp(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("sbgm_npy_" + std::to_string(getpid()) + "_" + name))
      .string();
}

// The expected header written out by hand: magic, version 1.0, little-endian
// length, dict, spaces, newline; `total` bytes in all (a multiple of 64).
// total 0: the smallest multiple of 64 that fits.
std::string expected(const std::string& dict, size_t total = 0) {
  if (total == 0) {
    total = (10 + dict.size() + 1 + 63) / 64 * 64;
  }
  std::string body = dict;
  body.append(total - 10 - dict.size() - 1, ' ');
  body += '\n';
  std::string h("\x93NUMPY\x01\x00", 8);
  h += static_cast<char>((total - 10) & 0xff);
  h += static_cast<char>((total - 10) >> 8);
  return h + body;
}

TEST(NpyTest, HeaderBytesExact) {
  EXPECT_EQ(
      npy_header(torch::kFloat, {3, 2}),
      expected(
          "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", 128));
  EXPECT_EQ(
      npy_header(torch::kLong, {5}),
      expected(
          "{'descr': '<i8', 'fortran_order': False, 'shape': (5,), }", 128));
  EXPECT_EQ(
      npy_header(torch::kByte, {}),
      expected("{'descr': '|u1', 'fortran_order': False, 'shape': (), }", 128));
  EXPECT_EQ(
      npy_header(torch::kDouble, {2, 1, 28, 28}),
      expected(
          "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 1, 28, "
          "28), }",
          128));
  // A long shape spills into a second 64-byte block.
  // 51 + 96 + 3 = 150 dict characters: 10 + 150 + 1 = 161 -> 192 bytes.
  std::vector<int64_t> twelve(12, 100000);
  auto h = npy_header(torch::kFloat, twelve);
  EXPECT_EQ(h.size(), 192u);
  EXPECT_EQ(static_cast<uint8_t>(h[8]), 182);
  EXPECT_EQ(static_cast<uint8_t>(h[9]), 0);
  EXPECT_EQ(h.back(), '\n');
}

TEST(NpyTest, FileIsHeaderThenLittleEndianData) {
  auto t = torch::tensor({1.0f, -2.5f, 3.25f});
  write_npy(tmp("f.npy"), t);
  auto bytes = sbgm::test::read_file(tmp("f.npy"));
  ASSERT_EQ(bytes.size(), 128u + 12u);
  EXPECT_EQ(bytes.substr(0, 128), npy_header(torch::kFloat, {3}));
  // -2.5f = 0xC0200000, little-endian.
  EXPECT_EQ(bytes.substr(132, 4), std::string("\x00\x00\x20\xc0", 4));
  std::remove(tmp("f.npy").c_str());
}

TEST(NpyTest, RoundTripAllDtypes) {
  std::vector<torch::Tensor> ts = {
      torch::randn({4, 3}),
      torch::randn({2, 3, 5}, torch::kDouble),
      torch::arange(-5, 7, torch::kLong),
      torch::randint(0, 256, {3, 4, 2}, torch::kByte),
      torch::tensor(3.5),
      torch::randn({6, 4}).t(),  // non-contiguous
  };
  for (size_t i = 0; i < ts.size(); ++i) {
    auto p = tmp("rt" + std::to_string(i) + ".npy");
    write_npy(p, ts[i]);
    auto back = read_npy(p);
    EXPECT_EQ(back.scalar_type(), ts[i].scalar_type()) << i;
    EXPECT_EQ(back.sizes(), ts[i].sizes()) << i;
    EXPECT_TRUE(torch::equal(back, ts[i])) << i;
    // NumPy, where present, reads the same values (optional check).
    if (i == 1 &&
        std::system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") == 0) {
      auto cmd = "/usr/bin/python3 -c \"import numpy as np; a=np.load('" + p +
                 "'); assert a.shape==(2,3,5) and a.dtype==np.float64\"";
      EXPECT_EQ(std::system(cmd.c_str()), 0);
    }
    std::remove(p.c_str());
  }
}

TEST(NpyTest, Errors) {
  EXPECT_THROW_MSG(
      write_npy(tmp("x.npy"), torch::zeros({2}, torch::kInt)),
      "is not supported (float32, float64, int64, uint8)");
  EXPECT_THROW_MSG(write_npy(tmp("x.npy"), torch::Tensor()), "undefined");
  EXPECT_THROW_MSG(
      write_npy("/nonexistent-dir/x.npy", torch::zeros({2})), "cannot open");
  { std::ofstream(tmp("bad.npy")) << "hello"; }
  EXPECT_THROW_MSG(read_npy(tmp("bad.npy")), "not a .npy file");
  write_npy(tmp("short.npy"), torch::zeros({100}));
  std::filesystem::resize_file(tmp("short.npy"), 128 + 40);
  EXPECT_THROW_MSG(read_npy(tmp("short.npy")), "truncated data");
  // Hand-made headers with one defect each.
  auto with_dict = [](const std::string& name, const std::string& dict) {
    std::string h = expected(dict);
    std::ofstream(tmp(name), std::ios::binary) << h << std::string(64, '\0');
    return tmp(name);
  };
  EXPECT_THROW_MSG(
      read_npy(with_dict(
          "d1.npy",
          "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }")),
      "unsupported descr <i4");
  EXPECT_THROW_MSG(
      read_npy(with_dict(
          "d2.npy",
          "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }")),
      "fortran_order arrays are not supported");
  EXPECT_THROW_MSG(
      read_npy(with_dict(
          "d3.npy",
          "{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }")),
      "bad dimension \" x\" in shape");
  EXPECT_THROW_MSG(
      read_npy(with_dict(
          "d4.npy",
          "{'descr': '<f4', 'fortran_order': False, 'shape': (1048576, "
          "1048576), }")),
      "is too large");
  EXPECT_THROW_MSG(
      read_npy(with_dict(
          "d5.npy",
          "{'descr': '<f4', 'fortran_order': False, 'shape': (99,), }")),
      "header promises 396 bytes, file holds 64");
  EXPECT_THROW_MSG(
      read_npy(
          with_dict("d6.npy", "{'fortran_order': False, 'shape': (2,), }")),
      "no descr");
  std::string v2 =
      expected("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }");
  v2[6] = 2;
  std::ofstream(tmp("v2.npy"), std::ios::binary) << v2;
  EXPECT_THROW_MSG(read_npy(tmp("v2.npy")), "only format version 1.0");
  EXPECT_THROW_MSG(read_npy(tmp("missing.npy")), "cannot open");
  for (const char* f :
       {"bad.npy",
        "short.npy",
        "d1.npy",
        "d2.npy",
        "d3.npy",
        "d4.npy",
        "d5.npy",
        "d6.npy",
        "v2.npy"}) {
    std::remove(tmp(f).c_str());
  }
}

}  // namespace
