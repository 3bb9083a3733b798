// cli_test.cpp: effort-run as a user runs it: the reference greedy ids, and clear errors with a
// non-zero exit for bad input.
#include <catch2/catch.hpp>
#include <fstream>

#include "test_util.h"

namespace {

std::string effort_run() {
  std::string path = EFFORT_BIN_DIR;  // appended, not concatenated: GCC 12 at -O1 warns falsely on the latter
  path += "/effort-run";
  return path;
}
std::string model_arg() { return " -m '" + test::fixture_model().string() + "'"; }

}  // namespace

TEST_CASE("effort-run --prompt-ids 1 -n 200 --temp 0 --ids prints the reference greedy ids", "[model][cli]") {
  const auto ref = test::read_json(test::reference_dir() / "stories260K" / "greedy_from_bos.json");
  std::string expected;
  for (const auto& id : ref["generated_ids"]) expected += (expected.empty() ? "" : ",") + std::to_string(id.get<int>());
  for (const char* threads : {"1", "2"}) {
    const auto r = test::run_command(effort_run() + model_arg() + " --prompt-ids 1 -n 200 --temp 0 --ids -t " + threads + " 2>/dev/null");
    REQUIRE(r.exit_code == 0);
    REQUIRE(r.output.substr(0, r.output.find('\n')) == expected);
  }
}

TEST_CASE("effort-run prints the story and a stats line", "[model][cli]") {
  const auto r = test::run_command(effort_run() + model_arg() + " -p 'Once upon a time' -n 20 --temp 0");
  REQUIRE(r.exit_code == 0);
  // The model's one-line summary (stderr), then the story.
  REQUIRE(r.output.rfind("[model] " + test::fixture_model().string() + ": mistral, 5 layers, hidden 64", 0) == 0);
  REQUIRE(r.output.find("dense\nOnce upon a time, there was a little girl named Lily.") != std::string::npos);
  REQUIRE(r.output.find("[stats] prompt 5 tokens") != std::string::npos);
  REQUIRE(r.output.find("generation 20 tokens") != std::string::npos);
}

TEST_CASE("effort-run takes prompts from files and stdin, and says what it stops at", "[model][cli]") {
  test::TempDir dir;
  const auto prompt_file = dir / "prompt.txt";
  std::ofstream(prompt_file) << "Once upon a time";
  const auto greedy = effort_run() + model_arg() + " -n 20 --temp 0 2>/dev/null";
  const auto from_p = test::run_command(greedy + " -p 'Once upon a time'");
  const auto from_file = test::run_command(greedy + " -f '" + prompt_file.string() + "'");
  const auto from_stdin = test::run_command("printf 'Once upon a time' | " + greedy + " -p -");
  REQUIRE(from_p.exit_code == 0);
  REQUIRE(from_file.output == from_p.output);
  REQUIRE(from_stdin.output == from_p.output);

  auto r = test::run_command(effort_run() + " --version");
  REQUIRE(r.exit_code == 0);
  REQUIRE(r.output.rfind("effort-run " EFFORT_VERSION, 0) == 0);
  for (const char* tool : {"/effort-convert", "/effort-eval"})
    REQUIRE(test::run_command(std::string(EFFORT_BIN_DIR) + tool + " --version").output.find(EFFORT_VERSION) != std::string::npos);

  // A prompt that does not fit: an error before anything is generated.
  r = test::run_command(effort_run() + model_arg() + " -c 4 -p 'Once upon a time there was' -n 5");
  REQUIRE(r.exit_code == 2);
  REQUIRE(r.output.find("the prompt has 7 tokens; the context holds 4 positions") != std::string::npos);
  REQUIRE(r.output.find("Once upon") == std::string::npos);
  // Generation that fills the context says so.
  r = test::run_command(effort_run() + model_arg() + " -c 16 --prompt-ids 1 -n 100 --temp 0 --ids");
  REQUIRE(r.exit_code == 0);
  REQUIRE(r.output.find("[context full: generation stopped after 16 tokens, all 16 positions used") != std::string::npos);
  r = test::run_command(effort_run() + model_arg() + " -c 16 --prompt-ids 1 -n 40 --temp 0 --context-shift --keep 1");
  REQUIRE(r.exit_code == 0);
  REQUIRE(r.output.find("generation 40 tokens") != std::string::npos);
  REQUIRE(r.output.find("[context shift: ") != std::string::npos);

  // min-p 1 keeps the top token alone: greedy at any temperature.
  const auto ids = effort_run() + model_arg() + " --prompt-ids 1 -n 30 --ids 2>/dev/null";
  REQUIRE(test::run_command(ids + " --temp 5 --min-p 1 --seed 3").output == test::run_command(ids + " --temp 0").output);
  REQUIRE(test::run_command(ids + " --min-p 2").exit_code == 2);

  // A system prompt opens the first chat message; it changes what the model is given.
  const auto chat = "printf 'hello\\n' | " + effort_run() + model_arg() + " --chat -n 8 --temp 0 2>/dev/null";
  const auto plain = test::run_command(chat), with_system = test::run_command(chat + " --system 'Tell a story.'");
  REQUIRE(plain.exit_code == 0);
  REQUIRE(with_system.exit_code == 0);
  REQUIRE(plain.output != with_system.output);
  REQUIRE(test::run_command(effort_run() + model_arg() + " --system x").exit_code == 2);

  // No model anywhere: say how to give one.
  r = test::run_command("cd '" + dir.path.string() + "' && EFFORT_MODEL=/nonexistent/model " + effort_run() + " -n 1");
  REQUIRE(r.exit_code == 2);
  REQUIRE(r.output.find("pass -m MODEL or set EFFORT_MODEL") != std::string::npos);
}

