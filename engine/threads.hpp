#pragma once
// The calling thread's side of a call: OpenMP after fork(), and polling for an interrupt.

#include <cstdint>

#include "quarry/interrupt.hpp"

namespace quarry::engine {

/// Run at the start of every call. In a process forked after a call had run (OpenMP's worker
/// threads are then gone, and libgomp would wait for them forever), the calling thread runs its
/// parallel regions with one thread.
void prepare_calling_thread();

/// Rows per block for a loop over rows of `elements_per_row` elements that polls for an
/// interrupt between blocks: all rows when no InterruptCheck is installed, else a few
/// milliseconds of work.
int64_t interruptible_block_rows(int64_t rows, int64_t elements_per_row);

}  // namespace quarry::engine
