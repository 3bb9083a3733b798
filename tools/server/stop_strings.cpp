// stop_strings.cpp: pending_ never holds more than the longest stop string's length - 1 bytes
// between pieces, so a stop string is found whole even when it spans several pieces.
#include "stop_strings.h"

#include <algorithm>

namespace effort::server {

std::string StopStrings::push(std::string_view piece) {
  if (stopped_) return {};
  pending_ += piece;
  std::size_t first = std::string::npos;
  for (const std::string& stop : stops_) first = std::min(first, pending_.find(stop));
  if (first != std::string::npos) {
    stopped_ = true;
    std::string out = pending_.substr(0, first);
    pending_.clear();
    return out;
  }
  // Hold back the longest tail that begins some stop string.
  std::size_t hold = 0;
  for (const std::string& stop : stops_)
    for (std::size_t k = std::min(stop.size() - 1, pending_.size()); k > hold; --k)
      if (pending_.compare(pending_.size() - k, k, stop, 0, k) == 0) {
        hold = k;
        break;
      }
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

}  // namespace effort::server
