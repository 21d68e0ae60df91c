#include "data/idx.h"

#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <sstream>

namespace sbgm::detail {
namespace {

[[noreturn]] void fail(const std::string& what, const std::string& msg) {
  throw IdxError(what + ": " + msg);
}

std::string hex_bytes(const uint8_t* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s = "0x";
  for (size_t i = 0; i < n; ++i) {
    s += digits[p[i] >> 4];
    s += digits[p[i] & 15];
  }
  return s;
}

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
         (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

size_t header_size_for(int ndim) {
  return 4 + 4 * static_cast<size_t>(ndim);
}

// Reads up to n bytes from a gzFile; returns the count, throws on error.
size_t gz_read_some(gzFile f, uint8_t* dst, size_t n, const std::string& what) {
  size_t got = 0;
  while (got < n) {
    size_t want = n - got;
    if (want > (1u << 20)) {
      want = 1u << 20;
    }
    int r = gzread(f, dst + got, static_cast<unsigned>(want));
    if (r < 0) {
      int errnum = 0;
      const char* msg = gzerror(f, &errnum);
      fail(what, std::string("corrupt gzip data (") + (msg ? msg : "?") + ")");
    }
    if (r == 0) {
      break;
    }
    got += static_cast<size_t>(r);
  }
  return got;
}

struct GzCloser {
  void operator()(gzFile_s* f) const {
    gzclose(f);
  }
};

struct FileCloser {
  void operator()(std::FILE* f) const {
    std::fclose(f);
  }
};

}  // namespace

std::vector<int64_t> parse_idx_header(
    const uint8_t* buf,
    size_t n,
    int ndim,
    const std::string& what,
    size_t* header_size) {
  if (n == 0) {
    fail(what, "file is empty");
  }
  if (n < 4) {
    fail(
        what,
        "truncated: " + std::to_string(n) +
            " bytes is too short for an IDX header");
  }
  if (buf[0] != 0 || buf[1] != 0) {
    fail(
        what,
        "bad magic number " + hex_bytes(buf, 4) +
            " (an IDX file starts with two zero bytes)");
  }
  if (buf[2] != 0x08) {
    fail(
        what,
        "bad magic number " + hex_bytes(buf, 4) + ": element type " +
            hex_bytes(buf + 2, 1) + " is not unsigned byte (0x08)");
  }
  if (buf[3] != ndim) {
    fail(
        what,
        "bad magic number " + hex_bytes(buf, 4) + ": " +
            std::to_string(buf[3]) + " dimensions, expected " +
            std::to_string(ndim) +
            (ndim == 3 ? " (an images file)" : " (a labels file)"));
  }
  size_t hs = header_size_for(ndim);
  if (n < hs) {
    fail(
        what,
        "truncated: header needs " + std::to_string(hs) + " bytes, file has " +
            std::to_string(n));
  }
  std::vector<int64_t> dims;
  for (int i = 0; i < ndim; ++i) {
    uint32_t d = be32(buf + 4 + 4 * i);
    if (d == 0) {
      fail(what, "dimension " + std::to_string(i) + " is zero");
    }
    dims.push_back(static_cast<int64_t>(d));
  }
  if (header_size != nullptr) {
    *header_size = hs;
  }
  return dims;
}

uint64_t idx_payload_size(
    const std::vector<int64_t>& dims, const std::string& what) {
  // Each dim < 2^32 and the running product stays <= 2^33 before the next
  // multiplication, so nothing overflows 64 bits.
  uint64_t total = 1;
  for (int64_t d : dims) {
    total *= static_cast<uint64_t>(d);
    if (total > kIdxMaxPayload) {
      std::ostringstream os;
      os << "header claims dims";
      for (int64_t e : dims) {
        os << " " << e;
      }
      os << ", more than the " << kIdxMaxPayload << "-byte limit";
      fail(what, os.str());
    }
  }
  return total;
}

IdxArray parse_idx_buffer(
    const uint8_t* buf, size_t n, int ndim, const std::string& what) {
  size_t hs = 0;
  IdxArray out;
  out.dims = parse_idx_header(buf, n, ndim, what, &hs);
  uint64_t payload = idx_payload_size(out.dims, what);
  uint64_t have = n - hs;
  if (have < payload) {
    fail(
        what,
        "truncated: header promises " + std::to_string(payload) +
            " data bytes, file holds " + std::to_string(have));
  }
  if (have > payload) {
    fail(
        what,
        std::to_string(have - payload) +
            " unexpected bytes after the data (header promises " +
            std::to_string(payload) + ")");
  }
  out.data.assign(buf + hs, buf + hs + payload);
  return out;
}

std::vector<int64_t> peek_idx_dims(const std::string& path, int ndim) {
  std::error_code ec;
  auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) {
    fail(path, "no such file");
  }
  if (!std::filesystem::is_regular_file(status)) {
    fail(path, "not a regular file");
  }
  std::unique_ptr<gzFile_s, GzCloser> f(gzopen(path.c_str(), "rb"));
  if (!f) {
    fail(path, "cannot open");
  }
  uint8_t head[16];
  size_t got = gz_read_some(f.get(), head, header_size_for(ndim), path);
  return parse_idx_header(head, got, ndim, path, nullptr);
}

IdxArray read_idx_file(const std::string& path, int ndim) {
  const std::string& what = path;
  std::error_code ec;
  auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) {
    fail(what, "no such file");
  }
  if (!std::filesystem::is_regular_file(status)) {
    fail(what, "not a regular file");
  }
  uint64_t file_size = std::filesystem::file_size(path, ec);
  if (ec) {
    fail(what, "cannot read its size (" + ec.message() + ")");
  }
  if (file_size == 0) {
    fail(what, "file is empty");
  }
  // Sniff the gzip magic.
  uint8_t sniff[2] = {0, 0};
  {
    std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
    if (!f) {
      fail(what, std::string("cannot open (") + std::strerror(errno) + ")");
    }
    if (std::fread(sniff, 1, 2, f.get()) != std::min<uint64_t>(2, file_size)) {
      fail(what, "read error");
    }
  }
  const bool gz = file_size >= 2 && sniff[0] == 0x1f && sniff[1] == 0x8b;
  const size_t hs = header_size_for(ndim);

