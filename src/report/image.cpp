#include "distillery/report/image.h"

#include <stb_image.h>
#include <stb_image_write.h>

#include "distillery/error.h"

namespace distillery::report {
namespace {

torch::Tensor to_bytes_hwc(const torch::Tensor& image) {
  TORCH_CHECK(image.dim() == 2 || (image.dim() == 3 && (image.size(0) == 3 || image.size(0) == 1)),
              "write_png: expected [H, W] or [3, H, W], got ", image.sizes());
  auto chw = image.dim() == 2 ? image.unsqueeze(0) : image;
  return chw.detach().to(torch::kFloat32).clamp(0, 1).mul(255).round().to(torch::kUInt8).permute({1, 2, 0}).contiguous();
}

void append_bytes(void* context, void* data, int size) {
  static_cast<std::string*>(context)->append(static_cast<const char*>(data), size);
}

}  // namespace

void write_png(const std::string& path, const torch::Tensor& image) {
  auto hwc = to_bytes_hwc(image);
  const int h = hwc.size(0), w = hwc.size(1), c = hwc.size(2);
  if (!stbi_write_png(path.c_str(), w, h, c, hwc.data_ptr(), w * c)) throw std::runtime_error(path + ": cannot write PNG");
}

std::string encode_png(const torch::Tensor& image) {
  auto hwc = to_bytes_hwc(image);
  const int h = hwc.size(0), w = hwc.size(1), c = hwc.size(2);
  std::string bytes;
  stbi_write_png_to_func(append_bytes, &bytes, w, h, c, hwc.data_ptr(), w * c);
  return bytes;
}

torch::Tensor image_grid(const torch::Tensor& images, int64_t columns, int64_t pad, double background) {
  TORCH_CHECK(images.dim() == 4, "image_grid: expected [N, C, H, W], got ", images.sizes());
  const int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  columns = std::max<int64_t>(1, std::min(columns, n));
  const int64_t rows = std::max<int64_t>(1, (n + columns - 1) / columns);
  auto grid = torch::full({c, rows * (h + pad) + pad, columns * (w + pad) + pad}, background, torch::kFloat32);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t y = pad + (i / columns) * (h + pad), x = pad + (i % columns) * (w + pad);
    grid.slice(1, y, y + h).slice(2, x, x + w).copy_(images[i]);
  }
  return grid;
}

torch::Tensor read_grey_image(const std::string& path) {
  int w = 0, h = 0, channels = 0;
  unsigned char* pixels = stbi_load(path.c_str(), &w, &h, &channels, /*desired_channels=*/1);
  if (!pixels) {
    throw InputError(path + ": cannot read image (" + std::string(stbi_failure_reason() ? stbi_failure_reason() : "unknown") +
                     "); PNG, PGM, JPEG and BMP are supported");
  }
  auto image = torch::from_blob(pixels, {h, w}, torch::kUInt8).to(torch::kFloat32).div(255.0);
  stbi_image_free(pixels);
  return image;
}

std::string base64(const std::string& bytes) {
  static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    out += table[v >> 18];
    out += table[(v >> 12) & 63];
    out += table[(v >> 6) & 63];
    out += table[v & 63];
  }
  if (i < bytes.size()) {
    uint32_t v = uint8_t(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= uint8_t(bytes[i + 1]) << 8;
    out += table[v >> 18];
    out += table[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? table[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

torch::Tensor colour_islands(const torch::Tensor& labels, const torch::Tensor& image) {
  TORCH_CHECK(image.dim() == 2 && labels.sizes() == image.sizes(), "colour_islands: labels ", labels.sizes(), " and image ",
              image.sizes(), " must both be [H, W]");
  static const float palette[8][3] = {{0.95f, 0.25f, 0.2f}, {0.2f, 0.6f, 0.95f}, {0.3f, 0.85f, 0.3f}, {0.95f, 0.8f, 0.2f},
                                      {0.75f, 0.35f, 0.9f}, {0.2f, 0.85f, 0.8f}, {0.95f, 0.55f, 0.2f}, {0.6f, 0.6f, 0.6f}};
  const int64_t h = image.size(0), w = image.size(1);
  auto out = torch::empty({3, h, w});
  auto o = out.accessor<float, 3>();
  const auto img = image.to(torch::kFloat32).contiguous();
  const auto lab = labels.to(torch::kInt64).contiguous();
  auto ia = img.accessor<float, 2>();
  auto la = lab.accessor<int64_t, 2>();
  for (int64_t r = 0; r < h; ++r) {
    for (int64_t c = 0; c < w; ++c) {
      const int64_t label = la[r][c];
      for (int ch = 0; ch < 3; ++ch) {
        o[ch][r][c] = label < 0 ? 0.25f * ia[r][c] : palette[label % 8][ch] * (0.35f + 0.65f * ia[r][c]);
      }
    }
  }
  return out;
}

}  // namespace distillery::report
