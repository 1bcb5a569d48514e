#pragma once
// Signals the command line handles: a partly written output file is removed when a signal ends
// the process, and a memory-mapped input that shrinks while it is read (SIGBUS) is reported as
// bad input rather than a crash.

#include <initializer_list>
#include <mutex>
#include <string>

namespace quarry::io {

/// While alive, names the temporary file write_file_atomically() is writing, for the handlers
/// remove_partial_output_on() installs. One at a time: a second waits for the first to end.
class PartialOutput {
 public:
  explicit PartialOutput(const std::string& temporary_path);
  ~PartialOutput();
  PartialOutput(const PartialOutput&) = delete;
  PartialOutput& operator=(const PartialOutput&) = delete;

 private:
  std::unique_lock<std::mutex> lock_;
};

/// Installs handlers for `signals` (SIGTERM, SIGINT, ...) that remove the partial output, if one
/// is being written, and then end the process by the same signal, as it would have ended.
void remove_partial_output_on(std::initializer_list<int> signals);

/// Installs a SIGBUS handler that writes "quarry: error: FILES: the file was truncated or changed
/// while it was being read" as one line on stderr and exits with `exit_code`: touching a page of
/// a memory-mapped file past its end, after the file shrank, raises SIGBUS.
void report_truncated_input(const std::string& files, int exit_code);

/// Whether a progress line without its newline is on stderr now: the SIGBUS message then ends it
/// first, and otherwise starts where it is.
void set_progress_line_open(bool open);

}  // namespace quarry::io