TEST_CASE("effort-run --early-exit reports fewer layers per token", "[model][cli]") {
  const auto r = test::run_command(effort_run() + model_arg() +
                                   " --prompt-ids 1 -n 40 --temp 0 --ids --early-exit --exit-layers 2 --exit-threshold 0"
                                   " --exit-patience 1 --exit-warmup 4 --exit-max-consecutive 3");
  REQUIRE(r.exit_code == 0);
  const auto at = r.output.find("| layers ");
  REQUIRE(at != std::string::npos);
  const double layers = std::stod(r.output.substr(at + 9));
  REQUIRE(layers < 5.0);  // exits after layer 2 (3 layers) on 3 of every 4 tokens past warm-up
  REQUIRE(layers > 3.0);
}

TEST_CASE("effort-run --chat answers each line of stdin", "[model][cli]") {
  const auto r = test::run_command("printf 'hello\\nagain\\n' | " + effort_run() + model_arg() + " --chat -n 5 --temp 0");
  REQUIRE(r.exit_code == 0);
  REQUIRE(r.output.find("[stats] prompt") != std::string::npos);
}

TEST_CASE("effort-run rejects bad input with a clear message and a non-zero exit", "[model][cli]") {
  const std::pair<std::string, std::string> cases[] = {
      {" --temp abc", "--temp: expected a number in [0, 1000000], got 'abc'"},
      {" --temp -1", "--temp: expected a number"},
      {" --top-p 0", "--top-p: expected a number in (0, 1], got '0'"},
      {" --top-p 1.5", "--top-p"},
      {" -n -3", "-n: expected an integer in [0, 16777216], got '-3'"},
      {" -n 12x", "got '12x'"},
      {" -t 0", "-t: expected an integer in [1, 1024]"},
      {" --seed -5", "--seed: expected a non-negative integer"},
      {" --prompt-ids 1,,2", "--prompt-ids: expected an integer"},
      {" --prompt-ids 1,99999", "token id 99999 is outside the vocabulary [0, 512)"},
      {" -c 4 --prompt-ids 1,2,3,4,5", "the prompt has 5 tokens; the context holds 4 positions"},
      {" -c 100000", "context_length 100000 exceeds the model's max_position_embeddings 512"},
      {" --arch nope", "unknown kernel arch 'nope'"},
      {" --frobnicate", "unknown option '--frobnicate'"},
      {" -n", "-n: missing value"},
      {" -p hi --prompt-ids 1", "either -p or --prompt-ids"},
      {" --exit-threshold 1.5", "--exit-threshold: expected a number in [0, 1]"},
      {" --early-exit --exit-layers 7", "check layer 7 is outside [0, 4)"},
      {" --exit-patience -1", "--exit-patience: expected an integer"},
      {" --stop-gap -2", "--stop-gap: expected a number"},
  };
  for (const auto& [args, message] : cases) {
    CAPTURE(args);
    const auto r = test::run_command(effort_run() + model_arg() + args);
    REQUIRE(r.exit_code != 0);
    REQUIRE(r.exit_code < 128);  // an error exit, not a signal
    REQUIRE(r.output.find(message) != std::string::npos);
  }
  const auto missing = test::run_command(effort_run() + " -m /nonexistent/model -n 1");
  REQUIRE(missing.exit_code == 1);
  REQUIRE(missing.output.find("/nonexistent/model: no such file or folder") != std::string::npos);
}

