#include "distillery/data/image_folder.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <stb_image.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>
#include <thread>

#include <sys/stat.h>

#include "distillery/data/tensor_file.h"
#include "distillery/error.h"
#include "distillery/report/metrics.h"
#include "distillery/report/progress.h"

namespace distillery::data {
namespace fs = std::filesystem;

bool is_image_file(const std::string& path) {
  std::string extension = fs::path(path).extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(), [](unsigned char c) { return std::tolower(c); });
  // torchvision's IMG_EXTENSIONS, less the formats stb cannot decode (tif, tiff, webp).
  for (const char* known : {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm"}) {
    if (extension == known) return true;
  }
  return false;
}

std::vector<std::string> find_classes(const std::string& root) {
  std::vector<std::string> classes;
  for (const auto& entry : fs::directory_iterator(root, fs::directory_options::follow_directory_symlink)) {
    if (entry.is_directory()) classes.push_back(entry.path().filename().string());
  }
  std::sort(classes.begin(), classes.end());  // byte order of UTF-8 = Python's code-point order
  return classes;
}

namespace {

// The image files under `folder` in the order torchvision's ImageFolder lists them:
// sorted(os.walk(folder)), each folder's files sorted by name.
std::vector<std::string> image_files_under(const std::string& folder) {
  std::vector<std::string> folders = {folder};
  for (const auto& entry : fs::recursive_directory_iterator(folder, fs::directory_options::follow_directory_symlink)) {
    if (entry.is_directory()) folders.push_back(entry.path().string());
  }
  std::sort(folders.begin(), folders.end());
  std::vector<std::string> files;
  for (const auto& dir : folders) {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir)) {
      if (!entry.is_directory() && is_image_file(entry.path().string())) names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    const std::string prefix = dir.back() == '/' ? dir : dir + "/";  // plain strings: fs::path parses each join
    for (const auto& name : names) files.push_back(prefix + name);
  }
  return files;
}

// Python's round(): halves to even, as torchvision's centre crop rounds.
int64_t round_half_even(double value) { return static_cast<int64_t>(std::nearbyint(value)); }

// uint8 [C, H, W] with the shorter side resized to `size`, as torchvision's Resize(size) computes
// the longer side (truncated); bilinear with antialiasing when shrinking, as PIL resamples.
torch::Tensor resize_shorter_side(const torch::Tensor& image, int64_t size) {
  const int64_t h = image.size(1), w = image.size(2);
  const int64_t shorter = std::min(h, w), longer = std::max(h, w);
  const int64_t new_longer = static_cast<int64_t>(static_cast<double>(size) * static_cast<double>(longer) / static_cast<double>(shorter));
  const int64_t new_h = h <= w ? size : new_longer, new_w = h <= w ? new_longer : size;
  if (new_h == h && new_w == w) return image;
  namespace F = torch::nn::functional;
  auto resized = F::interpolate(image.unsqueeze(0).to(torch::kFloat32),
                                F::InterpolateFuncOptions()
                                    .size(std::vector<int64_t>{new_h, new_w})
                                    .mode(torch::kBilinear)
                                    .align_corners(false)
                                    .antialias(true));
  return resized.squeeze(0).round().clamp(0, 255).to(torch::kUInt8);
}

// A centred crop x crop square; an image smaller than that is padded with zeros first, as
// torchvision's CenterCrop does.
torch::Tensor centre_crop(torch::Tensor image, int64_t crop) {
  const int64_t h = image.size(1), w = image.size(2);
  if (h < crop || w < crop) {
    const int64_t pad_h = std::max<int64_t>(0, crop - h), pad_w = std::max<int64_t>(0, crop - w);
    auto padded = torch::zeros({image.size(0), h + pad_h, w + pad_w}, torch::kUInt8);
    padded.slice(1, pad_h / 2, pad_h / 2 + h).slice(2, pad_w / 2, pad_w / 2 + w).copy_(image);
    image = padded;
  }
  const int64_t top = round_half_even((image.size(1) - crop) / 2.0), left = round_half_even((image.size(2) - crop) / 2.0);
  return image.slice(1, top, top + crop).slice(2, left, left + crop).contiguous();
}

}  // namespace

