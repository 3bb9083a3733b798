// effort-kernel-bench: the effort matvec against our dense fp16 matvec on Mistral-7B shapes,
// measured in the same run: median time, speed-up, GB/s of weight bytes actually read, and
// cosine similarity to the exact product.
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "bench_util.h"
#include "bucketize.h"
#include "cli.h"
#include "svg_plot.h"
#include "kernels/fp16.h"
#include "linear.h"

namespace {

using namespace effort;

constexpr const char* kUsage = R"(usage: effort-kernel-bench [options]
  --shapes LIST   out x in shapes (default 4096x4096,1024x4096,14336x4096,4096x14336)
  --efforts LIST  (default 1,0.5,0.25,0.125)
  --layouts LIST  bucket size:group pairs (default 16:1, the canonical layout; e.g. 16:1,8:1,16:8)
  -t LIST         thread counts (default 1)
  -r N            timed repetitions per point, after one warm-up (default 7)
  --arch NAME     scalar, avx2 or avx512 (default: the best this CPU runs)
  --json          print a JSON list instead of a markdown table
  --plot FILE     also write an SVG plot: cosine similarity against time relative to dense,
                  one line per layout, shape and thread count
Weights are random N(0, 0.02) (fp16), inputs heavy-tailed (Student t, 3 degrees of freedom).
Several copies of each matrix are cycled so that every product streams from memory; dense and
effort products alternate, so a slow phase of a shared machine affects both alike.
)";

// Working set per shape: enough copies that no product finds its weights in cache.
constexpr double kMinWorkingSetBytes = 512e6;

struct Shape {
  std::size_t out, in;
};

