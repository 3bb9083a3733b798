// fixture_effort.h: the fixture model converted to .effort once per test run.
#pragma once
#include <filesystem>
#include <map>

#include "effort/convert.h"
#include "model/bucketize.h"
#include "test_util.h"

namespace test {

// The fixture converted once per test run, bucket size and weights (default: the converter's).
inline const std::filesystem::path& fixture_effort(std::size_t bucket_size = effort::ConvertOptions{}.bucket_size,
                                                   effort::BucketEntries weights = effort::ConvertOptions{}.weights) {
  static TempDir dir;
  static std::map<std::pair<std::size_t, effort::BucketEntries>, std::filesystem::path> paths;
  const auto key = std::pair{bucket_size, weights};
  if (!paths.count(key)) {
    const auto p = dir / ("stories260K-" + effort::layout_name(bucket_size, effort::bucket_weights(weights)) + ".effort");
    effort::ConvertOptions options;
    options.bucket_size = bucket_size;
    options.weights = weights;
    effort::convert_to_effort(fixture_model(), p, options);
    paths[key] = p;
  }
  return paths[key];
}

}  // namespace test
