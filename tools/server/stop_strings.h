// stop_strings.h: the request's "stop" strings applied to streamed text. Text that might be the
// start of a stop string is held back until the next piece decides, so a client never sees part
// of one; the answer ends before the first stop string.
#pragma once
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace effort::server {

class StopStrings {
 public:
  explicit StopStrings(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  // Appends a piece of the answer and returns the text now safe to send (possibly empty).
  // Once a stop string has appeared, stopped() is true and the text from it on is dropped.
  std::string push(std::string_view piece);
  // What is still held back when the answer ends without a stop string.
  std::string flush() { return std::exchange(pending_, {}); }
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace effort::server
