// Data layer: IDX files (plain and gzip), datasets, class filters, validation splits, batched jitter.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <zlib.h>

#include <ATen/CPUGeneratorImpl.h>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "distillery/data/augment.h"
#include "distillery/data/dataset.h"
#include "distillery/data/idx.h"
#include "distillery/data/image_folder.h"
#include "distillery/data/tensor_file.h"
#include "distillery/report/image.h"
#include "distillery/error.h"
#include "test_support.h"

namespace distillery::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// ---------------------------------------------------------------------------------------------
// IDX helpers

std::string big_endian32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

/// An IDX header: two zero bytes, the element type code, the number of dimensions, the sizes.
std::string idx_header(uint8_t type, const std::vector<uint32_t>& dims) {
  std::string header = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
  for (auto d : dims) header += big_endian32(d);
  return header;
}

void write_gzip(const std::string& path, const std::string& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr) << path;
  ASSERT_EQ(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(file), Z_OK);
}

std::set<int64_t> as_set(const torch::Tensor& values) {
  auto flat = values.to(torch::kInt64).contiguous();
  return std::set<int64_t>(flat.data_ptr<int64_t>(), flat.data_ptr<int64_t>() + flat.numel());
}

class IdxTest : public SeededTest {
 protected:
  TempDir dir_;
};

TEST_F(IdxTest, PlainFileRoundTrips) {
  auto values = torch::randint(0, 256, {3, 4, 5}, torch::kUInt8);
  const auto path = dir_.file("values-idx3-ubyte");
  data::write_idx(path, values);
  EXPECT_EQ(read_bytes(path).size(), 4u + 3 * 4 + 3 * 4 * 5);
  auto read = data::read_idx(path);
  EXPECT_EQ(read.scalar_type(), torch::kUInt8);
  EXPECT_EQ(read.sizes(), values.sizes());
  EXPECT_TRUE(torch::equal(read, values));
}

TEST_F(IdxTest, GzipFileReadsTheSameAsPlain) {
  auto values = torch::randint(0, 256, {7, 28, 28}, torch::kUInt8);
  const auto plain = dir_.file("images-idx3-ubyte");
  const auto gz = dir_.file("images-idx3-ubyte.gz");
  data::write_idx(plain, values);
  write_gzip(gz, read_bytes(plain));
  ASSERT_EQ(static_cast<unsigned char>(read_bytes(gz)[0]), 0x1f);  // really compressed
  auto from_gz = data::read_idx(gz);
  EXPECT_EQ(from_gz.sizes(), values.sizes());
  EXPECT_TRUE(torch::equal(from_gz, values));
  EXPECT_TRUE(torch::equal(from_gz, data::read_idx(plain)));
}

TEST_F(IdxTest, MultiByteElementsAreBigEndian) {
  {
    std::string bytes = idx_header(0x0C, {3}) + big_endian32(1) + big_endian32(0xFFFFFFFEu) + big_endian32(0x01020304);
    auto v = data::parse_idx(bytes, "int32");
    ASSERT_EQ(v.scalar_type(), torch::kInt32);
    EXPECT_EQ(v[0].item<int32_t>(), 1);
    EXPECT_EQ(v[1].item<int32_t>(), -2);
    EXPECT_EQ(v[2].item<int32_t>(), 0x01020304);
  }
  {
    std::string bytes = idx_header(0x0B, {2}) + std::string{0x01, 0x02} + std::string{static_cast<char>(0xFF), 0x00};
    auto v = data::parse_idx(bytes, "int16");
    ASSERT_EQ(v.scalar_type(), torch::kInt16);
    EXPECT_EQ(v[0].item<int16_t>(), 0x0102);
    EXPECT_EQ(v[1].item<int16_t>(), -256);
  }
  {
    // 1.5f = 0x3FC00000, -2.0f = 0xC0000000.
    std::string bytes = idx_header(0x0D, {1, 2}) + big_endian32(0x3FC00000u) + big_endian32(0xC0000000u);
    auto v = data::parse_idx(bytes, "float32");
    ASSERT_EQ(v.scalar_type(), torch::kFloat32);
    ASSERT_EQ(v.sizes(), (std::vector<int64_t>{1, 2}));
    EXPECT_EQ(v[0][0].item<float>(), 1.5f);
    EXPECT_EQ(v[0][1].item<float>(), -2.0f);
  }
  {
    // 0.25 = 0x3FD0000000000000.
    std::string bytes = idx_header(0x0E, {1}) + big_endian32(0x3FD00000u) + big_endian32(0);
    auto v = data::parse_idx(bytes, "float64");
    ASSERT_EQ(v.scalar_type(), torch::kFloat64);
    EXPECT_EQ(v[0].item<double>(), 0.25);
  }
}

