// isa_check.cpp: effort-isa-check FILE...: disassembles object files or static libraries
// (binutils objdump) and fails on any instruction of a wider instruction set than a function's
// unit may hold (kernels/unit.h): AVX-512 (EVEX) only in effort::kernels::avx512, AVX/AVX2 (VEX)
// there and in effort::kernels::avx2. A function belongs to a unit when its name mentions the
// unit's namespace or its xsimd arch type anywhere (template arguments included): no other
// translation unit can define that symbol, so the linker cannot hand it to a generic caller.
// Exit 0 when every function keeps to its unit, 1 naming each one that does not, 2 for bad use.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

enum class Encoding { legacy, vex, evex };

// The encoding of an instruction from its bytes ("62 f1 7c 48 ..."): in 64-bit mode a first
// opcode byte 62 is EVEX and c4/c5 are VEX, after any address-size or segment prefix (an
// operand-size or repeat prefix before them would make the instruction invalid).
Encoding encoding(const std::string& bytes) {
  std::istringstream in(bytes);
  std::string b;
  while (in >> b) {
    if (b == "67" || b == "2e" || b == "3e" || b == "26" || b == "64" || b == "65" || b == "36") continue;
    if (b == "62") return Encoding::evex;
    if (b == "c4" || b == "c5") return Encoding::vex;
    return Encoding::legacy;
  }
  return Encoding::legacy;
}

bool mentions(const std::string& name, std::initializer_list<const char*> parts) {
  for (const char* p : parts)
    if (name.find(p) != std::string::npos) return true;
  return false;
}
bool may_hold(const std::string& function, Encoding e) {
  if (e == Encoding::legacy) return true;
  if (mentions(function, {"effort::kernels::avx512::", "xsimd::avx512"})) return true;
  return e == Encoding::vex && mentions(function, {"effort::kernels::avx2::", "xsimd::avx2", "xsimd::fma3<"});
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: effort-isa-check FILE... (object files or static libraries; objdump from $OBJDUMP or PATH)\n";
    return 2;
  }
  const char* objdump = std::getenv("OBJDUMP");
  std::map<std::string, std::string> violations;  // function -> first offending instruction
  std::size_t functions = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string command = std::string(objdump && *objdump ? objdump : "objdump") + " -d -C -w '" + argv[i] + "' 2>&1";
    FILE* pipe = popen(command.c_str(), "r");
    if (!pipe) {
      std::cerr << "effort-isa-check: cannot run " << command << "\n";
      return 2;
    }
    std::string line, function, all;
    char buffer[4096];
    while (fgets(buffer, sizeof buffer, pipe)) {
      line = buffer;
      if (!line.empty() && line.back() == '\n') line.pop_back();
      all += line.size() < 200 ? line + "\n" : "";
      // "0000000000000040 <name>:" opens a function; "  40:\t62 f1 ...\tvmovups ..." is an instruction.
      if (line.size() > 3 && line.find(" <") != std::string::npos && line.compare(line.size() - 2, 2, ">:") == 0) {
        function = line.substr(line.find(" <") + 2, line.size() - line.find(" <") - 4);
        ++functions;
        continue;
      }
      const auto tab = line.find('\t');
      if (tab == std::string::npos || function.empty()) continue;
      const auto tab2 = line.find('\t', tab + 1);
      const std::string bytes = line.substr(tab + 1, tab2 == std::string::npos ? std::string::npos : tab2 - tab - 1);
      const Encoding e = encoding(bytes);
      if (!may_hold(function, e) && !violations.count(function))
        violations[function] = std::string(e == Encoding::evex ? "AVX-512 (EVEX)" : "AVX (VEX)") + ": " +
                               (tab2 == std::string::npos ? bytes : line.substr(tab2 + 1));
    }
    if (pclose(pipe) != 0) {
      std::cerr << "effort-isa-check: " << command << " failed:\n" << all.substr(0, 2000);
      return 2;
    }
  }
  if (functions == 0) {
    std::cerr << "effort-isa-check: no functions disassembled from the files given\n";
    return 2;
  }
  for (const auto& [function, instruction] : violations)
    std::cout << "outside its unit: " << function << " holds " << instruction << "\n";
  std::cout << functions << " functions, " << violations.size() << " outside their unit's instruction set\n";
  return violations.empty() ? 0 : 1;
}
