#include "distillery/train/zip_checksums.h"

#include <zlib.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <vector>

#include "distillery/error.h"

namespace distillery::train {
namespace {

// Little-endian fields of the zip format (APPNOTE.TXT), read with bounds checks.
class Bytes {
 public:
  Bytes(const std::string& data, const std::string& path) : data_(data), path_(path) {}
  uint64_t get(uint64_t offset, int width) const {
    // Written so that no sum can wrap around: offsets come from the file and may be anything.
    if (offset > data_.size() || static_cast<uint64_t>(width) > data_.size() - offset) {
      fail("a zip structure points past the end of the file");
    }
    uint64_t value = 0;
    for (int i = width - 1; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(data_[offset + i]);
    return value;
  }
  uint32_t u32(uint64_t offset) const { return static_cast<uint32_t>(get(offset, 4)); }
  uint16_t u16(uint64_t offset) const { return static_cast<uint16_t>(get(offset, 2)); }
  uint64_t u64(uint64_t offset) const { return get(offset, 8); }
  std::string text(uint64_t offset, uint64_t length) const {
    if (offset > data_.size() || length > data_.size() - offset) fail("a record name runs past the end of the file");
    return data_.substr(offset, length);
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw InputError(path_ + ": not a readable checkpoint (corrupt or truncated file?): " + what);
  }
  const std::string& data() const { return data_; }

 private:
  const std::string& data_;
  const std::string& path_;
};

uint32_t crc_of(const char* data, uint64_t size) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (size > 0) {
    const uInt chunk = static_cast<uInt>(std::min<uint64_t>(size, 1u << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(data), chunk);
    data += chunk;
    size -= chunk;
  }
  return static_cast<uint32_t>(crc);
}

// CRC-32 of a raw deflate stream's output, which must be exactly `expected_size` bytes.
bool inflated_crc(const char* data, uint64_t size, uint64_t expected_size, uint32_t* crc) {
  z_stream stream{};
  if (inflateInit2(&stream, -MAX_WBITS) != Z_OK) return false;
  std::vector<unsigned char> out(1 << 16);
  uLong running = crc32(0L, Z_NULL, 0);
  uint64_t produced = 0;
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data));
  stream.avail_in = static_cast<uInt>(size);
  int status = Z_OK;
  while (status == Z_OK) {
    stream.next_out = out.data();
    stream.avail_out = static_cast<uInt>(out.size());
    status = inflate(&stream, Z_NO_FLUSH);
    const uint64_t n = out.size() - stream.avail_out;
    produced += n;
    if (produced > expected_size) break;
    running = crc32(running, out.data(), static_cast<uInt>(n));
    if (status == Z_BUF_ERROR && n == 0) break;
  }
  inflateEnd(&stream);
  *crc = static_cast<uint32_t>(running);
  return status == Z_STREAM_END && produced == expected_size;
}

}  // namespace

std::string read_verified_archive(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open file");
  const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const Bytes bytes(data, path);
  // The end-of-central-directory record: within the last 64 KiB + 22 bytes.
  if (data.size() < 22) bytes.fail("file too short for a zip archive");
  int64_t eocd = -1;
  const int64_t lowest = std::max<int64_t>(0, static_cast<int64_t>(data.size()) - 22 - 65535);
  for (int64_t at = static_cast<int64_t>(data.size()) - 22; at >= lowest; --at) {
    if (bytes.u32(at) == 0x06054b50) { eocd = at; break; }
  }
  if (eocd < 0) bytes.fail("no end-of-central-directory record");
  // Every count and offset is read twice where the format stores it twice, and the two must agree:
  // readers differ in which copy they trust (fuzzing found a file whose copies disagreed).
  uint64_t entries = bytes.u16(eocd + 10);
  if (bytes.u16(eocd + 8) != entries) bytes.fail("the end record's two entry counts differ");
  uint64_t directory_size = bytes.u32(eocd + 12);
  uint64_t directory = bytes.u32(eocd + 16);
  if (eocd >= 20 && bytes.u32(eocd - 20) == 0x07064b50) {
    const uint64_t record = bytes.u64(eocd - 20 + 8);
    if (bytes.u32(record) != 0x06064b50) bytes.fail("bad zip64 end-of-central-directory record");
    const uint64_t entries64 = bytes.u64(record + 32), size64 = bytes.u64(record + 40), directory64 = bytes.u64(record + 48);
    if (bytes.u64(record + 24) != entries64) bytes.fail("the zip64 record's two entry counts differ");
    if ((entries != 0xFFFF && entries != entries64) || (directory_size != 0xFFFFFFFF && directory_size != size64) ||
        (directory != 0xFFFFFFFF && directory != directory64)) {
      bytes.fail("the zip64 record disagrees with the end record");
    }
    entries = entries64, directory_size = size64, directory = directory64;
  }
  if (entries == 0) bytes.fail("the archive holds no records");
  uint64_t at = directory;
  for (uint64_t e = 0; e < entries; ++e) {
    if (bytes.u32(at) != 0x02014b50) bytes.fail("bad central directory entry " + std::to_string(e));
    const uint16_t method = bytes.u16(at + 10);
    const uint32_t crc = bytes.u32(at + 16);
    uint64_t compressed = bytes.u32(at + 20), size = bytes.u32(at + 24);
    const uint16_t name_length = bytes.u16(at + 28), extra_length = bytes.u16(at + 30), comment_length = bytes.u16(at + 32);
    uint64_t local = bytes.u32(at + 42);
    const std::string name = bytes.text(at + 46, name_length);
    // Zip64 extra field: 8-byte values for whichever of the 32-bit fields are saturated, in order.
    for (uint64_t x = at + 46 + name_length; x + 4 <= at + 46 + name_length + extra_length;) {
      const uint16_t id = bytes.u16(x), length = bytes.u16(x + 2);
      if (id == 0x0001) {
        uint64_t field = x + 4;
        if (size == 0xFFFFFFFF) size = bytes.u64(field), field += 8;
        if (compressed == 0xFFFFFFFF) compressed = bytes.u64(field), field += 8;
        if (local == 0xFFFFFFFF) local = bytes.u64(field);
      }
      x += 4 + length;
    }
    if (bytes.u32(local) != 0x04034b50) bytes.fail("record '" + name + "' has no local header");
    const uint64_t start = local + 30 + bytes.u16(local + 26) + bytes.u16(local + 28);
    if (start > data.size() || compressed > data.size() - start) bytes.fail("record '" + name + "' runs past the end of the file");
    uint32_t actual = 0;
    if (method == 0) {
      if (compressed != size) bytes.fail("stored record '" + name + "' has two different sizes");
      actual = crc_of(data.data() + start, size);
    } else if (method == 8) {
      if (!inflated_crc(data.data() + start, compressed, size, &actual)) bytes.fail("record '" + name + "' does not inflate");
    } else {
      bytes.fail("record '" + name + "' uses compression method " + std::to_string(method));
    }
    if (actual != crc) bytes.fail("record '" + name + "' fails its CRC-32 check");
    at += 46 + name_length + extra_length + comment_length;
  }
  if (at != directory + directory_size) bytes.fail("the central directory's size does not match its entries");
  return data;
}

}  // namespace distillery::train
