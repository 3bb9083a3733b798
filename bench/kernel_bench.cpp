// effort-kernel-bench: the effort matvec against our dense fp16 matvec on Mistral-7B shapes,
// measured in the same run: median time, speed-up, GB/s of weight bytes actually read and its
// fraction of the machine's memory roof (measured in the same run), and cosine similarity to
// the exact product.
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "bench_util.h"
#include "model/bucketize.h"
#include "cli.h"
#include "formats/ggml_types.h"
#include "svg_plot.h"
#include "kernels/fp16.h"
#include "model/linear.h"
#include "model/top_k.h"

namespace {

using namespace effort;

constexpr const char* kUsage = R"(usage: effort-kernel-bench [options]
  --shapes LIST   out x in shapes (default 4096x4096,1024x4096,14336x4096,4096x14336)
  --efforts LIST  (default 1,0.75,0.5,0.375,0.25,0.125)
  --buckets LIST  bucket sizes (default 1,2,4,8,16; 16 is the original's layout)
  --weights LIST  bucketed entries: f16, q8 (default f16,q8)
  -t LIST         thread counts (default 1)
  -r N            timed repetitions per point, after one warm-up (default 7)
  --recall K      also the output head's question (shape = vocab x hidden): over 16 Gaussian
                  and 16 heavy-tailed inputs, how often the exact argmax is among the effort
                  product's top K (the candidates whose exact logits a head effort computes)
  --arch NAME     scalar, avx2 or avx512 (default: the best this CPU runs)
  --json          print JSON ({"points", "formats", "matched"}) instead of markdown tables
  --plot FILE     also write an SVG plot: cosine similarity (Gaussian inputs) against time
                  relative to dense, one line per layout, shape and thread count
Weights are N(0, 0.02) in fp16, with 0.5% of rows and 0.5% of columns 4x larger. Quality is the
cosine similarity to the exact product for Gaussian inputs and for heavy-tailed ones (Student t
with 3 degrees of freedom, 8 channels 20x larger). Several copies of each matrix are cycled so
that every product streams from memory; dense and effort products alternate, so a slow phase of
a shared machine affects both alike. A * marks the points on the quality/time frontier of each
shape and thread count: no other point is both faster and better (Gaussian cos). GB/s counts
the bytes a product reads (the units dispatched, every unit's stat, the probes); "of roof" is
that against a plain multi-threaded read of 1 GiB timed in the same run.
The same matrices quantized to llama.cpp's Q8_0, Q4_0 and Q4_K (x exact) give those formats'
cos; for each of our layouts, the effort at which it reaches Q8_0's and Q4_0's Gaussian cos
(linear between the measured efforts; "-" when no listed effort reaches it), and the time
relative to dense there.
)";

struct Format {
  const char* name;
  std::uint32_t type;  // ggml type
  double bytes_per_weight;
};
constexpr Format kFormats[] = {{"Q8_0", 8, 34.0 / 32}, {"Q4_0", 2, 18.0 / 32}, {"Q4_K", 12, 144.0 / 256}};

// The lowest effort at which the layout's Gaussian cos reaches `target`, linear between measured
// efforts, and the time ratio there; effort -1 when none reaches it.
std::pair<double, double> effort_reaching(std::vector<std::pair<double, nlohmann::json>> points, double target) {
  std::sort(points.begin(), points.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (std::size_t i = 0; i < points.size(); ++i) {
    const double cos = points[i].second["cos_gauss"].get<double>(), time = points[i].second["time_ratio"].get<double>();
    if (cos < target) continue;
    if (i == 0) return {points[i].first, time};
    const double cos0 = points[i - 1].second["cos_gauss"].get<double>(), time0 = points[i - 1].second["time_ratio"].get<double>();
    const double f = (target - cos0) / (cos - cos0);
    return {points[i - 1].first + f * (points[i].first - points[i - 1].first), time0 + f * (time - time0)};
  }
  return {-1.0, 0.0};
}

// Inputs of --recall's measurement.
constexpr std::size_t kRecallInputs = 32;

// Working set per shape: enough copies that no product finds its weights in cache.
constexpr double kMinWorkingSetBytes = 512e6;

struct Shape {
  std::size_t out, in;
};

double cosine(const std::vector<double>& exact, const std::vector<float>& y) {
  double ab = 0, aa = 0, bb = 0;
  for (std::size_t o = 0; o < y.size(); ++o) ab += exact[o] * y[o], aa += exact[o] * exact[o], bb += double(y[o]) * y[o];
  return ab / std::sqrt(aa * bb);
}

int run(int argc, char** argv) {
  std::vector<Shape> shapes = {{4096, 4096}, {1024, 4096}, {14336, 4096}, {4096, 14336}};
  std::vector<float> efforts = {1.0f, 0.75f, 0.5f, 0.375f, 0.25f, 0.125f};
  std::vector<int> threads = {1};
  std::vector<std::size_t> bucket_sizes = {1, 2, 4, 8, 16};
  std::vector<BucketEntries> weight_types = {BucketEntries::f16, BucketEntries::q8};
  int reps = 7;
  std::size_t recall_k = 0;  // 0: not measured
  bool json_out = false;
  std::string plot;
  kernels::Arch arch = kernels::best_arch();
  cli::ArgReader args(argc, argv, kUsage);
  while (!args.done()) {
    const std::string f = args.next_flag();
    if (f == "--shapes") {
      shapes.clear();
      for (const auto& s : cli::split_list(args.value())) {
        const auto x = s.find('x');
        if (x == std::string::npos) throw cli::UsageError("--shapes: expected OUTxIN, got '" + s + "'");
        shapes.push_back({std::size_t(cli::parse_int(f, s.substr(0, x), 16, 1 << 20)),
                          std::size_t(cli::parse_int(f, s.substr(x + 1), 1, 1 << 20))});
      }
    } else if (f == "--efforts") {
      efforts.clear();
      for (const auto& e : cli::split_list(args.value())) efforts.push_back(float(cli::parse_number(f, e, 0, 1, true)));
    } else if (f == "--buckets") {
      bucket_sizes = cli::parse_bucket_sizes(f, args.value());
    } else if (f == "--weights") {
      weight_types = cli::parse_bucket_weights_list(f, args.value());
    } else if (f == "-t") {
      threads.clear();
      for (const auto& t : cli::split_list(args.value())) threads.push_back(int(cli::parse_int(f, t, 1, 1024)));
    } else if (f == "--recall") recall_k = std::size_t(cli::parse_int(f, args.value(), 1, 1 << 24));
    else if (f == "-r") reps = int(cli::parse_int(f, args.value(), 1, 10000));
    else if (f == "--arch") {
      try {
        arch = kernels::parse_arch(args.value());
        kernels::kernel_table(arch);
      } catch (const std::invalid_argument& e) {
        throw cli::UsageError(std::string("--arch: ") + e.what());
      }
    } else if (f == "--json") json_out = true;
    else if (f == "--plot") plot = args.value();
    else throw cli::UsageError("unknown option '" + f + "' (see --help)");
  }

  nlohmann::json results = nlohmann::json::array(), formats = nlohmann::json::array(), matched = nlohmann::json::array();
  std::map<int, double> roof;  // bytes/s of a plain read, per thread count (bench::stream_bandwidth)
  std::mt19937 rng(1);
  for (const Shape& shape : shapes) {
    const std::size_t out = shape.out, in = shape.in;
    const std::string name = std::to_string(out) + "x" + std::to_string(in);
    if (!json_out) std::fprintf(stderr, "[kernel-bench] %s: building the matrices\n", name.c_str());
    std::normal_distribution<float> weight(0.0f, 0.02f);
    std::vector<float> row_scale(out, 1.0f), col_scale(in, 1.0f);
    for (std::size_t i = 0; i < std::max<std::size_t>(1, out / 200); ++i) row_scale[rng() % out] = 4.0f;
    for (std::size_t i = 0; i < std::max<std::size_t>(1, in / 200); ++i) col_scale[rng() % in] = 4.0f;
    std::vector<float> w(out * in);
    for (std::size_t o = 0; o < out; ++o)
      for (std::size_t j = 0; j < in; ++j)
        w[o * in + j] = kernels::half_to_float(kernels::float_to_half(weight(rng) * row_scale[o] * col_scale[j]));
    std::vector<std::uint16_t> w16(w.size());
    for (std::size_t i = 0; i < w.size(); ++i) w16[i] = kernels::float_to_half(w[i]);
    std::normal_distribution<float> gaussian(0.0f, 1.0f);
    std::student_t_distribution<float> heavy(3.0f);
    std::vector<float> x_gauss(in), x_heavy(in);
    for (auto& v : x_gauss) v = gaussian(rng);
    for (auto& v : x_heavy) v = heavy(rng);
    for (int c = 0; c < 8; ++c) x_heavy[rng() % in] *= 20.0f;
    auto exact_product = [&](const std::vector<float>& x) {
      std::vector<double> y(out, 0.0);
      for (std::size_t o = 0; o < out; ++o)
        for (std::size_t j = 0; j < in; ++j) y[o] += double(w[o * in + j]) * x[j];
      return y;
    };
    const auto exact_gauss = exact_product(x_gauss), exact_heavy = exact_product(x_heavy);
    // --recall's inputs, half Gaussian, half heavy-tailed, and their exact argmaxes.
    std::vector<std::vector<float>> recall_inputs;
    std::vector<std::size_t> recall_argmax;
    for (std::size_t i = 0; recall_k && i < kRecallInputs; ++i) {
      std::vector<float> x(in);
      for (auto& v : x) v = i % 2 ? heavy(rng) : gaussian(rng);
      if (i % 2)
        for (int c = 0; c < 8; ++c) x[rng() % in] *= 20.0f;
      const auto exact = exact_product(x);
      recall_argmax.push_back(std::size_t(std::max_element(exact.begin(), exact.end()) - exact.begin()));
      recall_inputs.push_back(std::move(x));
    }
    std::map<std::string, double> format_cos;
    for (const Format& f : kFormats) {
      if (in % ggml_block_elements(f.type) != 0) continue;  // rows must be whole blocks
      std::vector<float> wq(w.size());
      dequantize(f.type, quantize(f.type, w.data(), w.size()).data(), w.size(), wq.data());
      std::vector<float> y(out);
      auto cos_of = [&](const std::vector<float>& x, const std::vector<double>& exact) {
        for (std::size_t o = 0; o < out; ++o) {
          double sum = 0;
          for (std::size_t j = 0; j < in; ++j) sum += double(wq[o * in + j]) * x[j];
          y[o] = float(sum);
        }
        return cosine(exact, y);
      };
      format_cos[f.name] = cos_of(x_gauss, exact_gauss);
      formats.push_back({{"shape", name}, {"format", f.name}, {"bytes_per_weight", f.bytes_per_weight},
                         {"cos_gauss", format_cos[f.name]}, {"cos_heavy", cos_of(x_heavy, exact_heavy)}});
    }

    const double weight_bytes = double(out) * double(in) * 2;
    const std::size_t copies = std::max<std::size_t>(1, std::size_t(std::ceil(kMinWorkingSetBytes / weight_bytes)));
    std::vector<std::vector<std::uint16_t>> dense_copies(copies, w16);
    std::vector<float> y(out);
    std::vector<nlohmann::json> shape_results;
    for (std::size_t bucket_size : bucket_sizes)
    for (const BucketEntries entries : weight_types) {
      const kernels::BucketWeights weight_type = bucket_weights(entries);
      BucketizeOptions options;
      options.bucket_size = bucket_size;
      options.weights = weight_type;
      const BucketizedMatrix b = bucketize(w.data(), out, in, options, "bench");
      std::vector<std::vector<std::uint8_t>> unit_copies(copies, b.units);
      std::vector<std::vector<std::uint16_t>> scale_copies(copies, b.scales);
      std::vector<Matrix> bucketed;
      for (std::size_t c = 0; c < copies; ++c) {
        BucketMatrix m = as_matrix(b, b.num_units());
        m.view.units = unit_copies[c].data();
        if (m.view.scales) m.view.scales = scale_copies[c].data();
        bucketed.push_back(std::move(m));
      }
      BucketScratch scratch({&std::get<BucketMatrix>(bucketed[0])});
      const std::string layout = layout_name(bucket_size, weight_type);
      const double layout_bytes = double(b.units.size() + b.scales.size() * 2);
      for (int t : threads) {
        if (!roof.count(t)) roof[t] = bench::stream_bandwidth(t);
        ThreadPool pool(t);
        EffortState state;
        const Compute compute{kernels::kernel_table(arch), pool, &state, &scratch};
        // One pass over every copy first: fresh allocations pay for page faults and compaction.
        for (std::size_t c = 0; c < copies; ++c) {
          matvec(DenseMatrix{kernels::DType::f16, dense_copies[c].data(), out, in}, x_gauss.data(), y.data(), compute);
          matvec(bucketed[c], 0, MatrixKind::up_proj, x_gauss.data(), y.data(), compute);
        }
        std::size_t next = 0;
        for (float effort : efforts) {
          state.set_all(effort);
          double recall = -1;
          if (!recall_inputs.empty()) {
            std::vector<std::uint32_t> top;
            std::size_t found = 0;
            for (std::size_t i = 0; i < recall_inputs.size(); ++i) {
              matvec(bucketed[0], 0, MatrixKind::up_proj, recall_inputs[i].data(), y.data(), compute);
              top_k(std::span<const float>(y), recall_k, top);
              found += std::find(top.begin(), top.end(), recall_argmax[i]) != top.end();
            }
            recall = double(found) / double(recall_inputs.size());
          }
          matvec(bucketed[0], 0, MatrixKind::up_proj, x_heavy.data(), y.data(), compute);
          const double cos_heavy = cosine(exact_heavy, y);
          state.stats = EffortStats{};
          const auto [dense_reps, effort_reps] = bench::time_interleaved(
              reps,
              [&] {
                const DenseMatrix dense{kernels::DType::f16, dense_copies[next % copies].data(), out, in};
                matvec(dense, x_gauss.data(), y.data(), compute);
              },
              [&] { matvec(bucketed[next++ % copies], 0, MatrixKind::up_proj, x_gauss.data(), y.data(), compute); });
          const double dense_s = bench::median(dense_reps), s = bench::median(effort_reps);
          const double fraction = state.stats.fraction(MatrixKind::up_proj);
          // Bytes read per product: the dispatched units, every unit's stats, the probes.
          const double bytes = fraction * layout_bytes + double(b.stats.size()) * 4 + double(b.probe_stats.size()) * 4;
          shape_results.push_back({{"shape", name}, {"layout", layout}, {"bucket_size", bucket_size}, {"effort", effort},
                                   {"threads", t}, {"dense_ms", dense_s * 1e3}, {"ms", s * 1e3}, {"time_ratio", s / dense_s},
                                   {"speedup", dense_s / s}, {"gbps", bytes / s / 1e9}, {"roof_fraction", bytes / s / roof[t]},
                                   {"cos_gauss", cosine(exact_gauss, y)},
                                   {"cos_heavy", cos_heavy}, {"dispatched", fraction},
                                   {"argmax_recall", recall < 0 ? nlohmann::json(nullptr) : nlohmann::json(recall)},
                                   {"arch", std::string(kernels::arch_name(arch))}});
          if (!json_out)
            std::fprintf(stderr, "[kernel-bench] %s %s effort %.3g, %d threads: %.2fx\n", name.c_str(), layout.c_str(), effort,
                         t, dense_s / s);
        }
      }
    }
    // The frontier, per thread count: no other point is faster and better.
    std::map<std::pair<std::string, int>, std::vector<std::pair<double, nlohmann::json>>> by_layout;
    for (auto& r : shape_results) {
      bool dominated = false;
      for (const auto& other : shape_results)
        dominated |= other["threads"] == r["threads"] && other["time_ratio"].get<double>() < r["time_ratio"].get<double>() &&
                     other["cos_gauss"].get<double>() > r["cos_gauss"].get<double>();
      r["frontier"] = !dominated;
      results.push_back(r);
      by_layout[{r["layout"].get<std::string>(), r["threads"].get<int>()}].emplace_back(r["effort"].get<double>(), r);
    }
    for (const auto& [key, points] : by_layout) {
      nlohmann::json m = {{"shape", name}, {"layout", key.first}, {"threads", key.second}};
      for (const auto& [format, cos] : format_cos) {
        const auto [effort, time] = effort_reaching(points, cos);
        m[format] = effort < 0 ? nlohmann::json(nullptr) : nlohmann::json{{"effort", effort}, {"time_ratio", time}};
      }
      matched.push_back(m);
    }
  }
  if (json_out) {
    nlohmann::json roofs;
    for (const auto& [t, bps] : roof) roofs[std::to_string(t)] = bps / 1e9;
    std::printf("%s\n", nlohmann::json{{"points", results}, {"formats", formats}, {"matched", matched}, {"roof_gbps", roofs}}
                             .dump(2)
                             .c_str());
  } else {
    for (const auto& [t, bps] : roof)
      std::printf("memory roof, %d thread%s: %.1f GB/s (a plain read of 1 GiB)\n", t, t == 1 ? "" : "s", bps / 1e9);
    std::printf("\n| shape | layout | effort | threads | dense ms | ms | time / dense | speed-up | GB/s | of roof | cos Gaussian | cos heavy | frontier |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (const auto& r : results)
      std::printf("| %s | %s | %.3g | %d | %.3f | %.3f | %.3f | %.2fx | %.1f | %.0f%% | %.4f | %.4f | %s |\n",
                  r["shape"].get<std::string>().c_str(), r["layout"].get<std::string>().c_str(), r["effort"].get<double>(),
                  r["threads"].get<int>(), r["dense_ms"].get<double>(), r["ms"].get<double>(), r["time_ratio"].get<double>(),
                  r["speedup"].get<double>(), r["gbps"].get<double>(), 100 * r["roof_fraction"].get<double>(),
                  r["cos_gauss"].get<double>(),
                  r["cos_heavy"].get<double>(), r["frontier"].get<bool>() ? "*" : "");
    if (recall_k) {
      std::printf("\nhow often the exact argmax is among the top %zu of the effort product (%zu inputs):\n\n"
                  "| shape | layout | effort | recall |\n|---|---|---|---|\n", recall_k, kRecallInputs);
      for (const auto& r : results)
        if (r["threads"] == threads.front())
          std::printf("| %s | %s | %.3g | %.0f%% |\n", r["shape"].get<std::string>().c_str(),
                      r["layout"].get<std::string>().c_str(), r["effort"].get<double>(), 100 * r["argmax_recall"].get<double>());
    }
    std::printf("\nllama.cpp's formats on the same matrices:\n\n| shape | format | bytes per weight | cos Gaussian | cos heavy |\n"
                "|---|---|---|---|---|\n");
    for (const auto& f : formats)
      std::printf("| %s | %s | %.4f | %.5f | %.5f |\n", f["shape"].get<std::string>().c_str(),
                  f["format"].get<std::string>().c_str(), f["bytes_per_weight"].get<double>(), f["cos_gauss"].get<double>(),
                  f["cos_heavy"].get<double>());
    std::printf("\nthe effort at which each layout reaches a format's Gaussian cos, and its time / dense there:\n\n"
                "| shape | layout | threads | at Q8_0's cos | at Q4_0's cos | at Q4_K's cos |\n|---|---|---|---|---|---|\n");
    for (const auto& m : matched) {
      std::printf("| %s | %s | %d |", m["shape"].get<std::string>().c_str(), m["layout"].get<std::string>().c_str(),
                  m["threads"].get<int>());
      for (const char* format : {"Q8_0", "Q4_0", "Q4_K"}) {
        if (!m.contains(format) || m[format].is_null()) std::printf(" - |");
        else std::printf(" %.3f (%.3f) |", m[format]["effort"].get<double>(), m[format]["time_ratio"].get<double>());
      }
      std::printf("\n");
    }
  }
  if (!plot.empty()) {
    std::map<std::string, cli::PlotSeries> series;
    for (const auto& r : results) {
      const std::string key = r["layout"].get<std::string>() + " " + r["shape"].get<std::string>() + " t" +
                              std::to_string(r["threads"].get<int>());
      auto& line = series[key];
      line.name = key;
      line.x.push_back(r["time_ratio"].get<double>());
      line.y.push_back(r["cos_gauss"].get<double>());
      char label[16];
      std::snprintf(label, sizeof label, "%.3g%s", r["effort"].get<double>(), r["frontier"].get<bool>() ? "*" : "");
      line.labels.push_back(label);
    }
    std::vector<cli::PlotSeries> lines;
    for (auto& [key, line] : series) lines.push_back(std::move(line));
    if (!cli::write_svg_plot(plot, "effort matvec: quality against time (labels: effort, * on the frontier)",
                             "time relative to our dense fp16 matvec", "cosine similarity to the exact product (Gaussian x)", lines))
      throw std::runtime_error("--plot: cannot write " + plot);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return effort::cli::run_tool("effort-kernel-bench", argc, argv, run); }