TEST_F(IdxTest, EachBadFileThrowsInputErrorNamingTheFile) {
  const std::string good_payload(6, '\x07');
  struct Case {
    std::string name;
    std::string bytes;
    std::string expected;  // a phrase of the message that says what is wrong
  };
  const std::vector<Case> cases = {
      {"wrong-magic", std::string{1, 0, 8, 1} + big_endian32(1) + "x", "magic"},
      {"wrong-magic-second-byte", std::string{0, 3, 8, 1} + big_endian32(1) + "x", "magic"},
      {"unknown-type", idx_header(0x07, {1}) + "x", "element type"},
      {"zero-dimensions", idx_header(0x08, {}), "0 dimensions"},
      {"truncated-data", idx_header(0x08, {2, 3}) + good_payload.substr(1), "truncated"},
      {"trailing-bytes", idx_header(0x08, {2, 3}) + good_payload + "z", "trailing bytes"},
      {"empty", "", "empty"},
      {"too-short", std::string{0, 0}, "too short"},
      {"header-truncated", idx_header(0x08, {2, 3, 4}).substr(0, 10), "header"},
      {"header-only-bytes-missing", idx_header(0x0C, {2}) + std::string(7, '\0'), "truncated"},
      // 2^20 * 2^20 * 2^24 elements: a product that wraps around to 0 in 64 bits.
      {"overflowing-dimensions", idx_header(0x08, {1u << 20, 1u << 20, 1u << 24}), "implausibly large"},
      {"huge-dimensions", idx_header(0x08, {0xFFFFFFFFu, 0xFFFFFFFFu}) + "x", "implausibly large"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const auto path = dir_.file(c.name + "-idx");
    write_bytes(path, c.bytes);
    const auto message = input_error_message([&] { data::read_idx(path); });
    EXPECT_THAT(message, HasSubstr(path));
    EXPECT_THAT(message, HasSubstr(c.expected));
    // parse_idx names its source the same way.
    EXPECT_THAT(input_error_message([&] { data::parse_idx(c.bytes, "<memory>"); }), HasSubstr("<memory>"));
  }
}

TEST_F(IdxTest, CorruptGzipThrowsInputErrorNamingTheFile) {
  // A good gzip stream of an IDX file, to damage in several ways.
  auto values = torch::randint(0, 256, {50, 28, 28}, torch::kUInt8);  // random: compresses little
  const auto plain = dir_.file("plain-idx");
  data::write_idx(plain, values);
  const auto good_gz = dir_.file("good.gz");
  write_gzip(good_gz, read_bytes(plain));
  const std::string gz = read_bytes(good_gz);
  ASSERT_GT(gz.size(), 1000u);
  ASSERT_TRUE(torch::equal(data::read_idx(good_gz), values));

  // A valid 10-byte gzip header (deflate, no flags, OS unix), then bytes that are not deflate data:
  // 0xFF starts a final block of the reserved type 3.
  const std::string gzip_header = {0x1f, static_cast<char>(0x8b), 0x08, 0, 0, 0, 0, 0, 0, 0x03};
  std::string flipped_crc = gz;
  flipped_crc[gz.size() - 6] ^= 0x5A;  // inside the CRC-32 of the trailer
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"garbage-after-header.gz", gzip_header + std::string(64, static_cast<char>(0xFF))},
      {"only-header.gz", gzip_header},
      {"only-magic.gz", std::string{0x1f, static_cast<char>(0x8b)}},
      {"truncated-half.gz", gz.substr(0, gz.size() / 2)},
      {"truncated-trailer.gz", gz.substr(0, gz.size() - 3)},
      {"bad-crc.gz", flipped_crc},
  };
  for (const auto& [name, bytes] : cases) {
    SCOPED_TRACE(name);
    const auto path = dir_.file(name);
    write_bytes(path, bytes);
    const auto message = input_error_message([&] { data::read_idx(path); });
    EXPECT_THAT(message, HasSubstr(path));
    EXPECT_THAT(message, HasSubstr("gzip"));
  }
}

TEST_F(IdxTest, BadIdxInsideGoodGzipNamesTheGzipFile) {
  const auto path = dir_.file("trailing.gz");
  write_gzip(path, idx_header(0x08, {2}) + "abc");
  const auto message = input_error_message([&] { data::read_idx(path); });
  EXPECT_THAT(message, HasSubstr(path));
  EXPECT_THAT(message, HasSubstr("trailing bytes"));
}

TEST_F(IdxTest, MissingFileThrowsInputErrorNamingTheFile) {
  const auto path = dir_.file("does-not-exist");
  EXPECT_THAT(input_error_message([&] { data::read_idx(path); }), HasSubstr(path));
}

// ---------------------------------------------------------------------------------------------
// Datasets

class DatasetTest : public SeededTest {
 protected:
  TempDir dir_;
};

TEST_F(DatasetTest, LoadIdxDatasetScalesImagesAndAddsAChannel) {
  auto images = torch::randint(0, 256, {3, 4, 5}, torch::kUInt8);
  images[0][0][0] = 255;
  images[1][0][0] = 0;
  auto labels = torch::tensor({2, 0, 9}, torch::kUInt8);
  const auto images_path = dir_.file("images"), labels_path = dir_.file("labels");
  data::write_idx(images_path, images);
  data::write_idx(labels_path, labels);
  auto dataset = data::load_idx_dataset(images_path, labels_path);
  EXPECT_EQ(dataset.size(), 3);
  EXPECT_EQ(dataset.images.sizes(), (std::vector<int64_t>{3, 1, 4, 5}));
  EXPECT_EQ(dataset.images.scalar_type(), torch::kFloat32);
  EXPECT_EQ(dataset.labels.scalar_type(), torch::kInt64);
  EXPECT_TRUE(torch::allclose(dataset.images.squeeze(1), images.to(torch::kFloat32) / 255.0));
  EXPECT_EQ(dataset.images[0][0][0][0].item<float>(), 1.0f);
  EXPECT_EQ(dataset.images[1][0][0][0].item<float>(), 0.0f);
  EXPECT_TRUE(torch::equal(dataset.labels, torch::tensor({2, 0, 9}, torch::kInt64)));
}

