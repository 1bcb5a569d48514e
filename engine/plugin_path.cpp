#include "engine/plugin_path.hpp"

#include <dlfcn.h>

#include <cstdlib>

namespace quarry::engine {

std::string plugin_path(const char* env_variable, const char* file_name) {
  if (const char* path = std::getenv(env_variable); path != nullptr && path[0] != '\0') return path;
  Dl_info self{};
  std::string folder = "./";
  if (dladdr(reinterpret_cast<const void*>(&plugin_path), &self) != 0 &&
      self.dli_fname != nullptr) {
    std::string file = self.dli_fname;
    if (char* real = realpath(self.dli_fname, nullptr)) {
      file = real;
      std::free(real);
    }
    const auto slash = file.rfind('/');
    if (slash != std::string::npos) folder = file.substr(0, slash + 1);
  }
  return folder + file_name;
}

std::string loader_error() {
  const char* message = dlerror();
  return message != nullptr ? message : "unknown error";
}

void* plugin_entry(void* library, const std::string& path, const char* version_symbol,
                   const char* entry_symbol, const char* what, std::string& error) {
  const auto version = reinterpret_cast<const char* (*)()>(dlsym(library, version_symbol));
  void* entry = dlsym(library, entry_symbol);
  if (version == nullptr || entry == nullptr) {
    error = path + " is not " + what;
  } else if (std::string(version()) != QUARRY_VERSION) {
    error = path + " belongs to quarry " + version() + ", not " + QUARRY_VERSION;
  } else {
    return entry;
  }
  dlclose(library);
  return nullptr;
}

}  // namespace quarry::engine
