// effort_file_test.cpp: the .effort container and effort-convert: round trip, reproducibility,
// no partial output on failure, and clear errors for damaged files.
#include <catch2/catch.hpp>
#include <cstring>
#include <functional>

#include "formats/config_json.h"
#include "effort/convert.h"
#include "effort/effort.h"
#include "formats/effort_file.h"
#include "test_util.h"

using namespace effort;
using Catch::Contains;

namespace {

std::vector<std::string> files_in(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// A hand-made .effort file: magic, version, header JSON, then `data_size` zero bytes.
void write_raw_effort(const std::filesystem::path& path, const nlohmann::json& header, std::size_t data_size,
                      std::uint32_t version = kEffortFormatVersion, const char* magic = kEffortMagic) {
  const std::string text = header.dump();
  std::vector<std::uint8_t> bytes(24);
  std::memcpy(bytes.data(), magic, 8);
  std::memcpy(bytes.data() + 8, &version, 4);
  const std::uint64_t n = text.size();
  std::memcpy(bytes.data() + 16, &n, 8);
  bytes.insert(bytes.end(), text.begin(), text.end());
  bytes.resize((bytes.size() + 63) / 64 * 64 + data_size, 0);
  test::write_bytes(path, bytes.data(), bytes.size());
}

nlohmann::json minimal_header() {
  return {{"config", nlohmann::json::object()}, {"matrices", nlohmann::json::object()},
          {"tensors", {{"a", {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {0, 16}}}}}}};
}

}  // namespace

TEST_CASE("conversion keeps config and tokenizer, and is reproducible", "[model][effort]") {
  test::TempDir dir;
  convert_to_effort(test::fixture_model(), dir / "a.effort", {});
  convert_to_effort(test::fixture_model(), dir / "b.effort", {});
  REQUIRE(test::read_bytes(dir / "a.effort") == test::read_bytes(dir / "b.effort"));
  const EffortFile file(dir / "a.effort");
  const auto config = config_from_json(file.header()["config"], "header");
  const auto original = ModelConfig::from_file(test::fixture_model() / "config.json");
  REQUIRE(config_to_json(config) == config_to_json(original));
  REQUIRE(file.header()["conversion"]["layout"] == "buckets");
  REQUIRE(file.header()["conversion"]["bucket_size"] == 2);  // the default: the fastest at equal quality
  REQUIRE(file.header()["matrices"].size() == 36);
  const auto& tokenizer = file.get("tokenizer.model");
  REQUIRE(std::vector<char>(tokenizer.data, tokenizer.data + tokenizer.num_bytes) ==
          test::read_bytes(test::fixture_model() / "tokenizer.model"));
  const Model model = Model::load(dir / "a.effort");
  REQUIRE(model.tokenizer() != nullptr);
  REQUIRE(model.tokenizer()->encode("Once upon a time", true).size() == 5);
}

TEST_CASE("conversion refuses to overwrite and leaves nothing behind on failure", "[model][effort]") {
  test::TempDir dir;
  test::write_text(dir / "out.effort", "keep me");
  REQUIRE_THROWS_WITH(convert_to_effort(test::fixture_model(), dir / "out.effort", {}),
                      Contains("exists (use --force to replace it)"));
  REQUIRE(test::read_bytes(dir / "out.effort").size() == 7);
  ConvertOptions force;
  force.force = true;
  convert_to_effort(test::fixture_model(), dir / "out.effort", force);
  REQUIRE(is_effort_file(dir / "out.effort"));

  // A checkpoint whose last tensor has the wrong shape fails after the temporary file exists.
  test::TempDir bad;
  std::filesystem::copy_file(test::fixture_model() / "config.json", bad / "config.json");
  const SafetensorsFile source(test::fixture_model() / "model.safetensors");
  std::map<std::string, test::RawTensor> tensors;
  for (const auto& [name, view] : source.tensors())
    tensors.emplace(name, test::RawTensor{view.dtype_name, view.shape, std::vector<std::uint8_t>(view.data, view.data + view.num_bytes)});
  tensors["model.norm.weight"] = test::f32_tensor({32}, std::vector<float>(32, 1.0f));
  test::write_safetensors(bad / "model.safetensors", tensors);
  test::TempDir out;
  bool temp_seen = false;
  ConvertOptions watch;
  watch.on_temp_file = [&](const std::filesystem::path& p) { temp_seen = p.parent_path() == out.path; };
  REQUIRE_THROWS_WITH(convert_to_effort(bad.path, out / "m.effort", watch),
                      Contains("model.norm.weight: expected shape [64], got [32]"));
  REQUIRE(temp_seen);
  REQUIRE(files_in(out.path).empty());
}

