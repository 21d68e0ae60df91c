// MNIST IDX reader: the fixture reads back byte for byte, and every kind of
// damage gives its own error (damaged copies are made at run time).

#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "sbgm/data/mnist.h"
#include "support.h"

namespace fs = std::filesystem;
using sbgm::data::load_mnist;
using sbgm::data::MnistSplit;
using sbgm::data::read_mnist_images;
using sbgm::data::read_mnist_labels;

namespace {

const std::string kTiny = std::string(SBGM_TEST_DATA_DIR) + "/mnist-tiny";

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), b.size());
}

void write_gz(const std::string& path, const std::vector<uint8_t>& b) {
  gzFile f = gzopen(path.c_str(), "wb9");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(
      gzwrite(f, b.data(), static_cast<unsigned>(b.size())),
      static_cast<int>(b.size()));
  gzclose(f);
}

void put_be32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  b[at] = static_cast<uint8_t>(v >> 24);
  b[at + 1] = static_cast<uint8_t>(v >> 16);
  b[at + 2] = static_cast<uint8_t>(v >> 8);
  b[at + 3] = static_cast<uint8_t>(v);
}

class MnistTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = (fs::temp_directory_path() /
            ("sbgm_mnist_" + std::to_string(getpid()) + "_" + info->name()))
               .string();
    fs::create_directories(dir_);
    images_ = read_bytes(kTiny + "/train-images-idx3-ubyte");
    labels_ = read_bytes(kTiny + "/train-labels-idx1-ubyte");
    ASSERT_EQ(images_.size(), 16u + 32u * 784u);
    ASSERT_EQ(labels_.size(), 8u + 32u);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const {
    return dir_ + "/" + name;
  }
  // Writes a damaged images file and expects `msg` from reading it.
  void expect_images_error(
      const std::vector<uint8_t>& bytes, const std::string& msg) {
    write_bytes(path("img"), bytes);
    EXPECT_THROW_MSG(read_mnist_images(path("img")), msg);
    EXPECT_THROW_MSG(read_mnist_images(path("img")), path("img"));
  }
  std::string dir_;
  std::vector<uint8_t> images_;
  std::vector<uint8_t> labels_;
};

TEST_F(MnistTest, FixtureReadsBackExactly) {
  auto raw = read_mnist_images(kTiny + "/train-images-idx3-ubyte", false);
  ASSERT_EQ(raw.scalar_type(), torch::kByte);
  ASSERT_EQ(raw.sizes(), (std::vector<int64_t>{32, 1, 28, 28}));
  ASSERT_TRUE(raw.is_contiguous());
  EXPECT_EQ(
      std::memcmp(raw.data_ptr<uint8_t>(), images_.data() + 16, 32 * 784), 0);
  auto f = read_mnist_images(kTiny + "/train-images-idx3-ubyte");
  ASSERT_EQ(f.scalar_type(), torch::kFloat);
  EXPECT_TRUE(
      sbgm::test::all_close(f, raw.to(torch::kDouble) / 255.0, 0, 1e-7));
  EXPECT_GE(f.min().item<float>(), 0.f);
  EXPECT_LE(f.max().item<float>(), 1.f);
  EXPECT_GT(f.max().item<float>(), 0.9f);  // real digits have ink

  auto l = read_mnist_labels(kTiny + "/train-labels-idx1-ubyte");
  ASSERT_EQ(l.scalar_type(), torch::kLong);
  ASSERT_EQ(l.sizes(), (std::vector<int64_t>{32}));
  for (int64_t i = 0; i < 32; ++i) {
    EXPECT_EQ(l[i].item<int64_t>(), labels_[8 + i]);
  }
}

TEST_F(MnistTest, GzipAndPlainAgreeAndLoadFindsBoth) {
  auto train = load_mnist(kTiny, MnistSplit::Train);  // plain files
  auto test = load_mnist(kTiny, MnistSplit::Test);    // .gz files, same bytes
  EXPECT_TRUE(torch::equal(train.images, test.images));
  EXPECT_TRUE(torch::equal(train.labels, test.labels));
  auto raw = load_mnist(kTiny, MnistSplit::Test, false);
  EXPECT_EQ(raw.images.scalar_type(), torch::kByte);
  EXPECT_TRUE(
      torch::equal(raw.images.to(torch::kFloat).div(255), train.images));
}

TEST_F(MnistTest, MissingFiles) {
  EXPECT_THROW_MSG(load_mnist(dir_), "found neither");
  EXPECT_THROW_MSG(read_mnist_images(path("nope")), "no such file");
  fs::create_directories(path("adir"));
  EXPECT_THROW_MSG(read_mnist_images(path("adir")), "not a regular file");
}

