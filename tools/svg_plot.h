// svg_plot.h: a minimal scatter/line plot written as SVG, for the tools' quality-vs-speed charts.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace effort::cli {

struct PlotSeries {
  std::string name;
  std::vector<double> x, y;
  std::vector<std::string> labels;  // one per point, may be empty
};

// Writes a chart with linear axes; returns false when the file cannot be written.
inline bool write_svg_plot(const std::string& path, const std::string& title, const std::string& x_label,
                           const std::string& y_label, const std::vector<PlotSeries>& series) {
  static const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const auto& s : series)
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, s.y[i]), y1 = std::max(y1, s.y[i]);
    }
  if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 - x0 < 1e-12) x0 -= 0.5, x1 += 0.5;
  if (y1 - y0 < 1e-12) y0 -= 0.5, y1 += 0.5;
  const double pad_x = 0.05 * (x1 - x0), pad_y = 0.08 * (y1 - y0);
  x0 -= pad_x, x1 += pad_x, y0 -= pad_y, y1 += pad_y;
  const double W = 720, H = 460, L = 80, R = 170, T = 40, B = 60;
  auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
  auto py = [&](double y) { return H - B - (y - y0) / (y1 - y0) * (H - T - B); };
  std::ofstream out(path);
  if (!out) return false;
  char buf[512];
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  out << "<text x=\"" << W / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">" << title << "</text>\n";
  for (int i = 0; i <= 5; ++i) {
    const double x = x0 + (x1 - x0) * i / 5, y = y0 + (y1 - y0) * i / 5;
    std::snprintf(buf, sizeof buf,
                  "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                  "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.3g</text>\n"
                  "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                  "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n",
                  px(x), T, px(x), H - B, px(x), H - B + 18, x, L, py(y), W - R, py(y), L - 6, py(y) + 4, y);
    out << buf;
  }
  out << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 15 << "\" text-anchor=\"middle\">" << x_label << "</text>\n";
  out << "<text transform=\"translate(18," << (T + H - B) / 2 << ") rotate(-90)\" text-anchor=\"middle\">" << y_label
      << "</text>\n";
  for (std::size_t s = 0; s < series.size(); ++s) {
    const char* color = colors[s % 6];
    std::string points;
    for (std::size_t i = 0; i < series[s].x.size(); ++i) {
      std::snprintf(buf, sizeof buf, "%.1f,%.1f ", px(series[s].x[i]), py(series[s].y[i]));
      points += buf;
    }
    out << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"1.5\" points=\"" << points << "\"/>\n";
    for (std::size_t i = 0; i < series[s].x.size(); ++i) {
      std::snprintf(buf, sizeof buf, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>\n", px(series[s].x[i]),
                    py(series[s].y[i]), color);
      out << buf;
      if (i < series[s].labels.size())
        out << "<text x=\"" << px(series[s].x[i]) + 6 << "\" y=\"" << py(series[s].y[i]) - 6 << "\" font-size=\"10\">"
            << series[s].labels[i] << "</text>\n";
    }
    out << "<rect x=\"" << W - R + 15 << "\" y=\"" << T + 20 * s << "\" width=\"12\" height=\"12\" fill=\"" << color
        << "\"/><text x=\"" << W - R + 32 << "\" y=\"" << T + 20 * s + 11 << "\">" << series[s].name << "</text>\n";
  }
  out << "</svg>\n";
  return bool(out);
}

}  // namespace effort::cli
