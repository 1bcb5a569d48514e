// Committee kernels. A group of threads owns a row (one warp for rows of up to a few thousand
// classes, a whole block beyond): pass A reduces each member's statistics (validation, softmax
// normaliser, vote); vote measures finish there. Pass B forms the member mean per class, each
// lane for its own classes, and reduces its entropy and, for bald, the members' divergence from
// it; kl_max keeps the mean of the lane's classes and pass C reduces each member's KL to it. The
// row's M*C values are read from device memory once; passes B and C re-read them from cache
// (for rows too large for the caches, from device memory).

#include <algorithm>
#include <cub/block/block_reduce.cuh>
#include <cub/util_ptx.cuh>
#include <cub/warp/warp_reduce.cuh>

#include "kernels/committee.cuh"
#include "kernels/cuda_check.cuh"
#include "kernels/row_reduce.cuh"

namespace quarry::kernels {

namespace {

constexpr int kWarpGroupsPerBlock = 4;
constexpr int64_t kMaxSharedMeanClasses = 1024;  // per warp group, for kl_max
constexpr int kBlockThreads = 256;
// Blocks of a grid whose groups keep scratch in the workspace: at least this many, and more up
// to the device's resident blocks while their scratch stays under kGlobalScratchBytes.
constexpr int64_t kMinBlocksWithGlobalScratch = 128;
constexpr int64_t kGlobalScratchBytes = int64_t{64} << 20;

struct SumOp {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const {
    return a + b;
  }
};

/// Reductions over the threads that own one row, with the result given to every thread.
template <int kThreads>
struct Group;

template <>
struct Group<32> {
  struct TempStorage {};
  __device__ static int lane() { return threadIdx.x % 32; }
  __device__ static void sync() { __syncwarp(); }
  template <typename T, typename Op>
  __device__ static T all_reduce(T value, Op op, TempStorage&) {
    typename cub::WarpReduce<T>::TempStorage temp;  // empty: shuffle-based
    T r = cub::WarpReduce<T>(temp).Reduce(value, op);
    return cub::ShuffleIndex<32>(r, 0, 0xffffffffu);
  }
};

template <>
struct Group<kBlockThreads> {
  union TempStorage {
    typename cub::BlockReduce<ProbStats<float>, kBlockThreads>::TempStorage prob;
    typename cub::BlockReduce<LogitStats<float>, kBlockThreads>::TempStorage logit;
    typename cub::BlockReduce<ArgMax, kBlockThreads>::TempStorage argmax;
    typename cub::BlockReduce<float, kBlockThreads>::TempStorage scalar;
    typename cub::BlockReduce<double, kBlockThreads>::TempStorage wide;
    char broadcast[32];
  };
  __device__ static int lane() { return threadIdx.x; }
  __device__ static void sync() { __syncthreads(); }
  template <typename T, typename Op>
  __device__ static T all_reduce(T value, Op op, TempStorage& temp) {
    using Reduce = cub::BlockReduce<T, kBlockThreads>;
    T r = Reduce(reinterpret_cast<typename Reduce::TempStorage&>(temp)).Reduce(value, op);
    __syncthreads();
    static_assert(sizeof(T) <= sizeof(temp.broadcast));
    if (threadIdx.x == 0) memcpy(temp.broadcast, &r, sizeof r);
    __syncthreads();
    memcpy(&r, temp.broadcast, sizeof r);
    __syncthreads();
    return r;
  }
};

struct MergeArgMax {
  __device__ __forceinline__ ArgMax operator()(const ArgMax& a, const ArgMax& b) const {
    ArgMax r = a;
    r.merge(b);
    return r;
  }
};

// Per-group shared scratch: M votes, for logits each member's largest logit and softmax log-sum
// (see log_softmax), then (kl_max) the member mean of each of the row's classes rounded to float,
// followed by what the rounding left out.
struct MemberScratch {
  int32_t* vote;
  float* max_logit;
  float* log_sum;
  float* mean;  // [classes] means, then [classes] roundings
};

// Floats of class scratch per class (kl_max): the mean and its rounding.
constexpr int64_t kMeanFloatsPerClass = 2;

__host__ __device__ inline std::size_t member_scratch_bytes(int64_t members, bool logits) {
  return static_cast<std::size_t>(members) * (sizeof(int32_t) + (logits ? 2 * sizeof(float) : 0));
}

template <int kThreads, bool kLogits, typename T>
__device__ void score_committee_row(const T* __restrict__ row, int64_t members, int64_t classes,
                                    int64_t member_stride, float scale, MeasureId measure,
                                    MemberScratch scratch,
                                    typename Group<kThreads>::TempStorage& temp, float& score,
                                    uint32_t& flags) {
  using G = Group<kThreads>;
  using Stats = std::conditional_t<kLogits, LogitStats<float>, ProbStats<float>>;
  const int lane = G::lane();
  const bool votes = is_vote_measure(measure);
  flags = 0;
  // Pass A: each member's statistics.
  for (int64_t m = 0; m < members; ++m) {
    const T* member = row + m * member_stride;
    Stats stats;
    if constexpr (kLogits) stats = Stats(scale);
    ArgMax vote;
    for (int64_t c = lane; c < classes; c += kThreads) {
      const float x = to_float(member[c]);
      stats.add(x);
      if (votes) vote.add(x, static_cast<int32_t>(c));  // the argmax of z / T is that of z
    }
    stats = G::all_reduce(stats, MergeStats{}, temp);
    if (votes) vote = G::all_reduce(vote, MergeArgMax{}, temp);
    flags |= stats.row_flags();
    if (lane == 0) {
      if constexpr (kLogits) {
        scratch.max_logit[m] = stats.top1;
        scratch.log_sum[m] = stats.log_sum();
      }
      scratch.vote[m] = vote.index;
    }
  }
  G::sync();
  if (votes) {
    if (lane == 0) {
      heap_sort(scratch.vote, members);
      score = vote_score(measure,
                         tally_sorted_votes(members, [&](int64_t m) { return scratch.vote[m]; }));
    }
    return;
  }
  // Pass B: the member mean q of each of this lane's classes, its entropy, and (bald) the
  // divergence terms of every member from q: bald = (1/M) sum q phi(p/q) (see divergence_term),
  // which keeps its relative precision when the members nearly agree.
  const bool kl = measure == MeasureId::kl_max;
  const bool bald = measure == MeasureId::bald;
  const float inv_members = 1.0f / static_cast<float>(members);
  auto probability = [&](int64_t m, int64_t c) {
    const float x = to_float(row[m * member_stride + c]);
    if constexpr (kLogits)
      return expf(log_softmax(x, scratch.max_logit[m], scale, scratch.log_sum[m]));
    else
      return x;
  };
  float entropy_part = 0.0f, divergence_part = 0.0f;
  for (int64_t c = lane; c < classes; c += kThreads) {
    // kl_max needs the mean's rounding too, so its sum keeps the rounding error of every
    // addition (TwoSum, error-free): sum + error is the members' sum to about float precision
    // squared.
    float sum = 0.0f, error = 0.0f;
    for (int64_t m = 0; m < members; ++m) {
      const float p = probability(m, c);
      const float total = sum + p;
      if (kl) {
        const float p_part = total - sum;
        error += (sum - (total - p_part)) + (p - p_part);
      }
      sum = total;
    }
    const float mean = sum * inv_members;
    entropy_part += entropy_term(mean);
    if (kl) {
      scratch.mean[c] = mean;
      scratch.mean[classes + c] =
          (fmaf(-mean, static_cast<float>(members), sum) + error) * inv_members;
    }
    if (bald && mean > 0.0f)  // the members' values are in L1 from the loop above
      for (int64_t m = 0; m < members; ++m)
        divergence_part += divergence_term(probability(m, c), mean);
  }
  const float consensus = G::all_reduce(entropy_part, SumOp{}, temp);
  if (bald) {
    const float divergence = G::all_reduce(divergence_part, SumOp{}, temp);
    if (lane == 0) score = committee_score(measure, consensus, divergence * inv_members, 0.0f);
    return;
  }
  // Pass C (kl_max): every member's KL to the mean, as the CPU backend computes it:
  //   sum_c q phi(u) + (p - q) - (1 + u) (mean - q),   q = the float mean, u = (p - q) / q,
  // the phi terms in float (never negative), the linear ones (exact differences, and the
  // correction for the rounding of the mean) in double. Each lane reads back only its classes.
  float kl_max = 0.0f;
  if (kl) {
    for (int64_t m = 0; m < members; ++m) {
      float part = 0.0f;
      double linear = 0.0;
      for (int64_t c = lane; c < classes; c += kThreads) {
        const float q = scratch.mean[c];
        if (q > 0.0f) {
          const float difference = probability(m, c) - q;
          const float u = difference / q;
          part += q * relative_divergence(u);
          linear += linear_kl_term(difference, u, scratch.mean[classes + c]);
        }
      }
      const double kl_m = static_cast<double>(G::all_reduce(part, SumOp{}, temp)) +
                          G::all_reduce(linear, SumOp{}, temp);
      kl_max = fmaxf(kl_max, static_cast<float>(kl_m));
    }
  }
  if (lane == 0) score = committee_score(measure, consensus, 0.0f, kl_max);
}

// Where a group's scratch lives: the members' part and (kl_max) the class means each in shared
// memory or in the workspace, `global_per_group` bytes of it per group.
struct ScratchLayout {
  bool members_shared;
  bool mean_shared;
  bool kl;
  std::size_t member_bytes;      // rounded up to 16
  std::size_t shared_per_group;  // rounded up to 16
  std::size_t global_per_group;  // rounded up to 16
};

template <int kThreads, bool kLogits, typename T>
__global__ void __launch_bounds__(kThreads == 32 ? 32 * kWarpGroupsPerBlock : kThreads)
    score_committee_kernel(const T* __restrict__ data, int64_t members, int64_t rows,
                           int64_t classes, int64_t member_stride, int64_t row_stride,
                           int64_t row_offset, float scale, MeasureId measure, ScratchLayout layout,
                           unsigned char* __restrict__ global, float* __restrict__ scores,
                           unsigned long long* first_bad) {
  constexpr int kGroups = kThreads == 32 ? kWarpGroupsPerBlock : 1;
  using G = Group<kThreads>;
  __shared__ typename G::TempStorage temp[kGroups];
  extern __shared__ __align__(16) unsigned char dynamic[];
  const int group = threadIdx.x / kThreads;
  const int64_t group_id = static_cast<int64_t>(blockIdx.x) * kGroups + group;
  unsigned char* shared_mine = dynamic + group * layout.shared_per_group;
  unsigned char* global_mine = global ? global + group_id * layout.global_per_group : nullptr;
  unsigned char* member_base = layout.members_shared ? shared_mine : global_mine;
  MemberScratch scratch;
  scratch.vote = reinterpret_cast<int32_t*>(member_base);
  scratch.max_logit = reinterpret_cast<float*>(scratch.vote + members);
  scratch.log_sum = scratch.max_logit + (kLogits ? members : 0);
  // The means follow the members' part when they share its memory.
  scratch.mean = nullptr;
  if (layout.kl)
    scratch.mean = reinterpret_cast<float*>(
        layout.mean_shared ? shared_mine + (layout.members_shared ? layout.member_bytes : 0)
                           : global_mine + (layout.members_shared ? 0 : layout.member_bytes));
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kGroups;
  for (int64_t r = group_id; r < rows; r += stride) {
    float score = 0.0f;
    uint32_t flags = 0;
    score_committee_row<kThreads, kLogits>(data + r * row_stride, members, classes, member_stride,
                                           scale, measure, scratch, temp[group], score, flags);
    if (G::lane() == 0) {
      scores[r] = score;
      if (flags != 0)
        atomicMin(first_bad,
                  static_cast<unsigned long long>(encode_bad_row(row_offset + r, flags)));
    }
    G::sync();  // scratch is reused by the next row
  }
}

// Threads of the votes kernel: as many as kVoteScratchBytes of sort scratch allows, a multiple
// of a warp, between a warp and kMaxVoteThreads.
constexpr int64_t kVoteScratchBytes = int64_t{32} << 20;
constexpr int64_t kMaxVoteThreads = int64_t{1} << 16;
int64_t vote_threads(int64_t members) {
  const int64_t fit = kVoteScratchBytes / (std::max<int64_t>(members, 1) * sizeof(int64_t));
  return std::clamp<int64_t>(fit / 32 * 32, 32, kMaxVoteThreads);
}

// One thread's copy of a row's votes in the vote workspace: element j of thread i at
// scratch[j * threads + i], so that the threads of a warp touch adjacent words.
struct ThreadVotes {
  int64_t* base;
  int64_t stride;
  __device__ int64_t& operator[](int64_t j) const { return base[j * stride]; }
};

// A thread per row (rows beyond the grid in strides): the row's votes are checked, copied to the
// thread's scratch, sorted, and tallied in one pass.
template <typename V>
__global__ void score_votes_kernel(const V* __restrict__ data, int64_t members, int64_t rows,
                                   int64_t classes, int64_t member_stride, int64_t row_stride,
                                   int64_t row_offset, MeasureId measure, int64_t* scratch,
                                   float* __restrict__ scores, unsigned long long* first_bad) {
  const int64_t threads = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const ThreadVotes votes{scratch + i, threads};
  for (int64_t r = i; r < rows; r += threads) {
    const V* row = data + r * row_stride;
    uint32_t flags = 0;
    for (int64_t m = 0; m < members; ++m) {
      const int64_t v = static_cast<int64_t>(row[m * member_stride]);
      if (v < -1 || (classes > 0 && v >= classes)) flags |= kBadVote;
      votes[m] = v;
    }
    heap_sort(votes, members);
    scores[r] =
        vote_score(measure, tally_sorted_votes(members, [&](int64_t m) { return votes[m]; }));
    if (flags != 0)
      atomicMin(first_bad, static_cast<unsigned long long>(encode_bad_row(row_offset + r, flags)));
  }
}

// How a committee is laid out on the device.
struct CommitteePlan {
  bool block_per_row;  // else a warp per row
  ScratchLayout layout;
  std::size_t shared_bytes;  // dynamic shared memory per block
  int64_t global_blocks;     // blocks with workspace scratch (0: none); caps the grid
  unsigned blocks;
};

// The dynamic shared memory a block may opt in to on the current device, less the block-per-row
// kernels' static share (their reduction storage, rounded up: the compiler's layout may pad it).
// Without the opt-in a block gets 48 KiB; Hopper allows 227 KiB.
std::size_t dynamic_shared_limit() {
  int device = 0, optin = 0;
  QUARRY_CUDA_CHECK(cudaGetDevice(&device));
  QUARRY_CUDA_CHECK(
      cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  const std::size_t fixed = (sizeof(typename Group<kBlockThreads>::TempStorage) + 255) / 256 * 256;
  const std::size_t most = std::max<std::size_t>(static_cast<std::size_t>(optin), 48 * 1024);
  return most - fixed;
}

// Blocks of kBlockThreads the device holds at once.
int64_t resident_blocks() {
  int device = 0, sms = 0, threads = 0;
  QUARRY_CUDA_CHECK(cudaGetDevice(&device));
  QUARRY_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  QUARRY_CUDA_CHECK(
      cudaDeviceGetAttribute(&threads, cudaDevAttrMaxThreadsPerMultiProcessor, device));
  return std::max<int64_t>(1, int64_t{sms} * std::max(1, threads / kBlockThreads));
}

constexpr std::size_t kWarpGroupSharedLimit =
    48 * 1024 - (sizeof(typename Group<kBlockThreads>::TempStorage) + 255) / 256 * 256;

constexpr std::size_t round16(std::size_t bytes) {
  return (bytes + 15) / 16 * 16;
}

// A warp per row while the groups' scratch fits in 48 KiB of shared memory; else a block per row,
// with the members' part and the class means in shared memory as far as they fit and in the
// workspace beyond. Any committee size is scored: the workspace takes what shared memory cannot.
CommitteePlan plan_committee(MeasureId measure, bool logits, int64_t members, int64_t rows,
                             int64_t classes) {
  CommitteePlan plan{};
  const bool kl = measure == MeasureId::kl_max;
  const std::size_t limit = dynamic_shared_limit();
  const std::size_t member = round16(member_scratch_bytes(members, logits));
  const std::size_t mean =
      kl ? round16(static_cast<std::size_t>(kMeanFloatsPerClass * classes) * sizeof(float)) : 0;
  ScratchLayout& layout = plan.layout;
  layout.kl = kl;
  layout.member_bytes = member;
  // Warp groups stay within the 48 KiB every block gets: more would leave few warps per SM.
  plan.block_per_row = classes > kMaxSharedMeanClasses ||
                       kWarpGroupsPerBlock * (member + mean) > kWarpGroupSharedLimit;
  if (!plan.block_per_row) {
    layout.members_shared = layout.mean_shared = true;
  } else {
    layout.members_shared = member <= limit;
    layout.mean_shared = kl && (layout.members_shared ? member : 0) + mean <= limit;
  }
  layout.shared_per_group = (layout.members_shared ? member : 0) + (layout.mean_shared ? mean : 0);
  layout.global_per_group =
      (layout.members_shared ? 0 : member) + (kl && !layout.mean_shared ? mean : 0);
  const int groups = plan.block_per_row ? 1 : kWarpGroupsPerBlock;
  plan.shared_bytes = layout.shared_per_group * groups;
  int64_t blocks = (rows + groups - 1) / groups;
  if (layout.global_per_group > 0) {
    const auto per_block = static_cast<int64_t>(layout.global_per_group);
    plan.global_blocks = std::min(
        resident_blocks(), std::max(kMinBlocksWithGlobalScratch, kGlobalScratchBytes / per_block));
    blocks = std::min(blocks, plan.global_blocks);
  }
  plan.blocks = static_cast<unsigned>(std::min<int64_t>(blocks, int64_t{1} << 30));
  return plan;
}

template <typename T>
void launch_committee_typed(const T* data, bool logits, float scale, MeasureId measure,
                            int64_t members, int64_t rows, int64_t classes, int64_t member_stride,
                            int64_t row_stride, int64_t row_offset, float* scores,
                            unsigned long long* first_bad, void* workspace, cudaStream_t stream) {
  const CommitteePlan plan = plan_committee(measure, logits, members, rows, classes);
  auto* global = plan.global_blocks > 0 ? static_cast<unsigned char*>(workspace) : nullptr;
  auto launch = [&](auto kernel, int threads) {
    // Beyond 48 KiB a kernel must opt in to its dynamic shared memory.
    if (plan.shared_bytes > 48 * 1024)
      QUARRY_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(plan.shared_bytes)));
    kernel<<<plan.blocks, threads, plan.shared_bytes, stream>>>(
        data, members, rows, classes, member_stride, row_stride, row_offset, scale, measure,
        plan.layout, global, scores, first_bad);
  };
  if (plan.block_per_row) {
    if (logits)
      launch(score_committee_kernel<kBlockThreads, true, T>, kBlockThreads);
    else
      launch(score_committee_kernel<kBlockThreads, false, T>, kBlockThreads);
  } else {
    if (logits)
      launch(score_committee_kernel<32, true, T>, 32 * kWarpGroupsPerBlock);
    else
      launch(score_committee_kernel<32, false, T>, 32 * kWarpGroupsPerBlock);
  }
  QUARRY_CHECK_LAUNCH(stream);
}

}  // namespace

