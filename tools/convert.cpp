// effort-convert: a Hugging Face checkpoint folder or a GGUF file -> one .effort file, or a GGUF
// file for llama.cpp.
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "cli.h"
#include "effort/convert.h"

namespace {

constexpr const char* kUsage = R"(usage: effort-convert INPUT -o OUT.effort [options]
       effort-convert INPUT -o OUT.gguf [--type f16|f32|q8_0] [--force]
  INPUT             a Hugging Face checkpoint folder (config.json + *.safetensors [+ tokenizer.model])
                    or a GGUF file of a llama/mistral model (F32, F16, BF16, Q4_0..Q8_0, Q4_K..Q6_K)
  -o, --output PATH the .effort file to write; a PATH ending in .gguf writes a GGUF file that
                    llama.cpp loads instead (matrices in --type, default f16), for side-by-side runs
      --force       replace PATH if it exists
      --bucket-size S  outputs per bucket: 1, 2, 4, 8 or 16; small buckets are cheaper per
                    weight on a CPU, large ones lose less quality at equal effort (default 2)
      --weights q8|f16  bucketed entries as int8 with an fp16 scale per 32 and the output head
                    in Q8_0 (q8, the default: 1.06 bytes per weight, faster), or as fp16 (2
                    bytes: effort 1 is exact to fp16, for the last bit of quality)
      --probes N    probe units per matrix for the effort cutoff (default 4096)
      --seed S      probe sampling seed (default 1)
      --merge-lora FILE  merge a LoRA adapter (PEFT folder or .safetensors, or llama.cpp GGUF
                    adapter) into the weights written; repeat for several
      --merge-lora-scaled FILE S  the same at scale S
  -h, --help        this text
The file is written to a temporary name beside PATH and renamed when complete; an interrupted or
failed conversion leaves nothing behind.
)";

// The temporary file, for the signal handler (which may only call async-signal-safe functions).
char g_temp_path[4096] = "";

extern "C" void on_signal(int sig) {
  if (g_temp_path[0]) ::unlink(g_temp_path);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void draw_progress(std::size_t done, std::size_t total) {
  constexpr int kWidth = 40;
  const int filled = int(kWidth * done / total);
  std::fprintf(stderr, "\r[%.*s%*s] %zu/%zu tensors", filled, "########################################", kWidth - filled, "",
               done, total);
  if (done == total) std::fputc('\n', stderr);
}

int run(int argc, char** argv) {
  std::string input, output;
  effort::ConvertOptions options;
  effort::GgufWeights gguf_type = effort::GgufWeights::f16;
  bool type_given = false;
  effort::cli::ArgReader args(argc, argv, kUsage);
  while (!args.done()) {
    const std::string f = args.next_flag();
    if (f == "-o" || f == "--output") output = args.value();
    else if (f == "--force") options.force = true;
    else if (f == "--bucket-size") options.bucket_size = effort::cli::parse_bucket_size(f, args.value());
    else if (f == "--weights") options.weights = effort::cli::parse_bucket_weights(f, args.value());
    else if (f == "--probes") options.max_probes = std::size_t(effort::cli::parse_int(f, args.value(), 1, 1 << 24));
    else if (f == "--seed") options.seed = effort::cli::parse_u64(f, args.value());
    else if (f == "--merge-lora") options.merge_adapters.emplace_back(args.value(), 1.0f);
    else if (f == "--merge-lora-scaled") {
      const std::string path = args.value();
      options.merge_adapters.emplace_back(path, float(effort::cli::parse_number(f, args.value(), -1e6, 1e6)));
    }
    else if (f == "--type") {
      const std::string t = args.value();
      if (t == "f16") gguf_type = effort::GgufWeights::f16;
      else if (t == "f32") gguf_type = effort::GgufWeights::f32;
      else if (t == "q8_0") gguf_type = effort::GgufWeights::q8_0;
      else throw effort::cli::UsageError("--type: expected f16, f32 or q8_0, got '" + t + "'");
      type_given = true;
    }
    else if (!f.empty() && f[0] == '-') throw effort::cli::UsageError("unknown option '" + f + "' (see --help)");
    else if (input.empty()) input = f;
    else throw effort::cli::UsageError("more than one INPUT: '" + input + "' and '" + f + "'");
  }
  if (input.empty()) throw effort::cli::UsageError("missing INPUT (see --help)");
  if (output.empty()) throw effort::cli::UsageError("missing -o OUT.effort");

  options.on_temp_file = [](const std::filesystem::path& path) {
    std::snprintf(g_temp_path, sizeof g_temp_path, "%s", path.c_str());
  };
  options.on_stale_temp_removed = [](const std::filesystem::path& path) {
    std::fprintf(stderr, "removed %s, left by a conversion that was killed\n", path.c_str());
  };
  if (isatty(STDERR_FILENO)) options.progress = [](std::size_t done, std::size_t total, const std::string&) { draw_progress(done, total); };
  // Without a terminal: one line per layer (per expert), so a log shows the conversion moving.
  else options.progress = [](std::size_t done, std::size_t total, const std::string& tensor) {
    const bool layer_done = tensor.find("mlp.down_proj") != std::string::npos || tensor.find(".w2.weight") != std::string::npos;
    if (layer_done || done == total) std::fprintf(stderr, "converted %s (%zu/%zu tensors)\n", tensor.c_str(), done, total);
  };
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) std::signal(sig, on_signal);
  const bool to_gguf = std::filesystem::path(output).extension() == ".gguf";
  if (type_given && !to_gguf) throw effort::cli::UsageError("--type applies to a .gguf output only");
  const auto start = std::chrono::steady_clock::now();
  if (to_gguf) effort::convert_to_gguf(input, output, gguf_type, options);
  else effort::convert_to_effort(input, output, options);
  g_temp_path[0] = '\0';
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr, "wrote %s: %.1f MB in %.2f s\n", output.c_str(), double(std::filesystem::file_size(output)) / 1e6, seconds);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return effort::cli::run_tool("effort-convert", argc, argv, run); }
