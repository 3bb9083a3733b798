// error.h: the one exception type the library throws; what() names the file/tensor/argument.
#pragma once
#include <stdexcept>
#include <string>

namespace effort {

enum class ErrorCode {
  invalid_argument,  // a caller-supplied value is out of range or malformed
  io,                // a file could not be opened, read or written
  format,            // a file's contents are malformed, truncated or inconsistent
  unsupported,       // valid input this build does not handle (dtype, model type, CPU arch)
  resources,         // the request needs more memory than the machine has available
};

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace effort
