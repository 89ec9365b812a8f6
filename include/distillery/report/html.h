#pragma once
// report.html: one self-contained page (inline SVG charts, images as data: URIs), viewable with no
// network and no other files.
#include <torch/torch.h>

#include <string>
#include <vector>

namespace distillery::report {

struct Series {
  std::string name;
  std::vector<double> x, y;
};

class HtmlReport {
 public:
  explicit HtmlReport(std::string title);
  void heading(const std::string& text);
  void paragraph(const std::string& text);
  /// A table; the first row is the header. Cells are escaped.
  void table(const std::vector<std::vector<std::string>>& rows);
  /// A line chart of several series as inline SVG.
  void line_chart(const std::string& title, const std::string& x_label, const std::string& y_label,
                  const std::vector<Series>& series);
  /// A confusion matrix [K, K] (rows: true class) as a shaded table.
  void confusion(const std::string& title, const torch::Tensor& matrix);
  /// An image [H, W] or [3, H, W] in [0, 1], embedded as PNG.
  void image(const std::string& caption, const torch::Tensor& image, int64_t display_scale = 2);
  /// Raw preformatted text (a config, a log excerpt).
  void preformatted(const std::string& text);
  std::string html() const;
  /// Writes atomically.
  void save(const std::string& path) const;

 private:
  std::string title_;
  std::string body_;
};

/// Escapes &, <, >, " for HTML.
std::string escape_html(const std::string& text);

}  // namespace distillery::report
