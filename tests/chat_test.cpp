// chat_test.cpp: chat formats: template families recognised from their markers, turns written
// exactly, control tokens in turn text, and the template carried from HF folders into .effort
// and GGUF files.
#include <catch2/catch.hpp>
#include <filesystem>

#include "effort/convert.h"
#include "effort/effort.h"
#include "formats/gguf.h"
#include "test_util.h"

using namespace effort;

TEST_CASE("chat template families are recognised by their markers", "[chat]") {
  // Excerpts of the templates shipped with Mistral-7B-Instruct, Llama-2-chat, a ChatML model
  // (OpenHermes) and Zephyr.
  REQUIRE(detect_chat_format("{{ bos_token }}{% for message in messages %}{{ '[INST] ' + message['content'] + ' [/INST]' }}") ==
          ChatFormat::mistral);
  REQUIRE(detect_chat_format("{% set system_message = '<<SYS>>\\n' + messages[0]['content'] + '\\n<</SYS>>\\n\\n' %}[INST]") ==
          ChatFormat::llama2);
  REQUIRE(detect_chat_format("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n'}}") == ChatFormat::chatml);
  REQUIRE(detect_chat_format("{% if message['role'] == 'user' %}{{ '<|user|>\\n' }}{% endif %}{{ '<|assistant|>' }}") ==
          ChatFormat::zephyr);
  REQUIRE(detect_chat_format("") == ChatFormat::mistral);           // no template: the fallback
  REQUIRE(detect_chat_format("{{ something else }}") == ChatFormat::mistral);
  REQUIRE(chat_format_name(ChatFormat::chatml) == "chatml");
}

TEST_CASE("chat turns are written as each family's template writes them", "[chat]") {
  REQUIRE(chat_user_turn(ChatFormat::mistral, "Be brief.", "Hi", true) == "[INST] Be brief.\n\nHi [/INST]");
  REQUIRE(chat_user_turn(ChatFormat::mistral, "Be brief.", "Again", false) == "[INST] Again [/INST]");
  REQUIRE(chat_user_turn(ChatFormat::llama2, "Be brief.", "Hi", true) == "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]");
  REQUIRE(chat_user_turn(ChatFormat::llama2, "", "Again", false) == "<s>[INST] Again [/INST]");
  REQUIRE(chat_user_turn(ChatFormat::chatml, "Be brief.", "Hi", true) ==
          "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  REQUIRE(chat_user_turn(ChatFormat::zephyr, "", "Hi", true) == "<|user|>\nHi</s>\n<|assistant|>\n");
  REQUIRE(chat_answer_end(ChatFormat::mistral) == "</s>");
  REQUIRE(chat_answer_end(ChatFormat::chatml) == "<|im_end|>\n");
}

TEST_CASE("control tokens written in the text become their ids", "[chat][model]") {
  const Model model = Model::load(test::fixture_model());
  const Tokenizer& t = *model.tokenizer();
  auto concat = [](std::vector<Token> a, const std::vector<Token>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  std::vector<Token> expected = concat(t.encode("Once upon", true), {t.eos_id(), t.bos_id()});
  expected = concat(expected, t.encode("a time", false));
  REQUIRE(t.encode_with_special("Once upon</s><s>a time", true) == expected);
  REQUIRE(t.encode_with_special("no specials", false) == t.encode("no specials", false));
  REQUIRE(t.encode_with_special("</s>", false) == std::vector<Token>{t.eos_id()});
}

TEST_CASE("the chat template travels from an HF folder into .effort and GGUF files", "[chat][model]") {
  test::TempDir dir;
  const auto folder = dir / "chatml-model";
  std::filesystem::create_directory(folder);
  for (const auto& entry : std::filesystem::directory_iterator(test::fixture_model()))
    std::filesystem::create_symlink(entry.path(), folder / entry.path().filename());
  const std::string chatml = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                             "'<|im_end|>' + '\\n'}}{% endfor %}";
  test::write_text(folder / "tokenizer_config.json", nlohmann::json{{"chat_template", chatml}}.dump());
  REQUIRE(Model::load(test::fixture_model()).chat_template().empty());
  const Model hf = Model::load(folder);
  REQUIRE(hf.chat_template() == chatml);
  REQUIRE(hf.chat_format() == ChatFormat::chatml);
  convert_to_effort(folder, dir / "m.effort", {});
  REQUIRE(Model::load(dir / "m.effort").chat_template() == chatml);
  convert_to_gguf(folder, dir / "m.gguf", GgufWeights::f16, {});
  REQUIRE(Model::load(dir / "m.gguf").chat_template() == chatml);

  // effort-run --chat says which format it writes.
  const auto r = test::run_command("printf 'hello\\n' | " + std::string(EFFORT_BIN_DIR) + "/effort-run -m '" + folder.string() +
                                   "' --chat -n 4 --temp 0");
  REQUIRE(r.exit_code == 0);
  REQUIRE(r.output.find("[chat] chatml format (from the model's chat template)") != std::string::npos);
}