  if (!gz) {
    std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
    if (!f) {
      fail(what, std::string("cannot open (") + std::strerror(errno) + ")");
    }
    uint8_t head[16];
    size_t got =
        std::fread(head, 1, std::min<uint64_t>(hs, file_size), f.get());
    IdxArray out;
    out.dims = parse_idx_header(head, got, ndim, what, nullptr);
    uint64_t payload = idx_payload_size(out.dims, what);
    if (file_size - hs < payload) {
      fail(
          what,
          "truncated: header promises " + std::to_string(payload) +
              " data bytes, file holds " + std::to_string(file_size - hs));
    }
    if (file_size - hs > payload) {
      fail(
          what,
          std::to_string(file_size - hs - payload) +
              " unexpected bytes after the data (header promises " +
              std::to_string(payload) + ")");
    }
    out.data.resize(payload);
    if (std::fread(out.data.data(), 1, payload, f.get()) != payload) {
      fail(what, "read error (file changed while reading?)");
    }
    return out;
  }

  std::unique_ptr<gzFile_s, GzCloser> f(gzopen(path.c_str(), "rb"));
  if (!f) {
    fail(what, "cannot open gzip file");
  }
  uint8_t head[16];
  size_t got = gz_read_some(f.get(), head, hs, what);
  IdxArray out;
  out.dims = parse_idx_header(head, got, ndim, what + " (gzip)", nullptr);
  uint64_t payload = idx_payload_size(out.dims, what);
  // Deflate cannot compress better than about 1032:1; a header promising more
  // than that is a lie we can catch before reading anything.
  uint64_t bound = file_size * 1040 + 4096;
  if (payload > bound) {
    fail(
        what,
        "header promises " + std::to_string(payload) +
            " data bytes, more than a " + std::to_string(file_size) +
            "-byte gzip file can hold");
  }
  // Read in chunks so memory only grows with data that is really there.
  const size_t chunk = size_t{1} << 22;
  uint64_t done = 0;
  while (done < payload) {
    size_t want =
        static_cast<size_t>(std::min<uint64_t>(chunk, payload - done));
    out.data.resize(static_cast<size_t>(done) + want);
    size_t r = gz_read_some(f.get(), out.data.data() + done, want, what);
    done += r;
    if (r < want) {
      fail(
          what,
          "truncated: header promises " + std::to_string(payload) +
              " data bytes, gzip stream holds " + std::to_string(done));
    }
  }
  uint8_t extra[1];
  if (gz_read_some(f.get(), extra, 1, what) != 0) {
    fail(
        what,
        "unexpected bytes after the data (header promises " +
            std::to_string(payload) + ")");
  }
  return out;
}

}  // namespace sbgm::detail
