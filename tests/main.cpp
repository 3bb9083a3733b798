// main.cpp: Catch2 main, compiled once, and the census of bad inputs the tests try.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

namespace {

// With EFFORT_TEST_CENSUS=FILE, writes FILE: a table of the refusals the run checked, by test
// file: each passed check of an error's message (REQUIRE/CHECK_THROWS_WITH, or a matcher on an
// exception's what() or an HTTP error's "message") and of a tool's exit code 2 (a bad
// argument), counted every time it runs.
class RefusalCensus : public Catch::TestEventListenerBase {
 public:
  using TestEventListenerBase::TestEventListenerBase;

  bool assertionEnded(const Catch::AssertionStats& stats) override {
    const auto& result = stats.assertionResult;
    const std::string macro(result.getTestMacroName());
    const std::string expression = result.getExpression();
    const bool refusal = macro.find("THROWS_WITH") != std::string::npos ||
                         (macro.find("THAT") != std::string::npos &&
                          (expression.find("what()") != std::string::npos ||
                           expression.find("[\"message\"]") != std::string::npos)) ||
                         expression.find("exit_code == 2") != std::string::npos;
    if (refusal && result.succeeded())
      ++counts_[std::filesystem::path(result.getSourceInfo().file).stem().string()];
    return true;
  }

  void testRunEnded(const Catch::TestRunStats&) override {
    const char* path = std::getenv("EFFORT_TEST_CENSUS");
    if (!path || !*path) return;
    std::ofstream out(path);
    out << "| test file | bad inputs refused with their message |\n| --- | ---: |\n";
    int total = 0;
    for (const auto& [file, n] : counts_) {
      out << "| " << file << " | " << n << " |\n";
      total += n;
    }
    out << "| total | " << total << " |\n";
  }

 private:
  std::map<std::string, int> counts_;
};

}  // namespace

CATCH_REGISTER_LISTENER(RefusalCensus)
