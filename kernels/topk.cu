// Radix-select top-k. The order key of a score is its float bits made monotone as an unsigned
// integer; scores are canonical (no -0, no NaN), so equal scores have equal keys.

#include <thrust/iterator/counting_iterator.h>

#include <algorithm>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_select.cuh>

#include "kernels/cuda_check.cuh"
#include "kernels/tie_key.hpp"
#include "kernels/topk.cuh"

namespace quarry::kernels {

namespace {

constexpr int kBins = 2048;  // 11 bits per pass: 32 bits in passes of 11, 11 and 10
constexpr int kPassShift[3] = {21, 10, 0};
constexpr int kPassBits[3] = {11, 11, 10};
constexpr int kHistogramThreads = 512;
constexpr int kPickThreads = 1024;  // two bins per thread

__host__ __device__ __forceinline__ uint32_t order_key(float score) {
  uint32_t bits;
  memcpy(&bits, &score, sizeof bits);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}
__device__ __forceinline__ float key_to_score(uint32_t key) {
  const uint32_t bits = (key & 0x80000000u) ? (key & 0x7fffffffu) : ~key;
  return __uint_as_float(bits);
}

struct SelectState {
  uint32_t prefix;      // key bits fixed so far
  uint32_t mask;        // which bits of the key are fixed
  long long remaining;  // how many rows with this prefix still to take
  long long above;      // rows strictly above the threshold (filled after the last pass)
};

__global__ void init_select(SelectState* state, unsigned long long* histogram, int64_t k) {
  for (int b = threadIdx.x; b < kBins; b += blockDim.x) histogram[b] = 0;
  if (threadIdx.x == 0) *state = SelectState{0u, 0u, k, 0};
}

__global__ void __launch_bounds__(kHistogramThreads)
    radix_histogram(const float* __restrict__ scores, int64_t n, const SelectState* state,
                    int shift, int bits, unsigned long long* histogram) {
  __shared__ unsigned int local[kBins];
  for (int b = threadIdx.x; b < kBins; b += blockDim.x) local[b] = 0;
  __syncthreads();
  const uint32_t prefix = state->prefix, mask = state->mask;
  // The digit is this pass's bits only: the last pass has 10, and an 11-bit digit would take in
  // a bit that an earlier pass fixed, moving every count past the bins radix_pick reads.
  const uint32_t digit = (1u << bits) - 1u;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const uint32_t key = order_key(scores[i]);
    if ((key & mask) == prefix) atomicAdd(&local[(key >> shift) & digit], 1u);
  }
  __syncthreads();
  for (int b = threadIdx.x; b < kBins; b += blockDim.x)
    if (local[b] != 0) atomicAdd(&histogram[b], static_cast<unsigned long long>(local[b]));
}

// Finds the bin that holds the `remaining`-th largest key among those with the current prefix,
// fixes its bits, and clears the histogram for the next pass.
__global__ void __launch_bounds__(kPickThreads)
    radix_pick(SelectState* state, unsigned long long* histogram, int shift, int bits) {
  using Scan = cub::BlockScan<unsigned long long, kPickThreads>;
  __shared__ typename Scan::TempStorage temp;
  const int bins = 1 << bits;
  // Thread t holds bins in descending order, so an inclusive scan counts keys >= each bin.
  unsigned long long counts[2];
  int bin[2];
  for (int j = 0; j < 2; ++j) {
    bin[j] = kBins - 1 - (2 * threadIdx.x + j);
    counts[j] = bin[j] < bins ? histogram[bin[j]] : 0ull;
  }
  unsigned long long at_or_above[2];
  Scan(temp).InclusiveSum(counts, at_or_above);
  const long long remaining = state->remaining;
  __syncthreads();
  for (int j = 0; j < 2; ++j) {
    const long long above = static_cast<long long>(at_or_above[j] - counts[j]);
    if (counts[j] != 0 && above < remaining &&
        remaining <= static_cast<long long>(at_or_above[j])) {
      state->prefix |= static_cast<uint32_t>(bin[j]) << shift;
      state->mask |= static_cast<uint32_t>(bins - 1) << shift;
      state->remaining = remaining - above;
    }
    histogram[bin[j]] = 0;
  }
}

struct AboveThreshold {
  const float* scores;
  const SelectState* state;
  __device__ bool operator()(int64_t i) const { return order_key(scores[i]) > state->prefix; }
};
struct AtThreshold {
  const float* scores;
  const SelectState* state;
  __device__ bool operator()(int64_t i) const { return order_key(scores[i]) == state->prefix; }
};

// Concatenates the rows above the threshold (count on the device) with the first rows at it, as
// (key, row) pairs for the final sort.
__global__ void gather_candidates(const float* __restrict__ scores, const int64_t* above,
                                  const int64_t* at, const int64_t* above_count, int64_t k,
                                  uint32_t* keys, int64_t* rows) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= k) return;
  const int64_t g = *above_count;
  const int64_t row = i < g ? above[i] : at[i - g];
  keys[i] = order_key(scores[row]);
  rows[i] = row;
}

