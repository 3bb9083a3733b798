// limits_test.cpp: requests larger than the machine or the file are refused with a message
// before anything is allocated: sessions past available memory, configs whose sizes overflow,
// metadata arrays longer than their file, and conversions onto a full disk.
#include <catch2/catch.hpp>

#include "effort/effort.h"
#include "formats/gguf.h"
#include "model/kv_cache.h"
#include "model/transformer.h"
#include "runtime/memory.h"
#include "test_util.h"

using namespace effort;
using Catch::Contains;

TEST_CASE("a session whose KV cache would not fit in memory is refused before allocating it", "[limits]") {
  const auto available = available_memory();
  if (!available) {
    WARN("skipped: " << "neither /proc/meminfo nor the cgroup says how much memory is available");
    return;
  }
  // 2^30 positions of the fixture's 5 layers x 2 x 32 floats: 1.37 TB of keys and values.
  test::EditedCheckpoint huge([](nlohmann::json& c) { c["max_position_embeddings"] = 1 << 30; });
  huge.link_weights();
  const Model model = Model::load(huge.path());
  const std::uint64_t needed = KvCache::bytes(5, 1 << 30, 32);
  if (needed <= *available) {
    WARN("skipped: " << "this machine has " << format_bytes(*available) << " available");
    return;
  }
  try {
    model.new_session({.context_length = 1 << 30});
    FAIL("a 1.37 TB session was created");
  } catch (const Error& e) {
    REQUIRE(e.code() == ErrorCode::resources);
    REQUIRE_THAT(e.what(), Contains("[session] a context of 1073741824 tokens (KV cache 1.37 TB") &&
                               Contains(" is available; ask for a shorter context"));
  }
  // The same model with the default context (4096 positions, 5 MB) is fine.
  REQUIRE(model.new_session().context_length() == 4096);
}

TEST_CASE("the memory a session is refused on is the memory its buffers take", "[limits]") {
  const ModelConfig c = Model::load(test::fixture_model()).config();
  auto floats = [](const auto&... v) { return sizeof(float) * (v.size() + ...); };
  const Activations a(c, 300);
  REQUIRE(Activations::bytes(c, 300) ==
          floats(a.residual, a.normed, a.q, a.k, a.v, a.attended, a.gate, a.up, a.scores, a.cos, a.sin, a.logits, a.router,
                 a.expert_out, a.expert_sum));
  const BatchActivations b(c, 17);
  REQUIRE(BatchActivations::bytes(c, 17) ==
          floats(b.residual, b.normed, b.q, b.attended, b.k, b.v, b.gate, b.up, b.cos, b.sin, b.packed_x));
  REQUIRE(KvCache::bytes(5, 300, 32) == 2 * sizeof(float) * 5 * 300 * 32);
  REQUIRE(format_bytes(1'370'000'000'000) == "1.37 TB");
  REQUIRE(format_bytes(512) == "512 bytes");
}

TEST_CASE("a config whose sizes multiply past the index types is refused", "[limits][config]") {
  const std::pair<nlohmann::json, const char*> cases[] = {
      {{{"num_attention_heads", 1 << 16}, {"num_key_value_heads", 1 << 16}, {"head_dim", 1 << 16}},
       "num_attention_heads x head_dim = 4294967296 exceeds 2147483647"},
      {{{"hidden_size", 1 << 21}, {"intermediate_size", 1 << 20}}, "hidden_size x intermediate_size = 2199023255552 exceeds"},
      {{{"hidden_size", 1 << 21}, {"vocab_size", 1 << 20}}, "hidden_size x vocab_size"},
  };
  for (const auto& [fields, message] : cases) {
    CAPTURE(fields.dump());
    const nlohmann::json& edit = fields;  // clang 14 captures no structured binding
    test::EditedCheckpoint bad([&](nlohmann::json& c) { c.update(edit); });
    REQUIRE_THROWS_WITH(Model::load(bad.path()), Contains(message));
  }
}

TEST_CASE("a GGUF metadata array longer than the rest of the file is refused before it is read", "[limits][gguf]") {
  test::TempDir dir;
  // Header, one key "a" holding an array of 1000 u64s: 8000 bytes claimed, 16 present.
  std::vector<std::uint8_t> bytes;
  auto put = [&](std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) bytes.push_back(std::uint8_t(v >> (8 * i)));
  };
  put(kGgufMagic, 4), put(3, 4), put(0, 8), put(1, 8);
  put(1, 8), bytes.push_back('a');
  put(std::uint32_t(GgufValue::array), 4), put(std::uint32_t(GgufValue::u64), 4), put(1000, 8);
  put(0, 16);
  test::write_bytes(dir / "long-array.gguf", bytes.data(), bytes.size());
  REQUIRE_THROWS_WITH(GgufFile(dir / "long-array.gguf"), Contains("array of 1000 elements runs past the end of the file"));
}

TEST_CASE("a conversion onto a full disk fails with a message and leaves nothing behind", "[limits][cli]") {
  // A file-size limit stands in for a full disk: past it write() fails with EFBIG (the limit's
  // signal ignored, as bash's ulimit and trap set it for the converter).
  if (test::run_command("bash -c 'ulimit -f 64 && trap \"\" XFSZ'").exit_code != 0)
    {
    WARN("skipped: " << "bash cannot set a file-size limit here");
    return;
  }
  test::TempDir dir;
  for (const char* name : {"out.effort", "out.gguf"}) {
    CAPTURE(name);
    const auto r = test::run_command("bash -c \"ulimit -f 64; trap '' XFSZ; exec '" + std::string(EFFORT_BIN_DIR) +
                                     "/effort-convert' '" + test::fixture_model().string() + "' -o '" +
                                     (dir / name).string() + "'\"");
    REQUIRE(r.exit_code == 1);
    REQUIRE_THAT(r.output, Contains("write failed: File too large"));
    REQUIRE(std::filesystem::is_empty(dir.path));  // no output, no temporary file
  }
}