TEST_CASE("damaged .effort files are clear errors", "[effort]") {
  test::TempDir dir;
  const auto path = dir / "m.effort";
  SECTION("wrong magic") {
    write_raw_effort(path, minimal_header(), 16, kEffortFormatVersion, "EFFORX\0\0");
    REQUIRE_THROWS_WITH(EffortFile(path), Contains("not an .effort file"));
    REQUIRE_THROWS_WITH(Model::load(path), Contains("expected a .effort file, a GGUF file (F32, F16, BF16 or quantized) or a Hugging Face checkpoint folder"));
  }
  SECTION("wrong version") {
    write_raw_effort(path, minimal_header(), 16, 99);
    REQUIRE_THROWS_WITH(EffortFile(path), Contains("format version 99, this build reads 4"));
    // A file of the previous layout (8-bit entries down to -128) says what to do.
    write_raw_effort(path, minimal_header(), 16, 3);
    REQUIRE_THROWS_WITH(EffortFile(path), Contains("format version 3, this build reads 4: convert the model again"));
  }
  SECTION("truncated") {
    write_raw_effort(path, minimal_header(), 16);
    auto bytes = test::read_bytes(path);
    test::write_bytes(path, bytes.data(), bytes.size() - 8);
    REQUIRE_THROWS_WITH(EffortFile(path), Contains("tensor a: data_offsets [0, 16] outside the data section of 8 bytes"));
    test::write_bytes(path, bytes.data(), 40);
    REQUIRE_THROWS_WITH(EffortFile(path), Contains("runs past the end of the file"));
    test::write_bytes(path, bytes.data(), 12);
    REQUIRE_THROWS_WITH(EffortFile(path), Contains("truncated: 12 bytes, shorter than the 24-byte prefix"));
  }
  SECTION("empty") {
    test::write_bytes(path, nullptr, 0);
    REQUIRE_THROWS_WITH(EffortFile(path), Contains("m.effort: is empty (0 bytes)"));
    REQUIRE_THROWS_WITH(Model::load(path), Contains("m.effort is empty (0 bytes)"));
  }
  SECTION("offsets out of range") {
    auto header = minimal_header();
    header["tensors"]["a"]["data_offsets"] = {64, 80};
    write_raw_effort(path, header, 16);
    REQUIRE_THROWS_WITH(EffortFile(path), Contains("outside the data section"));
  }
  SECTION("misaligned tensor") {
    auto header = minimal_header();
    header["tensors"]["a"]["data_offsets"] = {4, 20};
    write_raw_effort(path, header, 32);
    REQUIRE_THROWS_WITH(EffortFile(path), Contains("tensor a is not 64-byte aligned"));
  }
  SECTION("corrupted header") {
    write_raw_effort(path, minimal_header(), 16);
    auto bytes = test::read_bytes(path);
    bytes[24] = 'x';  // the header's opening brace
    test::write_bytes(path, bytes.data(), bytes.size());
    REQUIRE_THROWS_WITH(EffortFile(path), Contains("header is not valid JSON"));
  }
  SECTION("missing sections") {
    write_raw_effort(path, {{"config", nlohmann::json::object()}}, 0);
    REQUIRE_THROWS_WITH(EffortFile(path), Contains("header has no \"matrices\" object"));
  }
}

TEST_CASE("a converted file with a damaged tensor table is rejected by Model::load", "[model][effort]") {
  test::TempDir dir;
  convert_to_effort(test::fixture_model(), dir / "m.effort", {});
  // Cut the file in the middle of its data: the last tensors now run past the end.
  auto bytes = test::read_bytes(dir / "m.effort");
  test::write_bytes(dir / "cut.effort", bytes.data(), bytes.size() / 2);
  REQUIRE_THROWS_WITH(Model::load(dir / "cut.effort"), Contains("cut.effort") && Contains("outside the data section"));
}

namespace {

// A copy of `from` with the bytes of one tensor changed by `damage`, written with fresh checksums
// (so that only the deeper checks can see the damage).
void rewrite_with(const std::filesystem::path& from, const std::filesystem::path& to, const std::string& tensor,
                  const std::function<void(std::vector<std::uint8_t>&)>& damage) {
  const EffortFile file(from);
  EffortFileWriter writer;
  for (const char* key : {"config", "conversion", "matrices", "tokenizer"}) writer.header()[key] = file.header()[key];
  std::vector<std::string> names;
  for (const auto& [name, info] : file.header()["tensors"].items()) {
    writer.plan(name, info["dtype"].get<std::string>(), info["shape"].get<std::vector<std::int64_t>>());
    names.push_back(name);
  }
  writer.open(to);
  for (const auto& name : names) {
    const auto& t = file.get(name);
    std::vector<std::uint8_t> bytes(t.data, t.data + t.num_bytes);
    if (name == tensor) damage(bytes);
    writer.write(name, bytes.data(), bytes.size());
  }
  writer.finish();
}

}  // namespace