TEST_F(DatasetTest, CountMismatchNamesBothFiles) {
  const auto images_path = dir_.file("three-images"), labels_path = dir_.file("four-labels");
  data::write_idx(images_path, torch::zeros({3, 4, 4}, torch::kUInt8));
  data::write_idx(labels_path, torch::zeros({4}, torch::kUInt8));
  const auto message = input_error_message([&] { data::load_idx_dataset(images_path, labels_path); });
  EXPECT_THAT(message, HasSubstr(images_path));
  EXPECT_THAT(message, HasSubstr(labels_path));
  EXPECT_THAT(message, HasSubstr("3"));
  EXPECT_THAT(message, HasSubstr("4"));
}

TEST_F(DatasetTest, WrongDimensionsNameTheFile) {
  const auto images_path = dir_.file("images"), labels_path = dir_.file("labels-2d");
  data::write_idx(images_path, torch::zeros({3, 4, 4}, torch::kUInt8));
  data::write_idx(labels_path, torch::zeros({3, 2}, torch::kUInt8));
  EXPECT_THAT(input_error_message([&] { data::load_idx_dataset(images_path, labels_path); }),
              HasSubstr(labels_path));
  const auto flat_images = dir_.file("images-1d");
  data::write_idx(flat_images, torch::zeros({3}, torch::kUInt8));
  EXPECT_THAT(input_error_message([&] { data::load_idx_dataset(flat_images, labels_path); }),
              HasSubstr(flat_images));
}

TEST_F(DatasetTest, LoadDatasetRejectsUnknownNamesAndMissingFiles) {
  EXPECT_THAT(input_error_message([&] { data::load_dataset("cifar", "train", dir_.path().string()); }),
              HasSubstr("cifar"));
  EXPECT_THAT(input_error_message([&] { data::load_dataset("mnist", "valid", dir_.path().string()); }),
              HasSubstr("valid"));
  // An empty data folder: the message says where it looked.
  EXPECT_THAT(input_error_message([&] { data::load_dataset("mnist", "train", dir_.path().string()); }),
              HasSubstr(dir_.path().string()));
}

TEST_F(DatasetTest, LoadDatasetFindsGzipFiles) {
  const auto mnist = dir_.path() / "mnist";
  std::filesystem::create_directories(mnist);
  auto images = torch::randint(0, 256, {6, 28, 28}, torch::kUInt8);
  auto labels = torch::randint(0, 10, {6}, torch::kUInt8);
  data::write_idx(dir_.file("plain-images"), images);
  data::write_idx(dir_.file("plain-labels"), labels);
  write_gzip((mnist / "t10k-images-idx3-ubyte.gz").string(), read_bytes(dir_.file("plain-images")));
  write_gzip((mnist / "t10k-labels-idx1-ubyte.gz").string(), read_bytes(dir_.file("plain-labels")));
  auto dataset = data::load_dataset("mnist", "test", dir_.path().string());
  EXPECT_EQ(dataset.size(), 6);
  EXPECT_TRUE(torch::equal(dataset.labels, labels.to(torch::kInt64)));
  EXPECT_TRUE(torch::allclose(dataset.images.squeeze(1), images.to(torch::kFloat32) / 255.0));
}

TEST(ResolveDataDirTest, FlagThenEnvironmentThenDefault) {
  const char* old = std::getenv("DISTILLERY_DATA");
  const std::string saved = old ? old : "";
  ::setenv("DISTILLERY_DATA", "/from/env", 1);
  EXPECT_EQ(data::resolve_data_dir("/from/flag"), "/from/flag");
  EXPECT_EQ(data::resolve_data_dir(), "/from/env");
  ::unsetenv("DISTILLERY_DATA");
  EXPECT_EQ(data::resolve_data_dir(), "data");
  if (old) ::setenv("DISTILLERY_DATA", saved.c_str(), 1);
}