torch::Tensor decode_image(const std::string& path, const ImagePreprocessing& preprocessing) {
  int w = 0, h = 0, channels = 0;
  unsigned char* pixels = stbi_load(path.c_str(), &w, &h, &channels, 0);
  if (!pixels) {
    const char* why = stbi_failure_reason();
    throw InputError(fmt::format("{}: cannot decode image ({})", path, why ? why : "unknown format"));
  }
  // [H, W, channels] -> [C, H, W], dropping alpha (as PIL's convert("RGB") does).
  auto hwc = torch::from_blob(pixels, {h, w, channels}, torch::kUInt8).clone();
  stbi_image_free(pixels);
  const int64_t colour = channels >= 3 ? 3 : 1;
  auto image = hwc.slice(2, 0, colour).permute({2, 0, 1}).contiguous();
  const int64_t wanted = preprocessing.channels == 0 ? colour : preprocessing.channels;
  if (wanted == 3 && colour == 1) image = image.repeat({3, 1, 1});
  if (wanted == 1 && colour == 3) {
    // PIL's convert("L"): ITU-R 601-2 luma in 16-bit fixed point.
    const auto rgb = image.to(torch::kInt32);
    image = (rgb[0] * 19595 + rgb[1] * 38470 + rgb[2] * 7471 + 0x8000).bitwise_right_shift(16).to(torch::kUInt8).unsqueeze(0);
  }
  if (preprocessing.resize > 0) image = resize_shorter_side(image, preprocessing.resize);
  if (preprocessing.crop > 0) image = centre_crop(image, preprocessing.crop);
  return image;
}

namespace {

// FNV-1a, 64 bits: a cache key, not a digest against tampering.
struct Fnv {
  uint64_t hash = 14695981039346656037ull;
  void add(const std::string& text) {
    for (const unsigned char c : text) hash = (hash ^ c) * 1099511628211ull;
    hash = (hash ^ 0xff) * 1099511628211ull;  // a separator, so that "ab","c" differs from "a","bc"
  }
};

std::string cache_file(const std::string& cache_dir, const std::vector<std::string>& files, const std::vector<int64_t>& labels,
                       const std::vector<std::string>& classes, const ImagePreprocessing& preprocessing, OnBadImage on_bad) {
  Fnv key;
  key.add("image-folder-cache-v2");
  key.add(fmt::format("{} {} {} {}", preprocessing.channels, preprocessing.resize, preprocessing.crop, on_bad == OnBadImage::Skip));
  for (const auto& name : classes) key.add(name);
  for (size_t i = 0; i < files.size(); ++i) {
    struct stat status {};  // one system call for size and time: a cached reload of 70,000 files is mostly these
    ::stat(files[i].c_str(), &status);
    key.add(fmt::format("{} {} {}.{:09d} {}", files[i], status.st_size, status.st_mtim.tv_sec, status.st_mtim.tv_nsec,
                        labels.empty() ? -1 : labels[i]));
  }
  return fmt::format("{}/images-{:016x}.pt", cache_dir, key.hash);
}

// The cache file is a tensor file (torch.load reads it): the images, the labels (None when
// unlabeled), the classes, the files kept and the files skipped.
void save_cache(const std::string& path, const ImageFolder& folder) {
  fs::create_directories(fs::path(path).parent_path());
  write_tensor_file(path, {folder.images, folder.labels, folder.classes, folder.files, folder.skipped});
}

std::optional<ImageFolder> load_cache(const std::string& path) {
  if (!fs::exists(path)) return std::nullopt;
  try {
    auto cached = read_tensor_file(path);
    if (cached.images.scalar_type() != torch::kUInt8 || cached.images.size(0) != static_cast<int64_t>(cached.files.size())) {
      throw std::runtime_error("inconsistent contents");
    }
    return ImageFolder{cached.images, cached.labels, cached.classes, cached.files, cached.skipped};
  } catch (const std::exception& e) {
    spdlog::warn("{}: unreadable image cache ({}); decoding again", path, e.what());
    return std::nullopt;
  }
}

}  // namespace

