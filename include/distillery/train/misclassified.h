#pragma once
// The test images a model gets wrong: the pictures a reader looks at first in a run's report.
#include <nlohmann/json.hpp>

#include <string>

#include "distillery/data/dataset.h"
#include "distillery/nn/classifier.h"

namespace distillery::train {

/// Writes `path` (PNG): the first `limit` misclassified images of `test`, in test order, as a
/// grid. Returns them as [{index, label, predicted}] for result.json; writes nothing when the
/// model makes no error.
nlohmann::json save_misclassified(nn::ClassifierImpl& model, const data::Dataset& test, const std::string& path,
                                  int64_t limit = 40);

}  // namespace distillery::train