TEST(MnistTest, TrainAndTestSplitsHaveTheKnownShapeAndValues) {
  DISTILLERY_REQUIRE_MNIST();
  const auto dir = data::resolve_data_dir();
  auto train = data::load_dataset("mnist", "train", dir);
  auto test = data::load_dataset("mnist", "test", dir);
  EXPECT_EQ(train.size(), 60000);
  EXPECT_EQ(test.size(), 10000);
  EXPECT_EQ(train.images.sizes(), (std::vector<int64_t>{60000, 1, 28, 28}));
  EXPECT_EQ(test.images.sizes(), (std::vector<int64_t>{10000, 1, 28, 28}));
  for (const auto* split : {&train, &test}) {
    EXPECT_EQ(split->images.scalar_type(), torch::kFloat32);
    EXPECT_EQ(split->labels.scalar_type(), torch::kInt64);
    EXPECT_EQ(split->images.min().item<float>(), 0.0f);
    EXPECT_EQ(split->images.max().item<float>(), 1.0f);
    EXPECT_EQ(split->labels.min().item<int64_t>(), 0);
    EXPECT_EQ(split->labels.max().item<int64_t>(), 9);
    // Every class is well represented.
    auto counts = torch::bincount(split->labels, {}, 10);
    EXPECT_GT(counts.min().item<int64_t>(), split->size() / 20);
  }
  // The first labels of the original files.
  EXPECT_TRUE(torch::equal(train.labels.slice(0, 0, 5), torch::tensor({5, 0, 4, 1, 9}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(test.labels.slice(0, 0, 5), torch::tensor({7, 2, 1, 0, 4}, torch::kInt64)));
  EXPECT_EQ(train.labels.eq(1).sum().item<int64_t>(), 6742);  // the largest class
}

/// 20 examples whose single pixel holds the example's index; label = index % 10.
data::Dataset numbered_dataset(int64_t n = 20) {
  auto ids = torch::arange(n, torch::kInt64);
  return {ids.to(torch::kFloat32).view({n, 1, 1, 1}), ids.remainder(10)};
}

torch::Tensor ids_of(const data::Dataset& dataset) {
  return dataset.images.flatten().round().to(torch::kInt64);
}

TEST_F(DatasetTest, HeadAndSubset) {
  auto dataset = numbered_dataset();
  EXPECT_TRUE(torch::equal(ids_of(dataset.head(5)), torch::arange(5, torch::kInt64)));
  EXPECT_EQ(dataset.head(0).size(), 20);
  EXPECT_EQ(dataset.head(100).size(), 20);
  auto picked = dataset.subset(torch::tensor({7, 2, 7}, torch::kInt64));
  EXPECT_TRUE(torch::equal(ids_of(picked), torch::tensor({7, 2, 7}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(picked.labels, torch::tensor({7, 2, 7}, torch::kInt64)));
}

TEST_F(DatasetTest, KeepAndOmitClassesPartitionTheDataset) {
  auto dataset = numbered_dataset();
  auto kept = data::keep_classes(dataset, {1, 3});
  auto omitted = data::omit_classes(dataset, {1, 3});
  EXPECT_TRUE(torch::equal(ids_of(kept), torch::tensor({1, 3, 11, 13}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(kept.labels, torch::tensor({1, 3, 1, 3}, torch::kInt64)));
  EXPECT_EQ(kept.size() + omitted.size(), dataset.size());
  EXPECT_EQ(omitted.size(), 16);
  EXPECT_FALSE(omitted.labels.eq(1).any().item<bool>());
  EXPECT_FALSE(omitted.labels.eq(3).any().item<bool>());
  // Images stay with their labels.
  EXPECT_TRUE(torch::equal(ids_of(omitted).remainder(10), omitted.labels));
  auto all_ids = as_set(torch::cat({ids_of(kept), ids_of(omitted)}));
  EXPECT_EQ(all_ids.size(), 20u);
  EXPECT_EQ(data::keep_classes(dataset, {}).size(), 0);
  EXPECT_EQ(data::omit_classes(dataset, {}).size(), 20);
}

TEST_F(DatasetTest, SplitValidationIsSeededAndDisjoint) {
  auto dataset = numbered_dataset();
  auto [train, validation] = data::split_validation(dataset, 5, 42);
  EXPECT_EQ(train.size(), 15);
  EXPECT_EQ(validation.size(), 5);
  auto train_ids = as_set(ids_of(train)), validation_ids = as_set(ids_of(validation));
  EXPECT_EQ(train_ids.size(), 15u);  // no duplicates
  EXPECT_EQ(validation_ids.size(), 5u);
  std::set<int64_t> all = train_ids;
  all.insert(validation_ids.begin(), validation_ids.end());
  EXPECT_EQ(all.size(), 20u);  // disjoint and complete
  EXPECT_TRUE(torch::equal(ids_of(train).remainder(10), train.labels));
  EXPECT_TRUE(torch::equal(ids_of(validation).remainder(10), validation.labels));

  // Same seed, same split; another seed, another split.
  auto [train2, validation2] = data::split_validation(dataset, 5, 42);
  EXPECT_TRUE(torch::equal(ids_of(train2), ids_of(train)));
  EXPECT_TRUE(torch::equal(ids_of(validation2), ids_of(validation)));
  auto [train3, validation3] = data::split_validation(dataset, 5, 43);
  EXPECT_NE(as_set(ids_of(validation3)), validation_ids);
  // Not simply the first or last examples.
  EXPECT_NE(validation_ids, (std::set<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_NE(validation_ids, (std::set<int64_t>{15, 16, 17, 18, 19}));
}

TEST_F(DatasetTest, SplitValidationEdgeCases) {
  auto dataset = numbered_dataset();
  auto [all, none] = data::split_validation(dataset, 0, 1);
  EXPECT_EQ(all.size(), 20);
  EXPECT_EQ(none.size(), 0);
  EXPECT_THAT(input_error_message([&] { data::split_validation(dataset, 20, 1); }), HasSubstr("data.validation"));
}

// ---------------------------------------------------------------------------------------------
// Augmentation. Convention (src/data/augment.cpp): output[y][x] = input[y - dy][x - dx], zero outside;
// a positive dy moves content down, a positive dx moves it right.

class AugmentTest : public SeededTest {};

torch::Tensor shifts_of(const std::vector<std::pair<int64_t, int64_t>>& pairs) {
  std::vector<int64_t> flat;
  for (auto [dy, dx] : pairs) flat.push_back(dy), flat.push_back(dx);
  return torch::tensor(flat, torch::kInt64).view({static_cast<int64_t>(pairs.size()), 2});
}

TEST_F(AugmentTest, ShiftMovesABrightPixelWhereExpected) {
  auto images = torch::zeros({4, 1, 7, 9});
  images.select(2, 3).select(2, 4).fill_(1.0);  // pixel (row 3, column 4) of every image
  auto shifts = shifts_of({{1, 2}, {-2, -1}, {0, 0}, {2, -2}});
  auto out = data::shift_images(images, shifts, /*max_shift=*/2);
  ASSERT_EQ(out.sizes(), images.sizes());
  const std::vector<std::pair<int64_t, int64_t>> expected = {{4, 6}, {1, 3}, {3, 4}, {5, 2}};
  for (int64_t b = 0; b < 4; ++b) {
    SCOPED_TRACE(b);
    EXPECT_EQ(out[b].sum().item<float>(), 1.0f);
    EXPECT_EQ(out[b][0][expected[b].first][expected[b].second].item<float>(), 1.0f);
  }
}

TEST_F(AugmentTest, ShiftFillsTheBorderWithZeros) {
  auto images = torch::ones({3, 2, 6, 6});
  auto out = data::shift_images(images, shifts_of({{1, 0}, {0, -2}, {-1, 1}}), 2);
  // Down by one: row 0 empty.
  EXPECT_EQ(out[0].select(1, 0).abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(out[0].slice(1, 1).min().item<float>(), 1.0f);
  // Left by two: the last two columns empty.
  EXPECT_EQ(out[1].slice(2, 4).abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(out[1].slice(2, 0, 4).min().item<float>(), 1.0f);
  // Up one, right one: last row and first column empty, 5x5 ones left, in both channels.
  EXPECT_EQ(out[2].sum().item<float>(), 2 * 25.0f);
  EXPECT_EQ(out[2].select(1, 5).abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(out[2].select(2, 0).abs().sum().item<float>(), 0.0f);
}

TEST_F(AugmentTest, ZeroShiftIsIdentity) {
  auto images = torch::rand({5, 3, 8, 8});
  EXPECT_TRUE(torch::equal(data::shift_images(images, torch::zeros({5, 2}, torch::kInt64), 3), images));
  // max_shift 0 leaves images untouched.
  EXPECT_TRUE(torch::equal(data::shift_images(images, torch::zeros({5, 2}, torch::kInt64), 0), images));
}

TEST_F(AugmentTest, ShiftMatchesAPerPixelReference) {
  const int64_t batch = 6, channels = 2, height = 5, width = 7, max_shift = 2;
  auto images = torch::rand({batch, channels, height, width});
  auto generator = at::make_generator<at::CPUGeneratorImpl>(11);
  auto shifts = data::random_shifts(batch, max_shift, generator);
  auto out = data::shift_images(images, shifts, max_shift);
  auto in_a = images.accessor<float, 4>();
  auto out_a = out.accessor<float, 4>();
  auto s = shifts.accessor<int64_t, 2>();
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t c = 0; c < channels; ++c) {
      for (int64_t y = 0; y < height; ++y) {
        for (int64_t x = 0; x < width; ++x) {
          const int64_t sy = y - s[b][0], sx = x - s[b][1];
          const float expected = (sy >= 0 && sy < height && sx >= 0 && sx < width) ? in_a[b][c][sy][sx] : 0.0f;
          ASSERT_EQ(out_a[b][c][y][x], expected) << "b=" << b << " c=" << c << " y=" << y << " x=" << x;
        }
      }
    }
  }
}

TEST_F(AugmentTest, ShiftIgnoresLayoutAndDtype) {
  auto images = torch::rand({4, 3, 6, 5});
  auto shifts = shifts_of({{1, -1}, {-2, 2}, {0, 1}, {2, 0}});
  const auto expected = data::shift_images(images, shifts, 2);
  // A non-contiguous view of the same values, and the same images in double and bf16.
  auto strided = images.transpose(2, 3).contiguous().transpose(2, 3);
  ASSERT_FALSE(strided.is_contiguous());
  EXPECT_TRUE(torch::equal(data::shift_images(strided, shifts, 2), expected));
  EXPECT_TRUE(torch::equal(data::shift_images(images.to(torch::kDouble), shifts, 2), expected.to(torch::kDouble)));
  EXPECT_TRUE(torch::equal(data::shift_images(images.to(torch::kBFloat16), shifts, 2), expected.to(torch::kBFloat16)));
}

TEST_F(AugmentTest, ShiftChecksShapes) {
  EXPECT_THROW(data::shift_images(torch::zeros({2, 5, 5}), torch::zeros({2, 2}, torch::kInt64), 1), c10::Error);
  EXPECT_THROW(data::shift_images(torch::zeros({2, 1, 5, 5}), torch::zeros({3, 2}, torch::kInt64), 1), c10::Error);
}

TEST_F(AugmentTest, RandomShiftsAreBoundedAndReachBothExtremes) {
  const int64_t max_shift = 2;
  auto generator = at::make_generator<at::CPUGeneratorImpl>(123);
  auto shifts = data::random_shifts(5000, max_shift, generator);
  ASSERT_EQ(shifts.sizes(), (std::vector<int64_t>{5000, 2}));
  ASSERT_EQ(shifts.scalar_type(), torch::kInt64);
  for (int64_t axis = 0; axis < 2; ++axis) {
    SCOPED_TRACE(axis);
    auto column = shifts.select(1, axis);
    EXPECT_EQ(column.min().item<int64_t>(), -max_shift);
    EXPECT_EQ(column.max().item<int64_t>(), max_shift);
    // Roughly uniform: each of the 5 values about 1000 times.
    auto counts = torch::bincount(column + max_shift, {}, 2 * max_shift + 1);
    EXPECT_GT(counts.min().item<int64_t>(), 800);
  }
  // Seeded: the same generator seed gives the same shifts.
  auto again = at::make_generator<at::CPUGeneratorImpl>(123);
  EXPECT_TRUE(torch::equal(data::random_shifts(5000, max_shift, again), shifts));
}

TEST_F(AugmentTest, ShiftIdsAreUniqueAndInRange) {
  for (int64_t max_shift : {0, 1, 3}) {
    SCOPED_TRACE(max_shift);
    std::vector<std::pair<int64_t, int64_t>> all;
    for (int64_t dy = -max_shift; dy <= max_shift; ++dy) {
      for (int64_t dx = -max_shift; dx <= max_shift; ++dx) all.emplace_back(dy, dx);
    }
    auto ids = data::shift_ids(shifts_of(all), max_shift);
    const int64_t side = 2 * max_shift + 1;
    ASSERT_EQ(ids.size(0), side * side);
    EXPECT_EQ(ids.min().item<int64_t>(), 0);
    EXPECT_EQ(ids.max().item<int64_t>(), side * side - 1);
    EXPECT_EQ(as_set(ids).size(), static_cast<size_t>(side * side));
  }
  EXPECT_EQ(data::shift_ids(shifts_of({{0, 0}}), 1).item<int64_t>(), 4);  // the centre of 3x3
}

// Flips mirror about half the images left-right and name each image's view: shift id times two
// plus the flip, drawn after the shifts from the same generator, so a step's batch repeats exactly.
TEST_F(AugmentTest, FlipsMirrorHalfTheImagesAndNameTheirViews) {
  const auto images = torch::rand({64, 2, 5, 5});
  const data::Augmentation augmentation{1, true};
  EXPECT_EQ(augmentation.view_count(), 18);
  auto generator = at::make_generator<at::CPUGeneratorImpl>(11);
  const auto out = data::augment(images, augmentation, generator);
  auto replay = at::make_generator<at::CPUGeneratorImpl>(11);
  const auto shifts = data::random_shifts(64, 1, replay);
  const auto flips = torch::randint(0, 2, {64}, replay, torch::kInt64);
  const auto shifted = data::shift_images(images, shifts, 1);
  EXPECT_TRUE(torch::equal(out.views, data::shift_ids(shifts, 1) * 2 + flips));
  int64_t flipped = 0;
  for (int64_t i = 0; i < 64; ++i) {
    const bool flip = flips[i].item<int64_t>() == 1;
    flipped += flip;
    EXPECT_TRUE(torch::equal(out.images[i], flip ? shifted[i].flip({2}) : shifted[i])) << i;
  }
  EXPECT_GT(flipped, 16);
  EXPECT_LT(flipped, 48);

  // Flips alone: views 0 and 1; no augmentation: the images themselves, all view 0.
  auto flip_only = at::make_generator<at::CPUGeneratorImpl>(3);
  EXPECT_EQ(as_set(data::augment(images, {0, true}, flip_only).views), (std::set<int64_t>{0, 1}));
  auto none = at::make_generator<at::CPUGeneratorImpl>(3);
  const auto unchanged = data::augment(images, {}, none);
  EXPECT_TRUE(torch::equal(unchanged.images, images));
  EXPECT_EQ(as_set(unchanged.views), (std::set<int64_t>{0}));
}

// ---------------------------------------------------------------------------------------------
// Tensor files

TEST(TensorFileTest, WhatIsWrittenIsReadBack) {
  TempDir dir;
  const auto images = torch::randint(0, 256, {6, 3, 4, 4}, torch::kUInt8);
  const auto labels = torch::tensor({0, 2, 1, 1, 0, 2}, torch::kInt64);
  data::write_tensor_file(dir.file("set.pt"), {images, labels, {"cat", "dog", "emu"}, {}, {}});
  const auto back = data::read_tensor_file(dir.file("set.pt"));
  EXPECT_TRUE(torch::equal(back.images, images));
  EXPECT_TRUE(torch::equal(back.labels, labels));
  EXPECT_EQ(back.classes, (std::vector<std::string>{"cat", "dog", "emu"}));

  // Unlabeled, gray [N, H, W] float: a channel is added, the labels stay undefined.
  data::write_tensor_file(dir.file("gray.pt"), {torch::rand({5, 7, 7}, torch::kFloat64), {}, {}, {}, {}});
  const auto gray = data::read_tensor_file(dir.file("gray.pt"));
  EXPECT_EQ(gray.images.sizes(), (std::vector<int64_t>{5, 1, 7, 7}));
  EXPECT_EQ(gray.images.scalar_type(), torch::kFloat32);
  EXPECT_FALSE(gray.labels.defined());
}

TEST(TensorFileTest, BadFilesAreNamedWithWhatIsWrong) {
  TempDir dir;
  const auto error_for = [&](const data::TensorFile& contents) {
    data::write_tensor_file(dir.file("bad.pt"), contents);
    return input_error_message([&] { data::read_tensor_file(dir.file("bad.pt")); });
  };
  const auto images = torch::zeros({4, 1, 3, 3}, torch::kUInt8);
  EXPECT_THAT(error_for({torch::zeros({4}), {}, {}, {}, {}}), AllOf(HasSubstr("bad.pt"), HasSubstr("'images' must be [N, C, H, W]")));
  EXPECT_THAT(error_for({images.to(torch::kInt32), {}, {}, {}, {}}), HasSubstr("uint8 (0-255) or float"));
  EXPECT_THAT(error_for({torch::full({2, 1, 2, 2}, std::nan("")), {}, {}, {}, {}}), HasSubstr("NaN"));
  EXPECT_THAT(error_for({images, torch::zeros({3}, torch::kInt64), {}, {}, {}}), HasSubstr("'labels' must be [4]"));
  EXPECT_THAT(error_for({images, torch::zeros({4}), {}, {}, {}}), HasSubstr("'labels' must hold integers"));
  EXPECT_THAT(error_for({images, torch::tensor({0, 1, 2, 1}), {"a", "b"}, {}, {}}), HasSubstr("label 2 at index 2 is outside the classes 0-1"));
  write_bytes(dir.file("text.pt"), "not a zip");
  EXPECT_THAT(input_error_message([&] { data::read_tensor_file(dir.file("text.pt")); }),
              AllOf(HasSubstr("text.pt"), HasSubstr("not a file written by torch.save")));
  EXPECT_THAT(input_error_message([&] { data::read_tensor_file(dir.file("missing.pt")); }), HasSubstr("no such file"));
}

// ---------------------------------------------------------------------------------------------
// Image folders

// Writes uint8 [C, H, W] as a PNG (exact: write_png rounds v / 255 * 255 back to v).
void write_image(const std::string& path, const torch::Tensor& pixels) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  report::write_png(path, pixels.to(torch::kFloat32).div(255));
}

torch::Tensor random_pixels(int64_t c, int64_t h, int64_t w, uint64_t seed) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  return torch::randint(0, 256, {c, h, w}, generator, torch::kUInt8);
}

// Classes and files in torchvision's order: class folders by code point (capitals first), each
// class's files by folder then name, nested folders after the class folder's own files.
TEST(ImageFolderTest, ClassesAndFilesFollowTorchvisionsOrder) {
  TempDir dir;
  for (const char* file : {"b/2.png", "b/10.png", "a/z.png", "a/sub/a.png", "B/x.PNG"}) {
    write_image(dir.file(file), random_pixels(1, 4, 4, 1));
  }
  write_bytes(dir.file("a/notes.txt"), "not an image");
  const auto folder = data::load_image_folder(dir.path().string(), {}, true, data::OnBadImage::Error);
  EXPECT_EQ(folder.classes, (std::vector<std::string>{"B", "a", "b"}));
  std::vector<std::string> names;
  for (const auto& f : folder.files) names.push_back(std::filesystem::relative(f, dir.path()).string());
  EXPECT_EQ(names, (std::vector<std::string>{"B/x.PNG", "a/z.png", "a/sub/a.png", "b/10.png", "b/2.png"}));
  EXPECT_TRUE(torch::equal(folder.labels, torch::tensor({0, 1, 1, 2, 2}, torch::kInt64)));
  EXPECT_EQ(folder.images.scalar_type(), torch::kUInt8);
  EXPECT_EQ(folder.images.sizes(), (std::vector<int64_t>{5, 1, 4, 4}));

  // A test folder takes the training folder's class list; a class it does not know is an error.
  const auto test = data::load_image_folder(dir.file("b"), {}, false, data::OnBadImage::Error);
  EXPECT_FALSE(test.labels.defined());
  EXPECT_TRUE(test.classes.empty());
  EXPECT_THAT(input_error_message([&] {
                data::load_image_folder(dir.path().string(), {}, true, data::OnBadImage::Error, {"a", "b"});
              }),
              AllOf(HasSubstr("'B'"), HasSubstr(dir.path().string())));
}

// Pixels arrive exactly; gray and RGB convert as PIL converts; resize and centre crop give the
// shapes torchvision's Resize(int) and CenterCrop give.
TEST(ImageFolderTest, DecodingConvertsAndResizesAsTorchvisionDoes) {
  TempDir dir;
  const auto rgb = random_pixels(3, 6, 10, 2);
  write_image(dir.file("rgb.png"), rgb);
  EXPECT_TRUE(torch::equal(data::decode_image(dir.file("rgb.png"), {}), rgb));
  const auto as_gray = data::decode_image(dir.file("rgb.png"), {1, 0, 0});
  const auto r = int64_t{rgb[0][2][3].item<uint8_t>()}, g = int64_t{rgb[1][2][3].item<uint8_t>()}, b = int64_t{rgb[2][2][3].item<uint8_t>()};
  EXPECT_EQ(as_gray[0][2][3].item<uint8_t>(), (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16);
  const auto gray = random_pixels(1, 6, 10, 3);
  write_image(dir.file("gray.png"), gray);
  const auto as_rgb = data::decode_image(dir.file("gray.png"), {3, 0, 0});
  EXPECT_TRUE(torch::equal(as_rgb[2], gray[0]));
  // Resize(4) of 6 x 10: the shorter side 4, the longer int(4 * 10 / 6) = 6; CenterCrop(4) then.
  EXPECT_EQ(data::decode_image(dir.file("rgb.png"), {0, 4, 0}).sizes(), (std::vector<int64_t>{3, 4, 6}));
  EXPECT_EQ(data::decode_image(dir.file("rgb.png"), {0, 4, 4}).sizes(), (std::vector<int64_t>{3, 4, 4}));
  // Centre crop without resize: rows 1-4 of 6, columns round((10 - 4) / 2) = 3 to 6.
  EXPECT_TRUE(torch::equal(data::decode_image(dir.file("rgb.png"), {0, 0, 4}), rgb.slice(1, 1, 5).slice(2, 3, 7)));
  // A uniform image stays uniform through the antialiased resize.
  write_image(dir.file("flat.png"), torch::full({1, 30, 40}, 77, torch::kUInt8));
  const auto flat = data::decode_image(dir.file("flat.png"), {0, 9, 0});
  EXPECT_EQ(flat.sizes(), (std::vector<int64_t>{1, 9, 12}));
  EXPECT_TRUE(torch::all(flat == 77).item<bool>());
}

// Bad files never lose a run: skipped and named, or an error naming them; folders that cannot
// make a dataset say why.
TEST(ImageFolderTest, BadFilesAndFoldersAreNamed) {
  TempDir dir;
  write_image(dir.file("cats/1.png"), random_pixels(1, 4, 4, 4));
  write_image(dir.file("dogs/1.png"), random_pixels(1, 4, 4, 5));
  write_bytes(dir.file("dogs/2.png"), "\x89PNG\r\n\x1a\ntruncated");
  const auto folder = data::load_image_folder(dir.path().string(), {}, true, data::OnBadImage::Skip);
  EXPECT_EQ(folder.images.size(0), 2);
  ASSERT_EQ(folder.skipped.size(), 1u);
  EXPECT_THAT(folder.skipped[0], HasSubstr("dogs/2.png"));
  EXPECT_THAT(input_error_message([&] { data::load_image_folder(dir.path().string(), {}, true, data::OnBadImage::Error); }),
              HasSubstr("dogs/2.png"));

  std::filesystem::create_directories(dir.file("birds"));
  EXPECT_THAT(input_error_message([&] { data::load_image_folder(dir.path().string(), {}, true, data::OnBadImage::Skip); }),
              AllOf(HasSubstr("birds"), HasSubstr("holds no images")));
  std::filesystem::remove(dir.file("birds"));

  write_image(dir.file("cats/2.png"), random_pixels(3, 4, 4, 6));
  EXPECT_THAT(input_error_message([&] { data::load_image_folder(dir.path().string(), {}, true, data::OnBadImage::Skip); }),
              AllOf(HasSubstr("cats/2.png"), HasSubstr("data.channels")));
  write_image(dir.file("cats/2.png"), random_pixels(1, 5, 4, 6));
  EXPECT_THAT(input_error_message([&] { data::load_image_folder(dir.path().string(), {}, true, data::OnBadImage::Skip); }),
              AllOf(HasSubstr("cats/2.png"), HasSubstr("data.resize")));
  EXPECT_EQ(data::load_image_folder(dir.path().string(), {0, 4, 4}, true, data::OnBadImage::Skip).images.size(0), 3);

  TempDir empty;
  EXPECT_THAT(input_error_message([&] { data::load_image_folder(empty.path().string(), {}, false, data::OnBadImage::Skip); }),
              HasSubstr("no images"));
  EXPECT_THAT(input_error_message([&] { data::load_image_folder(empty.file("missing"), {}, false, data::OnBadImage::Skip); }),
              HasSubstr("no such folder"));
}

// The second load of an unchanged folder reads the cache, not the files; a file whose time changed
// is decoded again.
TEST(ImageFolderTest, DecodedFoldersAreCachedUntilAFileChanges) {
  TempDir dir, cache;
  write_image(dir.file("a/1.png"), random_pixels(1, 4, 4, 7));
  write_image(dir.file("b/1.png"), random_pixels(1, 4, 4, 8));
  const auto load = [&] {
    return data::load_image_folder(dir.path().string(), {}, true, data::OnBadImage::Error, {}, cache.path().string());
  };
  const auto first = load();
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(cache.path()), std::filesystem::directory_iterator{}), 1);

  // Same size and time, other bytes: only a cache hit can return the first pixels (decoding them
  // would fail under OnBadImage::Error).
  const auto mtime = std::filesystem::last_write_time(dir.file("a/1.png"));
  auto bytes = read_bytes(dir.file("a/1.png"));
  std::fill(bytes.begin() + 8, bytes.end(), 'x');
  write_bytes(dir.file("a/1.png"), bytes);
  std::filesystem::last_write_time(dir.file("a/1.png"), mtime);
  const auto second = load();
  EXPECT_TRUE(torch::equal(second.images, first.images));
  EXPECT_TRUE(torch::equal(second.labels, first.labels));
  EXPECT_EQ(second.files, first.files);
  EXPECT_EQ(second.classes, first.classes);

  std::filesystem::last_write_time(dir.file("a/1.png"), mtime + std::chrono::seconds(1));
  EXPECT_THAT(input_error_message(load), HasSubstr("a/1.png"));
}

// A folder larger than the memory allowed is refused before decoding, with the size it needs.
TEST(ImageFolderTest, AFolderLargerThanMaxMemoryIsRefusedBeforeDecoding) {
  TempDir dir;
  for (int i = 0; i < 4; ++i) write_image(dir.file(fmt::format("a/{}.png", i)), random_pixels(3, 16, 16, 10 + i));
  // 4 images of 3 x 16 x 16 bytes: 3,072 bytes.
  EXPECT_EQ(data::load_image_folder(dir.path().string(), {}, true, data::OnBadImage::Error, {}, "", 3072).images.size(0), 4);
  EXPECT_THAT(input_error_message([&] {
                data::load_image_folder(dir.path().string(), {}, true, data::OnBadImage::Error, {}, "", 3071);
              }),
              AllOf(HasSubstr("4 images of [3, 16, 16]"), HasSubstr("data.max_memory"), HasSubstr(dir.path().string())));
}

// A label outside 0-9 in an MNIST label file is refused when the data is loaded, naming the file
// and the index, not at the first batch that holds it.
TEST_F(DatasetTest, MnistLabelOutsideTheClassesIsRefusedAtLoad) {
  TempDir dir;
  std::filesystem::create_directories(dir.file("mnist"));
  std::string images = idx_header(0x08, {3, 28, 28}) + std::string(3 * 28 * 28, '\0');
  write_bytes(dir.file("mnist/t10k-images-idx3-ubyte"), images);
  write_bytes(dir.file("mnist/t10k-labels-idx1-ubyte"), idx_header(0x08, {3}) + std::string{1, 12, 3});
  EXPECT_THAT(input_error_message([&] { data::load_dataset("mnist", "test", dir.path().string()); }),
              AllOf(HasSubstr("t10k-labels-idx1-ubyte"), HasSubstr("label 12 at index 1")));
}

}  // namespace
}  // namespace distillery::testing
