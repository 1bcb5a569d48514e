#pragma once
// Where libquarry finds the libraries it loads with dlopen (the CUDA backend, FAISS's k-means).

#include <string>

namespace quarry::engine {

/// $`env_variable` when it is set and not empty, else `file_name` in the folder of libquarry.so's
/// file (a symbolic link to libquarry.so is followed: plugins are installed beside the real file).
std::string plugin_path(const char* env_variable, const char* file_name);

/// dlerror()'s message, or "unknown error".
std::string loader_error();

/// Checks a plugin just opened from `path`: that it has `entry_symbol` and a version function
/// `version_symbol` (const char* ()) that returns this build's version. Returns the entry point;
/// else nullptr with `error` saying why (`what` names the plugin), the library closed again.
void* plugin_entry(void* library, const std::string& path, const char* version_symbol,
                   const char* entry_symbol, const char* what, std::string& error);

}  // namespace quarry::engine
