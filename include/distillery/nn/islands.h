#pragma once
// Islands of agreement and how they are scored against object masks (issue 10): island extraction
// (cosine threshold + connected components, or k-means on cosine distance), the foreground
// adjusted Rand index (FG-ARI, as Slot Attention reports it: background pixels excluded), the
// trivial baselines (connected components of the ink; k-means on raw patch pixels plus position)
// and the within-object minus between-object cosine similarity. All on CPU, one image at a time.
#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace distillery::nn {

/// Adjusted Rand index (Hubert & Arabie 1985) of two labellings of the same items ([M] int64, any
/// label values). 1 for identical partitions (up to renaming); 1 when both put all items in one
/// group or both put every item alone (the denominator vanishes).
double adjusted_rand_index(const torch::Tensor& truth, const torch::Tensor& predicted);

/// ARI over the pixels where truth [H, W] (int64, 0 = background) is non-zero; predicted [H, W].
/// NaN if there is no foreground.
double foreground_ari(const torch::Tensor& truth, const torch::Tensor& predicted);

/// k-means (k-means++ initialisation, `restarts` seeded runs, the lowest inertia kept) of rows of
/// features [M, F]. cosine: rows are L2-normalised first (spherical k-means). -> labels [M] int64.
torch::Tensor kmeans(const torch::Tensor& features, int64_t k, uint64_t seed, bool cosine = false,
                     int64_t restarts = 3, int64_t max_iterations = 30);

/// Islands by agreement: 4-neighbour connected components of the height x width grid where
/// neighbours' cosine similarity exceeds `threshold`. embeddings [N, D] -> labels [N] in 0..I-1.
torch::Tensor threshold_islands(const torch::Tensor& embeddings, int64_t height, int64_t width, double threshold);

/// Island count and sizes (locations) of a labelling [N], largest first.
std::vector<int64_t> island_sizes(const torch::Tensor& labels);

/// Patch labels [N] of a grid x grid patch grid -> pixel labels [grid * patch, grid * patch].
torch::Tensor patch_labels_to_pixels(const torch::Tensor& labels, int64_t grid, int64_t patch);

/// Which patches hold ink: [N] bool, a patch's largest pixel above `threshold`. image [H, W].
torch::Tensor ink_patches(const torch::Tensor& image, int64_t patch, double threshold);

/// Baseline: 8-connected components of the ink (pixels above threshold). image [H, W] -> [H, W]
/// int64 labels (0 background, 1.. components).
torch::Tensor ink_components(const torch::Tensor& image, double threshold);

/// Clusters the ink patches of one image into k groups from per-patch features [N, F]; the other
/// patches get label -1. -> patch labels [N].
torch::Tensor kmeans_ink_patches(const torch::Tensor& features, const torch::Tensor& ink, int64_t k, uint64_t seed, bool cosine);
/// The same read out as pixel labels [H, W].
torch::Tensor cluster_ink_patches(const torch::Tensor& features, const torch::Tensor& ink, int64_t grid,
                                  int64_t patch, int64_t k, uint64_t seed, bool cosine);

/// Pixel-level islands. k-means on the ink patches' features [N, F] gives k centres; every pixel
/// of an ink patch then joins the centre nearest to the features read at that pixel: interpolated
/// bilinearly between the centres of the ink patches around it (a column's vector describes its
/// patch's centre best, and a patch on the border of two objects holds pixels of both). Pixels of
/// other patches get -1. -> pixel labels [H, W].
torch::Tensor cluster_ink_pixels(const torch::Tensor& features, const torch::Tensor& ink, int64_t grid, int64_t patch,
                                 int64_t k, uint64_t seed, bool cosine);

/// Pixel-level islands from what each island imagines: imagined [I, N, P] holds the patch pixels
/// (row-major within a patch) that island i predicts at every location. Every pixel of an ink patch
/// joins the island that predicts the most ink there, so two digits crossing inside one patch can
/// be told apart; pixels of other patches get -1. -> pixel labels [H, W].
torch::Tensor imagined_ink_pixels(const torch::Tensor& imagined, const torch::Tensor& ink, int64_t grid, int64_t patch);

/// Islands by a normalised cut of the agreement graph (spectral clustering, Ng, Jordan & Weiss
/// 2001): ink patches within `radius` patches of each other (Chebyshev) are joined with weight
/// exp(beta (cos - 1)), the kernel of the consensus attention; the k leading eigenvectors of the
/// normalised affinity, rows L2-normalised, are clustered by k-means. An island is then a group of
/// locations that agree with their neighbours, not only with a distant centre. -> pixel labels
/// [H, W], -1 off the ink.
torch::Tensor spectral_ink_patches(const torch::Tensor& features, const torch::Tensor& ink, int64_t grid, int64_t patch,
                                   int64_t k, int64_t radius, double beta, uint64_t seed);

/// The class votes of the ink: every ink location's class log-probabilities summed.
/// location_logits [..., N, C], ink [..., N] bool -> [..., C].
torch::Tensor ink_class_votes(const torch::Tensor& location_logits, const torch::Tensor& ink);

/// Not islands but what the top level knows: each ink patch takes the class, among the k classes
/// its image's ink patches vote for most (summed log-probabilities), that its own class scores
/// [N, C] rank highest. A diagnostic beside the islands: it needs the trained location classifier,
/// so no baseline can be read out this way. -> pixel labels [H, W], -1 off the ink.
torch::Tensor classify_ink_patches(const torch::Tensor& location_logits, const torch::Tensor& ink, int64_t grid,
                                   int64_t patch, int64_t k);

/// Baseline features: a patch's raw pixels [N, P] and its position (row, column) / grid times
/// position_weight -> [N, P + 2].
torch::Tensor pixel_position_features(const torch::Tensor& image, int64_t patch, double position_weight);

/// Mean cosine similarity of pairs of patches of the same object minus that of pairs of different
/// objects. objects [N] int64 (0: no object, ignored). NaN if either kind of pair is missing.
double within_minus_between_cosine(const torch::Tensor& embeddings, const torch::Tensor& objects);

/// The majority non-background label of each patch of a mask [H, W] -> [N] int64 (0 if none).
torch::Tensor patch_objects(const torch::Tensor& mask, int64_t patch);

}  // namespace distillery::nn