std::size_t committee_workspace_bytes(MeasureId measure, bool logits, int64_t members,
                                      int64_t classes) {
  // The grid with workspace scratch never exceeds global_blocks, whatever the rows.
  const CommitteePlan plan = plan_committee(measure, logits, members, INT64_MAX / 2, classes);
  return static_cast<std::size_t>(plan.global_blocks) * plan.layout.global_per_group;
}

void launch_score_committee(const PoolRows& pool, const ScoreParams& params, const ScoreSink& sink,
                            cudaStream_t stream) {
  if (pool.rows <= 0) return;
  if (sink.workspace_bytes <
      committee_workspace_bytes(params.measure, params.logits, pool.members, pool.classes))
    throw InvalidArgument("committee scoring: workspace too small");
  const float scale = params.logits ? params.inv_temperature : 1.0f;
  with_float_type(pool.type, "committee scoring", [&](auto tag) {
    using T = decltype(tag);
    launch_committee_typed(static_cast<const T*>(pool.data), params.logits, scale, params.measure,
                           pool.members, pool.rows, pool.classes, pool.member_stride,
                           pool.row_stride, sink.row_offset, sink.scores, sink.first_bad,
                           sink.workspace, stream);
  });
}

std::size_t votes_workspace_bytes(int64_t members) {
  return static_cast<std::size_t>(vote_threads(members) * std::max<int64_t>(members, 1)) *
         sizeof(int64_t);
}

