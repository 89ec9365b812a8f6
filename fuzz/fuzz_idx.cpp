// libFuzzer target: any bytes given to the IDX reader (plain or gzip) either parse into a tensor
// whose dimensions, element type and first value are those the header and body say, or raise
// InputError (a well-formed plain file with elements is never refused); nothing else may escape
// or crash. The expected tensor is worked out here, apart from
// the reader (gzip inflated with zlib directly), and a mismatch aborts: libFuzzer reports a crash.
#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "distillery/data/idx.h"
#include "distillery/error.h"

namespace {

void fail(const char* what) {
  std::fprintf(stderr, "fuzz_idx: %s\n", what);
  std::abort();
}

// The whole gzip stream (or nothing, if it is not a complete one).
std::optional<std::string> inflate_all(const std::string& bytes) {
  z_stream stream{};
  if (inflateInit2(&stream, 15 + 32) != Z_OK) return std::nullopt;
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  stream.avail_in = static_cast<uInt>(bytes.size());
  std::string out;
  int status = Z_OK;
  while (status == Z_OK) {
    char chunk[16384];
    stream.next_out = reinterpret_cast<Bytef*>(chunk);
    stream.avail_out = sizeof(chunk);
    status = inflate(&stream, Z_NO_FLUSH);
    out.append(chunk, sizeof(chunk) - stream.avail_out);
  }
  inflateEnd(&stream);
  if (status != Z_STREAM_END) return std::nullopt;
  return out;
}

// Dimensions, element size and type code of a well-formed IDX body, or nothing.
struct Header {
  std::vector<int64_t> dims;
  int64_t element_bytes = 0;
  unsigned char type = 0;
  size_t body_offset = 0;
};

std::optional<Header> read_header(const std::string& bytes) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  if (bytes.size() < 4 || p[0] != 0 || p[1] != 0 || p[3] == 0) return std::nullopt;
  Header header;
  header.type = p[2];
  switch (header.type) {
    case 0x08: case 0x09: header.element_bytes = 1; break;
    case 0x0B: header.element_bytes = 2; break;
    case 0x0C: case 0x0D: header.element_bytes = 4; break;
    case 0x0E: header.element_bytes = 8; break;
    default: return std::nullopt;
  }
  header.body_offset = 4 + 4 * size_t(p[3]);
  if (bytes.size() < header.body_offset) return std::nullopt;
  // The element count, saturating: many large dimensions must not wrap around to a small product.
  uint64_t count = 1;
  bool empty = false, huge = false;
  for (size_t d = 0; d < p[3]; ++d) {
    const unsigned char* q = p + 4 + 4 * d;
    const int64_t size = (int64_t(q[0]) << 24) | (int64_t(q[1]) << 16) | (int64_t(q[2]) << 8) | q[3];
    header.dims.push_back(size);
    if (size == 0) empty = true;
    else if (count > (uint64_t(1) << 40) / uint64_t(size)) huge = true;
    else count *= uint64_t(size);
  }
  if (empty) count = 0;
  else if (huge) return std::nullopt;  // no file of this length could hold it
  if (count * header.element_bytes + header.body_offset != bytes.size()) return std::nullopt;
  return header;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const bool gzipped = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  std::optional<Header> expected;
  std::string body;
  if (gzipped) {
    if (auto inflated = inflate_all(bytes)) body = std::move(*inflated);
  } else {
    body = bytes;
  }
  expected = read_header(body);
  try {
    const auto values = distillery::data::parse_idx(bytes, "<fuzz>");
    if (!expected) fail("parsed an input that is not a complete IDX file");
    if (values.sizes().vec() != expected->dims) fail("dimensions differ from the header");
    if (values.element_size() != expected->element_bytes) fail("element type differs from the header");
    if (values.numel() > 0) {
      // The first value, read big-endian from the body, must be the tensor's first element.
      std::string first = body.substr(expected->body_offset, expected->element_bytes);
      std::reverse(first.begin(), first.end());
      if (std::memcmp(values.data_ptr(), first.data(), first.size()) != 0) fail("first value differs from the body");
    }
  } catch (const distillery::InputError&) {
    // A well-formed plain file with elements must parse (files with a zero dimension may be
    // refused for implausible other dimensions).
    if (expected && !gzipped && std::all_of(expected->dims.begin(), expected->dims.end(), [](int64_t d) { return d > 0; })) {
      fail("refused a well-formed IDX file");
    }
  }
  return 0;
}