int run(int argc, char** argv) {
  std::vector<Shape> shapes = {{4096, 4096}, {1024, 4096}, {14336, 4096}, {4096, 14336}};
  std::vector<float> efforts = {1.0f, 0.5f, 0.25f, 0.125f};
  std::vector<int> threads = {1};
  std::vector<std::pair<std::size_t, std::size_t>> layouts = {{16, 1}};
  int reps = 7;
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
    } else if (f == "--layouts") {
      layouts = cli::parse_layouts(f, args.value());
    } else if (f == "-t") {
      threads.clear();
      for (const auto& t : cli::split_list(args.value())) threads.push_back(int(cli::parse_int(f, t, 1, 1024)));
    } else if (f == "-r") reps = int(cli::parse_int(f, args.value(), 1, 10000));
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

  nlohmann::json results = nlohmann::json::array();
  if (!json_out)
    std::printf("| shape | layout | effort | threads | dense ms | ms | speedup | GB/s | cos |\n|---|---|---|---|---|---|---|---|---|\n");
  std::mt19937 rng(1);
  for (const Shape& shape : shapes) {
    const std::size_t out = shape.out, in = shape.in;
    std::normal_distribution<float> weight(0.0f, 0.02f);
    std::vector<float> w(out * in);
    for (auto& v : w) v = kernels::half_to_float(kernels::float_to_half(weight(rng)));
    std::vector<std::uint16_t> w16(w.size());
    for (std::size_t i = 0; i < w.size(); ++i) w16[i] = kernels::float_to_half(w[i]);
    std::student_t_distribution<float> heavy(3.0f);
    std::vector<float> x(in);
    for (auto& v : x) v = heavy(rng);
    std::vector<double> exact(out, 0.0);
    for (std::size_t o = 0; o < out; ++o)
      for (std::size_t j = 0; j < in; ++j) exact[o] += double(w[o * in + j]) * x[j];

    const double weight_bytes = double(out) * double(in) * 2;
    const std::size_t copies = std::max<std::size_t>(1, std::size_t(std::ceil(kMinWorkingSetBytes / weight_bytes)));
    std::vector<std::vector<std::uint16_t>> dense_copies(copies, w16);
    std::vector<float> y(out);
    const std::string name = std::to_string(out) + "x" + std::to_string(in);
    for (const auto& [bucket_size, group] : layouts) {
      BucketizeOptions options;
      options.bucket_size = bucket_size;
      options.group = group;
      const BucketizedMatrix b = bucketize(w.data(), out, in, options, "bench");
      std::vector<std::vector<std::uint16_t>> unit_copies(copies, b.units);
      std::vector<Matrix> bucketed;
      for (std::size_t c = 0; c < copies; ++c) {
        BucketMatrix m = as_matrix(b, bucket_size * b.num_tiles);
        m.view.units = unit_copies[c].data();
        bucketed.push_back(std::move(m));
      }
      BucketScratch scratch({&std::get<BucketMatrix>(bucketed[0])});
      const std::string layout = layout_name(bucket_size, group);
      for (int t : threads) {
        ThreadPool pool(t);
        EffortState state;
        const Compute compute{kernels::kernel_table(arch), pool, &state, &scratch};
        // One pass over every copy first: fresh allocations pay for page faults and compaction.
        for (std::size_t c = 0; c < copies; ++c) {
          matvec(DenseMatrix{kernels::DType::f16, dense_copies[c].data(), out, in}, x.data(), y.data(), compute);
          matvec(bucketed[c], 0, MatrixKind::up_proj, x.data(), y.data(), compute);
        }
        std::size_t next = 0;
        for (float effort : efforts) {
          state.set_all(effort);
          state.stats = EffortStats{};
          const auto [dense_reps, effort_reps] = bench::time_interleaved(
              reps,
              [&] {
                const DenseMatrix dense{kernels::DType::f16, dense_copies[next % copies].data(), out, in};
                matvec(dense, x.data(), y.data(), compute);
              },
              [&] { matvec(bucketed[next++ % copies], 0, MatrixKind::up_proj, x.data(), y.data(), compute); });
          const double dense_s = bench::median(dense_reps), s = bench::median(effort_reps);
          const double fraction = state.stats.fraction(MatrixKind::up_proj);
          // Bytes read per product: the dispatched units, every unit's stats, the probes.
          const double bytes = fraction * weight_bytes + double(b.stats.size()) * 4 + double(b.probe_stats.size()) * 4;
          double ab = 0, aa = 0, bb = 0;
          for (std::size_t o = 0; o < out; ++o) ab += exact[o] * y[o], aa += exact[o] * exact[o], bb += double(y[o]) * y[o];
          const double cos = ab / std::sqrt(aa * bb);
          results.push_back({{"shape", name}, {"layout", layout}, {"effort", effort}, {"threads", t},
                             {"dense_ms", dense_s * 1e3}, {"ms", s * 1e3}, {"speedup", dense_s / s},
                             {"gbps", bytes / s / 1e9}, {"cos", cos}, {"dispatched", fraction},
                             {"arch", std::string(kernels::arch_name(arch))}});
          if (!json_out)
            std::printf("| %s | %s | %.3g | %d | %.3f | %.3f | %.2fx | %.1f | %.5f |\n", name.c_str(), layout.c_str(), effort,
                        t, dense_s * 1e3, s * 1e3, dense_s / s, bytes / s / 1e9, cos);
          std::fflush(stdout);
        }
      }
    }
  }
  if (json_out) std::printf("%s\n", results.dump(2).c_str());
  if (!plot.empty()) {
    std::map<std::string, cli::PlotSeries> series;
    for (const auto& r : results) {
      const std::string key = r["layout"].get<std::string>() + " " + r["shape"].get<std::string>() + " t" +
                              std::to_string(r["threads"].get<int>());
      auto& line = series[key];
      line.name = key;
      line.x.push_back(r["ms"].get<double>() / r["dense_ms"].get<double>());
      line.y.push_back(r["cos"].get<double>());
      char label[16];
      std::snprintf(label, sizeof label, "%.3g", r["effort"].get<double>());
      line.labels.push_back(label);
    }
    std::vector<cli::PlotSeries> lines;
    for (auto& [key, line] : series) lines.push_back(std::move(line));
    if (!cli::write_svg_plot(plot, "effort matvec: quality against time (labels: effort)",
                             "time relative to our dense fp16 matvec", "cosine similarity to the exact product", lines))
      throw std::runtime_error("--plot: cannot write " + plot);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return effort::cli::run_tool("effort-kernel-bench", argc, argv, run); }
