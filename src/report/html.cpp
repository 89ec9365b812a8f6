#include "distillery/report/html.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "distillery/report/image.h"
#include "distillery/report/metrics.h"

namespace distillery::report {

std::string escape_html(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

HtmlReport::HtmlReport(std::string title) : title_(std::move(title)) {}

void HtmlReport::heading(const std::string& text) { body_ += "<h2>" + escape_html(text) + "</h2>\n"; }
void HtmlReport::paragraph(const std::string& text) { body_ += "<p>" + escape_html(text) + "</p>\n"; }
void HtmlReport::preformatted(const std::string& text) { body_ += "<pre>" + escape_html(text) + "</pre>\n"; }

void HtmlReport::table(const std::vector<std::vector<std::string>>& rows) {
  if (rows.empty()) return;
  body_ += "<table>\n<tr>";
  for (const auto& cell : rows.front()) body_ += "<th>" + escape_html(cell) + "</th>";
  body_ += "</tr>\n";
  for (size_t r = 1; r < rows.size(); ++r) {
    body_ += "<tr>";
    for (const auto& cell : rows[r]) body_ += "<td>" + escape_html(cell) + "</td>";
    body_ += "</tr>\n";
  }
  body_ += "</table>\n";
}

void HtmlReport::line_chart(const std::string& title, const std::string& x_label, const std::string& y_label,
                            const std::vector<Series>& series) {
  static const char* colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};
  double x_min = std::numeric_limits<double>::infinity(), x_max = -x_min, y_min = x_min, y_max = -x_min;
  for (const auto& s : series) {
    for (size_t i = 0; i < s.x.size(); ++i) {
      x_min = std::min(x_min, s.x[i]), x_max = std::max(x_max, s.x[i]);
      y_min = std::min(y_min, s.y[i]), y_max = std::max(y_max, s.y[i]);
    }
  }
  if (!std::isfinite(x_min)) return;
  if (x_max == x_min) x_max = x_min + 1;
  if (y_max == y_min) y_max = y_min + 1;
  const double width = 640, height = 320, left = 60, right = 180, top = 20, bottom = 40;
  auto px = [&](double x) { return left + (x - x_min) / (x_max - x_min) * (width - left - right); };
  auto py = [&](double y) { return top + (1.0 - (y - y_min) / (y_max - y_min)) * (height - top - bottom); };
  std::string svg = fmt::format("<figure><figcaption>{}</figcaption><svg class=\"chart\" width=\"{}\" height=\"{}\" "
                                "viewBox=\"0 0 {} {}\" xmlns=\"http://www.w3.org/2000/svg\">\n",
                                escape_html(title), width, height, width, height);
  svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>\n", left, top,
                     width - left - right, height - top - bottom);
  for (int t = 0; t <= 4; ++t) {
    const double y = y_min + (y_max - y_min) * t / 4.0;
    svg += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{:.4g}</text>\n", left - 4, py(y) + 4, y);
    const double x = x_min + (x_max - x_min) * t / 4.0;
    svg += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{:.4g}</text>\n", px(x),
                       height - bottom + 14, x);
  }
  svg += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{}</text>\n", (left + width - right) / 2,
                     height - 6, escape_html(x_label));
  svg += fmt::format("<text x=\"12\" y=\"{}\" font-size=\"12\" transform=\"rotate(-90 12 {})\" text-anchor=\"middle\">{}</text>\n",
                     height / 2, height / 2, escape_html(y_label));
  for (size_t k = 0; k < series.size(); ++k) {
    const auto& s = series[k];
    const char* colour = colours[k % 8];
    std::string points;
    for (size_t i = 0; i < s.x.size(); ++i) points += fmt::format("{:.1f},{:.1f} ", px(s.x[i]), py(s.y[i]));
    svg += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>\n", colour, points);
    svg += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{}\">{}</text>\n", width - right + 8, top + 14 * (k + 1),
                       colour, escape_html(s.name));
  }
  body_ += svg + "</svg></figure>\n";
}

void HtmlReport::confusion(const std::string& title, const torch::Tensor& matrix) {
  auto m = matrix.to(torch::kInt64).contiguous();
  const int64_t k = m.size(0);
  const double max_off = std::max<double>(1.0, (m - torch::diag(torch::diag(m))).max().item<double>());
  body_ += "<figure><figcaption>" + escape_html(title) + " (rows: true class, columns: predicted)</figcaption><table class=\"confusion\">\n<tr><th></th>";
  for (int64_t j = 0; j < k; ++j) body_ += fmt::format("<th>{}</th>", j);
  body_ += "</tr>\n";
  for (int64_t i = 0; i < k; ++i) {
    body_ += fmt::format("<tr><th>{}</th>", i);
    for (int64_t j = 0; j < k; ++j) {
      const int64_t v = m[i][j].item<int64_t>();
      const double shade = i == j ? 0.0 : std::min(1.0, v / max_off);
      body_ += fmt::format("<td style=\"background: rgba(214,39,40,{:.2f})\">{}</td>", shade * 0.8, v);
    }
    body_ += "</tr>\n";
  }
  body_ += "</table></figure>\n";
}

void HtmlReport::image(const std::string& caption, const torch::Tensor& image, int64_t display_scale) {
  const int64_t w = image.size(image.dim() - 1) * display_scale;
  body_ += fmt::format("<figure><img width=\"{}\" style=\"image-rendering: pixelated\" src=\"data:image/png;base64,{}\" alt=\"{}\">"
                       "<figcaption>{}</figcaption></figure>\n",
                       w, base64(encode_png(image)), escape_html(caption), escape_html(caption));
}

std::string HtmlReport::html() const {
  return "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + escape_html(title_) +
         "</title>\n<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
         "td:first-child{text-align:left}figure{margin:1em 0}pre{background:#f6f6f6;padding:1em;overflow:auto}"
         "table.confusion td{text-align:center;min-width:2.5em}</style></head>\n<body>\n<h1>" +
         escape_html(title_) + "</h1>\n" + body_ + "</body></html>\n";
}

void HtmlReport::save(const std::string& path) const { write_file_atomic(path, html()); }

}  // namespace distillery::report
