// Shared helpers for the advrec core: argument errors that name the argument.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace advrec {

// Raised as ValueError on the Python side.
struct ArgError : std::invalid_argument {
  explicit ArgError(const std::string& msg) : std::invalid_argument(msg) {}
};
// Raised as IndexError on the Python side.
struct IndexRangeError : std::out_of_range {
  explicit IndexRangeError(const std::string& msg) : std::out_of_range(msg) {}
};

int openmp_max_threads();

}  // namespace advrec