TEST_F(MnistTest, EmptyFile) {
  expect_images_error({}, "file is empty");
  write_gz(path("e.gz"), {});
  EXPECT_THROW_MSG(read_mnist_labels(path("e.gz")), "file is empty");
}

TEST_F(MnistTest, Truncated) {
  auto b = images_;
  b.resize(16 + 784 * 3 + 100);
  expect_images_error(b, "truncated");
  expect_images_error({0, 0, 8}, "truncated");
  expect_images_error({0, 0, 8, 3, 0, 0}, "truncated");  // inside the header
  write_gz(path("t.gz"), b);
  EXPECT_THROW_MSG(read_mnist_images(path("t.gz")), "truncated");
  // A gzip stream cut short (not just short data).
  write_gz(path("full.gz"), images_);
  auto gz = read_bytes(path("full.gz"));
  gz.resize(gz.size() / 2);
  write_bytes(path("cut.gz"), gz);
  EXPECT_THROW_MSG(read_mnist_images(path("cut.gz")), "truncated");
}

TEST_F(MnistTest, TrailingBytes) {
  auto b = images_;
  b.push_back(7);
  expect_images_error(b, "unexpected bytes after the data");
  write_gz(path("x.gz"), b);
  EXPECT_THROW_MSG(read_mnist_images(path("x.gz")), "unexpected bytes");
}

TEST_F(MnistTest, BadMagic) {
  auto b = images_;
  b[0] = 0x1f;
  expect_images_error(b, "bad magic number 0x1f000803");
  b = images_;
  b[2] = 0x0d;  // float data
  expect_images_error(b, "is not unsigned byte");
  // A labels file given as images, and images given as labels.
  expect_images_error(labels_, "1 dimensions, expected 3");
  write_bytes(path("lab"), images_);
  EXPECT_THROW_MSG(read_mnist_labels(path("lab")), "3 dimensions, expected 1");
}

TEST_F(MnistTest, CountLargerThanFileFailsFast) {
  auto b = images_;
  b.resize(100);
  put_be32(b, 4, 4000000000u);  // 4e9 images in a 100-byte file
  expect_images_error(b, "byte limit");
  put_be32(b, 4, 1000000u);  // 784 MB promised, 84 bytes present
  expect_images_error(b, "truncated");
  // gzip: a small stream cannot hold the promised payload.
  write_gz(path("big.gz"), b);
  EXPECT_THROW_MSG(read_mnist_images(path("big.gz")), "gzip file can hold");
  auto lab = labels_;
  put_be32(lab, 4, 33);
  write_bytes(path("lab"), lab);
  EXPECT_THROW_MSG(read_mnist_labels(path("lab")), "truncated");
}

TEST_F(MnistTest, WrongDimsAndZeroDims) {
  auto b = images_;
  put_be32(b, 8, 14);
  put_be32(b, 12, 56);  // same byte count, wrong shape
  expect_images_error(b, "images are 14x56, expected 28x28");
  put_be32(b, 8, 0);
  expect_images_error(b, "dimension 1 is zero");
}

TEST_F(MnistTest, CorruptGzip) {
  write_gz(path("ok.gz"), images_);
  auto gz = read_bytes(path("ok.gz"));
  for (size_t i = 40; i < gz.size() - 20; i += 97) {
    gz[i] ^= 0x5a;
  }
  write_bytes(path("bad.gz"), gz);
  EXPECT_THROW_MSG(read_mnist_images(path("bad.gz")), path("bad.gz"));
  // Flip only the stored CRC: the data inflate fine but fail the check.
  gz = read_bytes(path("ok.gz"));
  gz[gz.size() - 6] ^= 0xff;
  write_bytes(path("crc.gz"), gz);
  EXPECT_THROW_MSG(read_mnist_images(path("crc.gz")), "corrupt gzip data");
}

TEST_F(MnistTest, LabelsMustBeDigitsAndMatchImages) {
  auto lab = labels_;
  lab[8 + 5] = 12;
  write_bytes(path("lab"), lab);
  EXPECT_THROW_MSG(read_mnist_labels(path("lab")), "label 12 at index 5");

  fs::create_directories(path("d"));
  write_bytes(path("d/train-images-idx3-ubyte"), images_);
  lab = labels_;
  lab.pop_back();
  put_be32(lab, 4, 31);
  write_bytes(path("d/train-labels-idx1-ubyte"), lab);
  EXPECT_THROW_MSG(load_mnist(path("d")), "holds 32 images but");
  // The check happens on the headers, before reading: a truncated images
  // file with a mismatching count reports the mismatch.
  auto img = images_;
  img.resize(200);
  write_bytes(path("d/train-images-idx3-ubyte"), img);
  EXPECT_THROW_MSG(load_mnist(path("d")), "31 labels");
}

}  // namespace
