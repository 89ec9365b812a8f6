#pragma once
// Datasets of the user's own images: folders in torchvision's ImageFolder layout (ROOT/<class>/<image>)
// or, for unlabeled transfer sets, a folder of images alone. Images are decoded on every core, made
// the same size by the preprocessing the config names, and held as uint8.
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace distillery::data {

/// How a file becomes a tensor, applied identically at train, eval and predict (data.* keys).
struct ImagePreprocessing {
  int64_t channels = 0;  ///< 1 or 3, converting (gray -> RGB repeats, RGB -> gray by ITU-R 601-2); 0: as the files are
  int64_t resize = 0;    ///< the shorter side to this many pixels, bilinear (0: keep the size)
  int64_t crop = 0;      ///< then a centred crop x crop square (0: none)
};

/// What to do with a file that cannot be decoded.
enum class OnBadImage { Skip, Error };

/// A decoded folder.
struct ImageFolder {
  torch::Tensor images;              ///< uint8 [N, C, H, W]
  torch::Tensor labels;              ///< int64 [N]; undefined for an unlabeled folder
  std::vector<std::string> classes;  ///< class folder names, index = label (empty when unlabeled)
  std::vector<std::string> files;    ///< the image files, in the order of `images`
  std::vector<std::string> skipped;  ///< "path: why" for each undecodable file skipped
};

/// The image files torchvision's ImageFolder would take (by extension, case-insensitive).
bool is_image_file(const std::string& path);

/// The class folders of `root`, sorted as torchvision sorts them (by code point); empty when `root`
/// holds images directly (an unlabeled folder).
std::vector<std::string> find_classes(const std::string& root);

/// Decodes a folder. Labeled: `root`/<class>/<image>, classes sorted as torchvision sorts them;
/// when `classes` is not empty, the folder's classes must be among them (a test folder uses the
/// training folder's list). Unlabeled (`labeled` false, or no class folders): every image under
/// `root`. Exit-2 errors (InputError) name the path: no images, an empty class folder, an image
/// whose size or channels differ from the others' when the preprocessing does not make them agree,
/// an undecodable file under OnBadImage::Error.
/// With a `cache_dir`, the decoded folder is kept there in one file whose name is a hash of every
/// file's path, size and modification time, the preprocessing and the labels: the next load of the
/// same files reads it instead of decoding, and a changed, added or removed file makes a new one.
/// With `max_bytes` > 0, a folder whose decoded images would take more (judged by its first image)
/// is refused before decoding, with the size it would need.
ImageFolder load_image_folder(const std::string& root, const ImagePreprocessing& preprocessing, bool labeled,
                              OnBadImage on_bad, const std::vector<std::string>& classes = {},
                              const std::string& cache_dir = "", int64_t max_bytes = 0);

/// Decodes one image file with the preprocessing: uint8 [C, H, W]. InputError naming the file if it
/// cannot be decoded.
torch::Tensor decode_image(const std::string& path, const ImagePreprocessing& preprocessing);

}  // namespace distillery::data