TEST_CASE("effort-convert and effort-run --effort work together from the command line", "[model][cli][effort]") {
  test::TempDir dir;
  const std::string convert = std::string(EFFORT_BIN_DIR) + "/effort-convert '" + test::fixture_model().string() + "'";
  const std::string out = (dir / "m.effort").string();
  auto r = test::run_command(convert + " -o '" + out + "'");
  REQUIRE(r.exit_code == 0);
  REQUIRE(r.output.find("wrote " + out) != std::string::npos);
  r = test::run_command(convert + " -o '" + out + "'");
  REQUIRE(r.exit_code == 2);
  REQUIRE(r.output.find("exists (use --force to replace it)") != std::string::npos);
  REQUIRE(test::run_command(convert + " -o '" + out + "' --force").exit_code == 0);

  r = test::run_command(effort_run() + " -m '" + out + "' --prompt-ids 1 -n 20 --temp 0 --ids --effort 0.5 --effort-map down=0.25");
  REQUIRE(r.exit_code == 0);
  REQUIRE(r.output.find("mult ") != std::string::npos);
  REQUIRE(r.output.find(" down 25.0%") != std::string::npos);
  REQUIRE(r.output.find(" up 50.0%") != std::string::npos);
  REQUIRE(r.output.find("head effort 0.5 ") != std::string::npos);  // following --effort
  r = test::run_command(effort_run() + " -m '" + out + "' --prompt-ids 1 -n 5 --temp 0 --ids --effort 0.5 --head-effort 1");
  REQUIRE(r.exit_code == 0);
  REQUIRE(r.output.find("head effort 1 ") != std::string::npos);

  const std::pair<std::string, std::string> cases[] = {
      {" --effort 0", "--effort: expected a number in (0, 1], got '0'"},
      {" --effort nan", "--effort: expected a number"},
      {" --effort 1.5", "--effort: expected a number"},
      {" --effort-map mlp=0.5", "--effort-map: unknown matrix kind 'mlp' (expected q, k, v, o, gate, up or down)"},
      {" --effort-map down", "--effort-map: expected KIND=EFFORT items, got 'down'"},
      {" --effort-map down=0", "--effort-map: expected a number in (0, 1]"},
      {" --arch neon", "unknown kernel arch"},
      {" --bucket-size 3", "unknown option"},
      {" --mem-fraction 2", "--mem-fraction: expected a number"},
      {" --head-effort 0", "--head-effort: expected a number in (0, 1], got '0'"},
      {" --head-candidates 0", "--head-candidates: expected"},
  };
  for (const auto& [args, message] : cases) {
    CAPTURE(args);
    r = test::run_command(effort_run() + " -m '" + out + "' -n 1" + args);
    REQUIRE(r.exit_code == 2);
    REQUIRE(r.output.find(message) != std::string::npos);
  }
  r = test::run_command(effort_run() + model_arg() + " -n 1 --effort 0.5");
  REQUIRE(r.exit_code == 2);  // a bad argument for this model
  REQUIRE(r.output.find("effort below 1 needs a bucketed .effort model") != std::string::npos);
  r = test::run_command(effort_run() + model_arg() + " -n 1 --head-effort 0.5");
  REQUIRE(r.exit_code == 2);
  REQUIRE(r.output.find("head effort below 1 needs a .effort model with a bucketed head") != std::string::npos);

  const std::string convert_bin = std::string(EFFORT_BIN_DIR) + "/effort-convert";
  r = test::run_command(convert_bin);
  REQUIRE(r.exit_code == 2);
  REQUIRE(r.output.find("missing INPUT") != std::string::npos);
  r = test::run_command(convert_bin + " '" + test::fixture_model().string() + "'");
  REQUIRE(r.exit_code == 2);
  REQUIRE(r.output.find("missing -o OUT.effort") != std::string::npos);
  for (const char* size : {"3", "32", "0"}) {
    r = test::run_command(convert_bin + " '" + test::fixture_model().string() + "' -o x.effort --bucket-size " + size);
    REQUIRE(r.exit_code == 2);
    REQUIRE(r.output.find("--bucket-size: expected") != std::string::npos);
  }
  r = test::run_command(convert_bin + " /nonexistent -o '" + (dir / "x.effort").string() + "'");
  REQUIRE(r.exit_code == 1);
  REQUIRE(r.output.find("/nonexistent: no such file or folder") != std::string::npos);
  REQUIRE(!std::filesystem::exists(dir / "x.effort"));
}

