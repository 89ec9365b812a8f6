#include "distillery/data/idx.h"

#include <zlib.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "distillery/error.h"

namespace distillery::data {
namespace {

struct ElementType {
  torch::ScalarType scalar;
  int64_t bytes;
};

bool element_type(uint8_t code, ElementType* out) {
  switch (code) {
    case 0x08: *out = {torch::kUInt8, 1}; return true;
    case 0x09: *out = {torch::kInt8, 1}; return true;
    case 0x0B: *out = {torch::kInt16, 2}; return true;
    case 0x0C: *out = {torch::kInt32, 4}; return true;
    case 0x0D: *out = {torch::kFloat32, 4}; return true;
    case 0x0E: *out = {torch::kFloat64, 8}; return true;
    default: return false;
  }
}

uint32_t read_big_endian(const unsigned char* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open file");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::string gunzip(const std::string& compressed, const std::string& path) {
  z_stream stream{};
  if (inflateInit2(&stream, 15 + 32) != Z_OK) throw InputError(path + ": cannot start gzip decoder");
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  stream.avail_in = static_cast<uInt>(compressed.size());
  std::string out;
  char chunk[1 << 16];
  int status = Z_OK;
  while (status != Z_STREAM_END) {
    stream.next_out = reinterpret_cast<Bytef*>(chunk);
    stream.avail_out = sizeof(chunk);
    status = inflate(&stream, Z_NO_FLUSH);
    if (status != Z_OK && status != Z_STREAM_END) {
      std::string reason = stream.msg ? stream.msg : (status == Z_BUF_ERROR ? "stream ends early" : "corrupt data");
      inflateEnd(&stream);
      throw InputError(path + ": corrupt gzip data (" + reason + ")");
    }
    out.append(chunk, sizeof(chunk) - stream.avail_out);
  }
  inflateEnd(&stream);
  return out;
}

}  // namespace

torch::Tensor parse_idx(const std::string& file_bytes, const std::string& source) {
  const bool gzipped = file_bytes.size() >= 2 && static_cast<unsigned char>(file_bytes[0]) == 0x1f &&
                       static_cast<unsigned char>(file_bytes[1]) == 0x8b;
  const std::string bytes = gzipped ? gunzip(file_bytes, source) : file_bytes;
  if (bytes.empty()) throw InputError(source + ": empty file, expected an IDX header");
  if (bytes.size() < 4) throw InputError(source + ": file too short for an IDX header (" + std::to_string(bytes.size()) + " bytes)");
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  if (data[0] != 0 || data[1] != 0) {
    throw InputError(fmt::format("{}: bad IDX magic number 0x{:02x}{:02x}{:02x}{:02x} (must start with two zero bytes)",
                                 source, data[0], data[1], data[2], data[3]));
  }
  ElementType type{};
  if (!element_type(data[2], &type)) {
    throw InputError(fmt::format("{}: unknown IDX element type 0x{:02x}", source, data[2]));
  }
  const int64_t num_dims = data[3];
  if (num_dims < 1) throw InputError(source + ": IDX header declares 0 dimensions");
  const int64_t header = 4 + 4 * num_dims;
  if (static_cast<int64_t>(bytes.size()) < header) {
    throw InputError(fmt::format("{}: file ends inside the IDX header ({} bytes, header needs {})", source,
                                 bytes.size(), header));
  }
  std::vector<int64_t> dims;
  int64_t count = 1;
  for (int64_t d = 0; d < num_dims; ++d) {
    const int64_t size = read_big_endian(data + 4 + 4 * d);
    dims.push_back(size);
    // Checked before multiplying: the product of two 32-bit sizes can overflow 64 bits.
    if (size > 0 && count > (int64_t(1) << 40) / size) throw InputError(source + ": IDX dimensions are implausibly large");
    count *= size;
  }
  const int64_t expected = header + count * type.bytes;
  if (static_cast<int64_t>(bytes.size()) != expected) {
    throw InputError(fmt::format("{}: file length {} does not match its IDX header (dimensions {} need {} bytes){}",
                                 source, bytes.size(), fmt::join(dims, "x"), expected,
                                 static_cast<int64_t>(bytes.size()) < expected ? ": truncated" : ": trailing bytes"));
  }
  auto values = torch::empty(dims, torch::TensorOptions().dtype(type.scalar));
  if (count > 0) std::memcpy(values.data_ptr(), data + header, count * type.bytes);
  // IDX stores multi-byte values big-endian; swap to the machine's order.
  if (type.bytes > 1) {
    auto* p = static_cast<unsigned char*>(values.data_ptr());
    for (int64_t i = 0; i < count; ++i) std::reverse(p + i * type.bytes, p + (i + 1) * type.bytes);
  }
  return values;
}

torch::Tensor read_idx(const std::string& path) {
  return parse_idx(read_file(path), path);
}

void write_idx(const std::string& path, const torch::Tensor& values) {
  TORCH_CHECK(values.scalar_type() == torch::kUInt8, "write_idx: expected uint8, got ", values.scalar_type());
  auto contiguous = values.contiguous();
  std::string header = {0, 0, 0x08, static_cast<char>(contiguous.dim())};
  for (int64_t d = 0; d < contiguous.dim(); ++d) {
    const auto size = static_cast<uint32_t>(contiguous.size(d));
    header += static_cast<char>(size >> 24);
    header += static_cast<char>(size >> 16);
    header += static_cast<char>(size >> 8);
    header += static_cast<char>(size);
  }
  std::ofstream out(path, std::ios::binary);
  if (!out) throw InputError(path + ": cannot write file");
  out.write(header.data(), header.size());
  out.write(static_cast<const char*>(contiguous.data_ptr()), contiguous.numel());
  if (!out) throw InputError(path + ": write failed");
}

}  // namespace distillery::data
