#pragma once
// Stopping a long call from outside it (Ctrl-C in Python, a deadline in a service).

#include <functional>

namespace quarry {

/// While alive, the quarry calls this thread makes poll `check` between blocks of rows (at most
/// every few milliseconds, on this thread, never from a worker thread); once it returns true the
/// call stops, frees what it made, and throws quarry::Interrupted (a caller's output buffer then
/// holds only part of the scores). Scopes nest: the innermost one is polled.
class InterruptCheck {
 public:
  explicit InterruptCheck(std::function<bool()> check);
  ~InterruptCheck();
  InterruptCheck(const InterruptCheck&) = delete;
  InterruptCheck& operator=(const InterruptCheck&) = delete;

 private:
  std::function<bool()> check_;
  InterruptCheck* outer_;
  bool requested_ = false;  // the check returned true: every later poll stops the call
  friend bool interrupt_requested();
};

/// Whether the calling thread's InterruptCheck asks to stop (polled as poll_interrupt() polls),
/// for code that must stop by its own means (FAISS's k-means).
bool interrupt_requested();

/// Throws quarry::Interrupted when the calling thread's InterruptCheck asks to stop. Cheap: the
/// check itself runs at most once per few milliseconds.
void poll_interrupt();

/// Whether the calling thread has an InterruptCheck: long loops then work in bounded blocks.
bool interrupt_check_installed();

}  // namespace quarry
