#pragma once
// LibTorch archives (checkpoints, TorchScript modules) are zip files, and LibTorch's reader does not
// check the CRC-32 of their records: a flipped bit in a damaged file reaches its unpickler and
// TorchScript parser, which can crash the process (found by fuzz/fuzz_checkpoint). distillery
// checks every record's checksum first, so a damaged file is an error message instead.
#include <string>

namespace distillery::train {

/// Reads the file once and returns its bytes, for LibTorch to load from memory. Throws InputError
/// naming `path` and the record when the file is not a well-formed zip archive or a record's
/// CRC-32 does not match its contents.
std::string read_verified_archive(const std::string& path);

}  // namespace distillery::train