void launch_score_votes(const PoolRows& pool, const ScoreParams& params, const ScoreSink& sink,
                        cudaStream_t stream) {
  if (pool.rows <= 0) return;
  if (sink.workspace_bytes < votes_workspace_bytes(pool.members))
    throw InvalidArgument("vote scoring: workspace too small");
  const int64_t most = vote_threads(pool.members);  // a multiple of 32
  const int threads = static_cast<int>(std::min<int64_t>(256, most));
  const auto blocks =
      static_cast<unsigned>(std::min((pool.rows + threads - 1) / threads, most / threads));
  auto* scratch = static_cast<int64_t*>(sink.workspace);
  auto launch = [&](const auto* data) {
    score_votes_kernel<<<blocks, threads, 0, stream>>>(
        data, pool.members, pool.rows, pool.classes, pool.member_stride, pool.row_stride,
        sink.row_offset, params.measure, scratch, sink.scores, sink.first_bad);
  };
  if (pool.type == ElementType::i32)
    launch(static_cast<const int32_t*>(pool.data));
  else if (pool.type == ElementType::i64)
    launch(static_cast<const int64_t*>(pool.data));
  else
    throw InvalidArgument("votes must be int32 or int64");
  QUARRY_CHECK_LAUNCH(stream);
}

}  // namespace quarry::kernels