TEST_CASE("checksums and effort-check find damaged data that loading does not", "[model][effort][cli]") {
  test::TempDir dir;
  const auto good = dir / "good.effort";
  convert_to_effort(test::fixture_model(), good, {});
  const std::string check = std::string(EFFORT_BIN_DIR) + "/effort-check ";
  auto r = test::run_command(check + "'" + good.string() + "'");
  REQUIRE(r.exit_code == 0);
  REQUIRE(r.output.find("good.effort: ok") != std::string::npos);
  REQUIRE(r.output.find("every checksum matches") != std::string::npos);
  REQUIRE(r.output.find("36 bucketed matrices (buckets2-q8), the head's among them: positions, stats and probes consistent") != std::string::npos);
  EffortFile(good).verify();

  // Random bytes in the data: loading (header, shapes, ranges) takes them; the checksums do not.
  const auto noisy = dir / "noisy.effort";
  auto bytes = test::read_bytes(good);
  {
    // The tensor's place in the file: the data section starts at the 64-byte boundary after
    // the 24-byte prefix and the header (its size at bytes 16..23).
    std::uint64_t header_size = 0;
    std::memcpy(&header_size, bytes.data() + 16, 8);
    const std::uint64_t data_start = (24 + header_size + 63) / 64 * 64;
    const auto offsets = EffortFile(good).header()["tensors"]["model.layers.2.mlp.up_proj.weight.units"]["data_offsets"];
    for (std::size_t i = 0; i < 64; ++i) bytes[data_start + offsets[0].get<std::uint64_t>() + 100 + i] ^= char(0x5a);
  }
  test::write_bytes(noisy, bytes.data(), bytes.size());
  REQUIRE_NOTHROW(Model::load(noisy));
  REQUIRE_THROWS_WITH(Model::load(noisy, {.verify = true}),
                      Contains("tensor model.layers.2.mlp.up_proj.weight.units: checksum") && Contains("the file is damaged"));
  r = test::run_command(check + "'" + noisy.string() + "'");
  REQUIRE(r.exit_code == 1);
  REQUIRE(r.output.find("model.layers.2.mlp.up_proj.weight.units: checksum") != std::string::npos);
  r = test::run_command(std::string(EFFORT_BIN_DIR) + "/effort-run -m '" + noisy.string() + "' --verify -n 1");
  REQUIRE(r.exit_code == 1);
  REQUIRE(r.output.find("the file is damaged") != std::string::npos);
  REQUIRE_THROWS_WITH(Model::load(test::fixture_model(), {.verify = true}), Contains("verify needs a .effort file"));

  // Damage the checksums cannot see (written with fresh ones): the bucket checks do. Byte 6 of
  // the int8 entries is input 0's bucket 6; its low bit is the position.
  const auto flipped = dir / "flipped.effort";
  rewrite_with(good, flipped, "model.layers.1.self_attn.q_proj.weight.units", [](auto& b) { b[6] ^= 1; });
  REQUIRE_NOTHROW(EffortFile(flipped).verify());
  r = test::run_command(check + "'" + flipped.string() + "'");
  CAPTURE(r.output);
  REQUIRE(r.exit_code == 1);
  REQUIRE(r.output.find("model.layers.1.self_attn.q_proj.weight: input 0, bucket 6: its ranks do not hold every position once") !=
          std::string::npos);
  const auto stats = dir / "stats.effort";
  rewrite_with(good, stats, "model.layers.0.mlp.down_proj.weight.stats", [](auto& b) { b[0] ^= 4; });
  r = test::run_command(check + "'" + stats.string() + "'");
  REQUIRE(r.exit_code == 1);
  REQUIRE(r.output.find("model.layers.0.mlp.down_proj.weight: unit 0: stat") != std::string::npos);
}

TEST_CASE("effort-convert removes what a killed conversion left, and reports progress in logs", "[model][effort][cli]") {
  test::TempDir dir;
  // A temporary file of a process that no longer exists (pid above Linux's maximum, 2^22).
  const auto stale = dir / ".m.effort.tmp-4194400-17";
  test::write_text(stale, "partial");
  const auto other = dir / ".other.effort.tmp-4194400-17";  // another output's: not ours to remove
  test::write_text(other, "partial");
  const auto r = test::run_command(std::string(EFFORT_BIN_DIR) + "/effort-convert '" + test::fixture_model().string() +
                                   "' -o '" + (dir / "m.effort").string() + "' < /dev/null");
  REQUIRE(r.exit_code == 0);
  REQUIRE(!std::filesystem::exists(stale));
  REQUIRE(std::filesystem::exists(other));
  REQUIRE(r.output.find("removed " + stale.string() + ", left by a conversion that was killed") != std::string::npos);
  // Without a terminal, one line per layer.
  REQUIRE(r.output.find("converted model.layers.0.mlp.down_proj.weight (") != std::string::npos);
  REQUIRE(r.output.find("converted model.layers.4.mlp.down_proj.weight (") != std::string::npos);
}