TEST_CASE("effort-eval reports effort and early-exit settings, and calibrates thresholds", "[model][cli]") {
  test::TempDir dir;
  const std::string eval = std::string(EFFORT_BIN_DIR) + "/effort-eval" + model_arg() + " --text '" +
                           std::string(EFFORT_SOURCE_DIR) + "/models/stories260K/eval-story.txt' -t 1";
  const std::string calibration = (dir / "cal.json").string();
  auto r = test::run_command(eval + " --calibrate --exit-layers 1,2 --target-disagreement 0.05 --calibration-out '" + calibration + "'");
  REQUIRE(r.exit_code == 0);
  const auto cal = test::read_json(calibration);
  REQUIRE(cal["layer_thresholds"].size() == 2);
  for (const auto& [layer, t] : cal["layer_thresholds"].items()) REQUIRE((t.get<double>() >= 0 && t.get<double>() <= 1));

  r = test::run_command(eval + " --effort 1 --early-exit --exit-layers 2 --exit-threshold 0.5 --exit-warmup 2"
                               " --exit-patience 1 --exit-calibration '" + calibration + "' --json 2>/dev/null");
  REQUIRE(r.exit_code == 0);
  const auto rows = nlohmann::json::parse(r.output);
  REQUIRE(rows.size() == 3);  // effort 1 (a dense model) x {off, t=0.5, calibrated}
  for (const auto& row : rows)
    for (const char* key : {"effort", "early_exit", "ppl", "kl", "top1", "avg_layers", "mult_fraction", "tokens_per_s"})
      REQUIRE(row.contains(key));
  REQUIRE(rows[0]["early_exit"].is_null());
  REQUIRE(rows[0]["kl"].get<double>() < 1e-9);           // effort 1, no exit: the reference itself
  REQUIRE(rows[0]["time_vs_reference"].get<double>() == 1.0);
  REQUIRE(rows[0]["avg_layers"].get<double>() == 5.0);
  REQUIRE(rows[1]["early_exit"]["threshold"].get<double>() == 0.5);
  REQUIRE(rows[1]["avg_layers"].get<double>() < 5.0);    // a low threshold exits
  REQUIRE(rows[2]["early_exit"]["name"] == "calibrated");

  // No plot unless asked for; a bad effort for this model is refused before anything runs.
  r = test::run_command("cd '" + dir.path.string() + "' && " + eval + " --effort 1 2>/dev/null");
  REQUIRE(r.exit_code == 0);
  REQUIRE(!std::filesystem::exists(dir / "effort-eval.svg"));
  r = test::run_command(eval + " --effort 1,0.5 --plot '" + (dir / "p.svg").string() + "'");
  REQUIRE(r.exit_code == 2);
  REQUIRE(r.output.find("--effort 0.5: effort below 1 needs a .effort model") != std::string::npos);
  REQUIRE(r.output.find("| 1 |") == std::string::npos);  // nothing evaluated
  REQUIRE(!std::filesystem::exists(dir / "p.svg"));

  r = test::run_command(effort_run() + model_arg() + " --prompt-ids 1 -n 5 --exit-calibration /nonexistent.json");
  REQUIRE(r.exit_code == 1);
  REQUIRE(r.output.find("--exit-calibration: cannot open /nonexistent.json") != std::string::npos);
}