ImageFolder load_image_folder(const std::string& root, const ImagePreprocessing& preprocessing, bool labeled, OnBadImage on_bad,
                              const std::vector<std::string>& classes, const std::string& cache_dir, int64_t max_bytes) {
  if (!fs::is_directory(root)) throw InputError(root + ": no such folder");
  ImageFolder folder;
  std::vector<int64_t> labels;
  const auto found = find_classes(root);
  if (labeled && !found.empty()) {
    folder.classes = classes.empty() ? found : classes;
    for (const auto& name : found) {
      const auto at = std::find(folder.classes.begin(), folder.classes.end(), name);
      if (at == folder.classes.end()) {
        throw InputError(fmt::format("{}: class folder '{}' is not one of the training classes ({})", root, name,
                                     fmt::join(folder.classes, ", ")));
      }
      const auto files = image_files_under((fs::path(root) / name).string());
      if (files.empty()) throw InputError(fmt::format("{}/{}: class folder holds no images (PNG, JPEG, BMP, PGM, PPM)", root, name));
      folder.files.insert(folder.files.end(), files.begin(), files.end());
      labels.insert(labels.end(), files.size(), at - folder.classes.begin());
    }
  } else {
    folder.files = image_files_under(root);
  }
  if (folder.files.empty()) throw InputError(fmt::format("{}: no images (PNG, JPEG, BMP, PGM, PPM) in this folder", root));
  std::string cache_path;
  if (!cache_dir.empty()) {
    cache_path = cache_file(cache_dir, folder.files, labels, folder.classes, preprocessing, on_bad);
    if (auto cached = load_cache(cache_path)) {
      spdlog::info("{}: {} decoded images from the cache {}", root, cached->images.size(0), cache_path);
      for (const auto& skipped : cached->skipped) spdlog::warn("skipped {}", skipped);
      return *cached;
    }
  }

  const int64_t count = static_cast<int64_t>(folder.files.size());
  std::vector<std::string> errors(count);
  // The first image that decodes sets the size every other must have.
  int64_t reference = 0;
  torch::Tensor first;
  for (; reference < count; ++reference) {
    try {
      first = decode_image(folder.files[reference], preprocessing);
      break;
    } catch (const InputError& e) {
      if (on_bad == OnBadImage::Error) throw InputError(std::string(e.what()) + " (data.on_bad_image: skip would skip it)");
      errors[reference] = e.what();
    }
  }
  if (reference == count) throw InputError(fmt::format("{}: none of its {} images could be decoded", root, count));
  const double needed = static_cast<double>(first.numel()) * static_cast<double>(count);
  if (max_bytes > 0 && needed > static_cast<double>(max_bytes)) {
    throw InputError(fmt::format("{}: {} images of [{}] (channels, height, width) need {:.0f} MiB as uint8, more than "
                                 "data.max_memory ({} MiB): set data.resize and data.crop smaller, or raise data.max_memory",
                                 root, count, fmt::join(first.sizes(), ", "), needed / (1 << 20), max_bytes >> 20));
  }

  // Decode on every core straight into one uint8 tensor, so the set is never held twice; the
  // calling thread reports progress.
  std::vector<int64_t> first_shape(first.sizes().begin(), first.sizes().end());
  first_shape.insert(first_shape.begin(), count);
  auto images = torch::empty(first_shape, torch::kUInt8);
  images[reference].copy_(first);
  std::vector<std::vector<int64_t>> other_size(count);  // [C, H, W] of an image whose size differs
  std::atomic<int64_t> next{reference + 1}, done{reference + 1};
  std::vector<std::thread> workers;
  const unsigned threads = std::max(1u, std::min<unsigned>(std::thread::hardware_concurrency(), static_cast<unsigned>(count)));
  for (unsigned t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      for (int64_t i = next++; i < count; i = next++) {
        try {
          const auto image = decode_image(folder.files[i], preprocessing);
          if (image.sizes() == first.sizes()) {
            images[i].copy_(image);
          } else {
            other_size[i] = image.sizes().vec();
          }
        } catch (const std::exception& e) {
          errors[i] = e.what();
        }
        ++done;
      }
    });
  }
  report::Progress progress("decoding " + root, count);
  for (int64_t reported = 0; reported < count;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const int64_t now = done.load();
    if (now > reported) progress.advance(now - reported);
    reported = now;
  }
  for (auto& worker : workers) worker.join();
  progress.finish();

  // Skipped files leave gaps: later rows move up over them.
  std::vector<std::string> kept_files;
  std::vector<int64_t> kept_labels;
  for (int64_t i = 0; i < count; ++i) {
    if (!errors[i].empty()) {
      if (on_bad == OnBadImage::Error) throw InputError(errors[i] + " (data.on_bad_image: skip would skip it)");
      spdlog::warn("skipped {}", errors[i]);
      folder.skipped.push_back(errors[i]);
      continue;
    }
    if (!other_size[i].empty()) {
      const bool channels_differ = other_size[i].front() != first.size(0);
      throw InputError(fmt::format(
          "{}: image is [{}] where {} is [{}] (channels, height, width): {}", folder.files[i], fmt::join(other_size[i], ", "),
          folder.files[reference], fmt::join(first.sizes(), ", "),
          channels_differ ? "set data.channels to 1 or 3 to convert them" : "set data.resize and data.crop to make them one size"));
    }
    const auto row = static_cast<int64_t>(kept_files.size());
    if (row != i) images[row].copy_(images[i]);
    kept_files.push_back(folder.files[i]);
    if (!labels.empty()) kept_labels.push_back(labels[i]);
  }
  const auto kept = static_cast<int64_t>(kept_files.size());
  folder.images = kept == count ? images : images.slice(0, 0, kept).clone();
  folder.files = std::move(kept_files);
  if (!kept_labels.empty()) folder.labels = torch::tensor(kept_labels, torch::kInt64);
  if (!cache_path.empty()) {
    try {
      save_cache(cache_path, folder);
    } catch (const std::exception& e) {  // a cache that cannot be written costs time, not the run
      spdlog::warn("{}: cannot write the image cache ({})", cache_path, e.what());
    }
  }
  return folder;
}

}  // namespace distillery::data