// The seeded tie-break's key of each row at the threshold.
__global__ void tie_keys(const int64_t* rows, int64_t count, uint64_t seed, int64_t row_offset,
                         uint64_t* keys) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) keys[i] = tie_key(seed, row_offset + rows[i]);
}

__global__ void keys_to_scores(const uint32_t* keys, int64_t k, float* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < k) out[i] = key_to_score(keys[i]);
}

// Carves the workspace into aligned pieces; with base == nullptr it only measures.
class Carver {
 public:
  explicit Carver(void* base) : base_(static_cast<char*>(base)) {}
  template <typename T>
  T* take(std::size_t count) {
    offset_ = (offset_ + 255) / 256 * 256;
    T* p = base_ ? reinterpret_cast<T*>(base_ + offset_) : nullptr;
    offset_ += count * sizeof(T);
    return p;
  }
  std::size_t used() const { return offset_; }

 private:
  char* base_;
  std::size_t offset_ = 0;
};

struct Buffers {
  SelectState* state;
  unsigned long long* histogram;
  int64_t* counts;  // [0] above the threshold, [1] at it
  int64_t* above;   // < k rows
  int64_t* at;      // up to n rows
  uint32_t* keys_in;
  uint32_t* keys_out;
  int64_t* rows_in;
  uint64_t* ties_in;   // seeded ties: the rows at the threshold's keys, n
  uint64_t* ties_out;  // n
  int64_t* at_by_key;  // the rows at the threshold by ascending key, n
  void* cub_temp;
  std::size_t cub_bytes;
};

std::size_t cub_temp_bytes(int64_t n, int64_t k, bool seeded_ties) {
  std::size_t select_bytes = 0, sort_bytes = 0, ties_bytes = 0;
  thrust::counting_iterator<int64_t> rows(0);
  QUARRY_CUDA_CHECK(
      cub::DeviceSelect::If(nullptr, select_bytes, rows, static_cast<int64_t*>(nullptr),
                            static_cast<int64_t*>(nullptr), n, AboveThreshold{nullptr, nullptr}));
  QUARRY_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(
      nullptr, sort_bytes, static_cast<uint32_t*>(nullptr), static_cast<uint32_t*>(nullptr),
      static_cast<int64_t*>(nullptr), static_cast<int64_t*>(nullptr), k));
  if (seeded_ties)
    QUARRY_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
        nullptr, ties_bytes, static_cast<uint64_t*>(nullptr), static_cast<uint64_t*>(nullptr),
        static_cast<int64_t*>(nullptr), static_cast<int64_t*>(nullptr), n));
  return std::max({select_bytes, sort_bytes, ties_bytes});
}

Buffers carve(void* base, int64_t n, int64_t k, bool seeded_ties, std::size_t cub_bytes,
              std::size_t* total) {
  Carver c(base);
  Buffers b{};
  b.state = c.take<SelectState>(1);
  b.histogram = c.take<unsigned long long>(kBins);
  b.counts = c.take<int64_t>(2);
  b.above = c.take<int64_t>(k);
  b.at = c.take<int64_t>(n);
  b.keys_in = c.take<uint32_t>(k);
  b.keys_out = c.take<uint32_t>(k);
  b.rows_in = c.take<int64_t>(k);
  const int64_t tie_rows = seeded_ties ? n : 0;
  b.ties_in = c.take<uint64_t>(tie_rows);
  b.ties_out = c.take<uint64_t>(tie_rows);
  b.at_by_key = c.take<int64_t>(tie_rows);
  b.cub_temp = c.take<char>(cub_bytes);
  b.cub_bytes = cub_bytes;
  *total = c.used();
  return b;
}