// [bench]: registered only where the benchmarks are built (not in the sanitizer pass).
TEST_CASE("effort-bench reports llama-bench-shaped tests, every repetition, and clear errors", "[model][cli][bench]") {
  const std::string bench = std::string(EFFORT_BIN_DIR) + "/effort-bench";
  auto r = test::run_command(bench + model_arg() + " -p 16 -n 8 -d 0,8 -r 3 -t 1,2 -o json 2>/dev/null");
  REQUIRE(r.exit_code == 0);
  const auto results = nlohmann::json::parse(r.output);
  REQUIRE(results.size() == 8);  // (pp16, tg8) x (depth 0, 8) x (1, 2 threads)
  std::vector<std::string> names;
  for (const auto& x : results) {
    names.push_back(x["test"].get<std::string>() + "/" + std::to_string(x["threads"].get<int>()));
    for (const char* key : {"model", "threads", "effort", "test", "tps_mean", "tps_sd", "reps", "peak_rss_mb"})
      REQUIRE(x.contains(key));
    const auto reps = x["reps"].get<std::vector<double>>();
    REQUIRE(reps.size() == 3);
    // The summary is the mean and the sample standard deviation of the repetitions listed.
    double mean = 0, ss = 0;
    for (double v : reps) mean += v / 3;
    for (double v : reps) ss += (v - mean) * (v - mean);
    REQUIRE(x["tps_mean"].get<double>() == Approx(mean).epsilon(1e-12));
    REQUIRE(x["tps_sd"].get<double>() == Approx(std::sqrt(ss / 2)).epsilon(1e-9).margin(1e-12));
    REQUIRE(mean > 0);
    REQUIRE(x["peak_rss_mb"].get<double>() > 0);
    if (x["n_gen"].get<int>() > 0) REQUIRE(x.contains("stages_ms_per_token"));
  }
  REQUIRE(names == std::vector<std::string>{"pp16/1", "tg8/1", "pp16@d8/1", "tg8@d8/1", "pp16/2", "tg8/2", "pp16@d8/2", "tg8@d8/2"});

  r = test::run_command(bench + model_arg() + " -p 8 -n 4 -r 1 --stages 2>/dev/null");
  REQUIRE(r.exit_code == 0);
  REQUIRE(r.output.find("| model | size | params | backend | threads | effort | test | t/s | peak RSS |") != std::string::npos);
  REQUIRE(r.output.find("| 1 | pp8 |") != std::string::npos);
  REQUIRE(r.output.find("| multiply | dispatch | attention | head | other |") != std::string::npos);

  const std::pair<std::string, std::string> cases[] = {
      {" -o xml", "-o: expected md or json, got 'xml'"},
      {" -r 0", "-r: expected an integer"},
      {" --effort 0.5", "effort below 1 needs a bucketed .effort model"},
      {" -p 600", "need 600 positions; the model has 512"},
  };
  for (const auto& [args, message] : cases) {
    CAPTURE(args);
    r = test::run_command(bench + model_arg() + args);
    REQUIRE(r.exit_code != 0);
    REQUIRE(r.output.find(message) != std::string::npos);
  }
  r = test::run_command(bench + " -p 8");
  REQUIRE(r.exit_code == 2);
  REQUIRE(r.output.find("missing -m MODEL") != std::string::npos);
}
