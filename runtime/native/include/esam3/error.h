// The one exception type of the library: a message that names the file or input and what is wrong.
#pragma once

#include <stdexcept>
#include <string>

namespace esam3 {

class Esam3Error : public std::runtime_error {
 public:
  explicit Esam3Error(const std::string& message) : std::runtime_error(message) {}
};

// A run stopped on request (SIGINT / SIGTERM) before its outputs were moved into place: nothing was written.
class Interrupted : public Esam3Error {
 public:
  explicit Interrupted(const std::string& message) : Esam3Error(message) {}
};

}  // namespace esam3