unsigned grid_for(int64_t items, int threads, int64_t max_blocks) {
  return static_cast<unsigned>(std::clamp<int64_t>((items + threads - 1) / threads, 1, max_blocks));
}

}  // namespace

std::size_t topk_workspace_bytes(int64_t n, int64_t k, bool seeded_ties) {
  std::size_t total = 0;
  carve(nullptr, n, k, seeded_ties, cub_temp_bytes(n, k, seeded_ties), &total);
  return total;
}

void topk(const float* scores, int64_t n, int64_t k, int64_t* out_indices, float* out_scores,
          void* workspace, std::size_t workspace_bytes, cudaStream_t stream, const TopkTies& ties) {
  std::size_t total = 0;
  const std::size_t cub_bytes = cub_temp_bytes(n, k, ties.seeded);
  Buffers b = carve(workspace, n, k, ties.seeded, cub_bytes, &total);
  if (workspace_bytes < total) throw InvalidArgument("topk: workspace too small");

  init_select<<<1, 256, 0, stream>>>(b.state, b.histogram, k);
  QUARRY_CHECK_LAUNCH(stream);
  for (int pass = 0; pass < 3; ++pass) {
    radix_histogram<<<grid_for(n, kHistogramThreads * 8, 4096), kHistogramThreads, 0, stream>>>(
        scores, n, b.state, kPassShift[pass], kPassBits[pass], b.histogram);
    QUARRY_CHECK_LAUNCH(stream);
    radix_pick<<<1, kPickThreads, 0, stream>>>(b.state, b.histogram, kPassShift[pass],
                                               kPassBits[pass]);
    QUARRY_CHECK_LAUNCH(stream);
  }
  // Now state->prefix is the k-th largest key t and state->remaining the number of rows equal to
  // t to take. Stable selection keeps both lists in ascending row order.
  thrust::counting_iterator<int64_t> rows(0);
  std::size_t bytes = b.cub_bytes;
  QUARRY_CUDA_CHECK(cub::DeviceSelect::If(b.cub_temp, bytes, rows, b.above, b.counts, n,
                                          AboveThreshold{scores, b.state}, stream));
  bytes = b.cub_bytes;
  QUARRY_CUDA_CHECK(cub::DeviceSelect::If(b.cub_temp, bytes, rows, b.at, b.counts + 1, n,
                                          AtThreshold{scores, b.state}, stream));
  const int64_t* at = b.at;
  if (ties.seeded) {
    // The rows at the threshold by ascending tie key: the first `remaining` of them are kept.
    // Their count sizes the sort, so it comes back to the host first.
    int64_t at_count = 0;
    QUARRY_CUDA_CHECK(
        cudaMemcpyAsync(&at_count, b.counts + 1, sizeof at_count, cudaMemcpyDeviceToHost, stream));
    QUARRY_CUDA_CHECK(cudaStreamSynchronize(stream));
    tie_keys<<<grid_for(at_count, 256, INT32_MAX), 256, 0, stream>>>(b.at, at_count, ties.seed,
                                                                     ties.row_offset, b.ties_in);
    QUARRY_CHECK_LAUNCH(stream);
    bytes = b.cub_bytes;
    QUARRY_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(b.cub_temp, bytes, b.ties_in, b.ties_out,
                                                      b.at, b.at_by_key, at_count, 0, 64, stream));
    at = b.at_by_key;
  }
  gather_candidates<<<grid_for(k, 256, INT32_MAX), 256, 0, stream>>>(scores, b.above, at, b.counts,
                                                                     k, b.keys_in, b.rows_in);
  QUARRY_CHECK_LAUNCH(stream);
  // Stable: equal keys keep ascending row order.
  bytes = b.cub_bytes;
  QUARRY_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(
      b.cub_temp, bytes, b.keys_in, b.keys_out, b.rows_in, out_indices, k, 0, 32, stream));
  keys_to_scores<<<grid_for(k, 256, INT32_MAX), 256, 0, stream>>>(b.keys_out, k, out_scores);
  QUARRY_CHECK_LAUNCH(stream);
}

}  // namespace quarry::kernels
