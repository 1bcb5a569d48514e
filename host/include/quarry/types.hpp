#pragma once
// Value types of the public API: dtypes, measures, input views, options and results.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace quarry {

/// Element type of an input. f16 and bf16 are IEEE binary16 and bfloat16 bit patterns. f64 pools
/// (host memory only) are converted to f32 a bounded chunk of rows at a time as they are read.
enum class DType { f32, f16, bf16, i32, i64, f64 };

/// Size of one element in bytes.
std::size_t dtype_size(DType dtype);
/// "f32", "f16", "bf16", "i32", "i64".
std::string_view to_string(DType dtype);

/// Where the bytes of an input live.
enum class MemorySpace { host, device };

/// How a committee's 3-D array is laid out.
enum class Layout {
  members_first,  ///< [M, N, C]: M models' outputs stacked.
  rows_first,     ///< [N, M, C]: an MC-dropout loop's samples per row.
};

/// Uncertainty and disagreement measures. For every measure a higher score means "select first".
/// Exact definitions: docs/measures.md.
enum class Measure {
  least_confidence,   ///< 1 - p1
  margin,             ///< 1 - (p1 - p2)
  ratio,              ///< p2 / p1
  entropy,            ///< -sum p ln p
  vote_entropy,       ///< entropy of the committee's argmax votes
  consensus_entropy,  ///< entropy of the committee mean
  kl_max,             ///< max over members of KL(p_m || mean)
  bald,               ///< H(mean) - mean of H(p_m)
  variation_ratio,    ///< 1 - (votes of the modal class) / (members that voted)
  egl,                ///< expected gradient length of a softmax last layer; needs features
  // LLM outputs. The measure says how the pool is read (PoolView::token_logprobs, top_logprobs,
  // samples).
  sequence_nll,        ///< token log-probabilities [N, T]: -sum_t l_t over the row's length
  perplexity,          ///< -(1/L) sum_t l_t (log scale)
  min_token_prob,      ///< -min_t l_t: the largest token surprisal
  mean_token_entropy,  ///< top-K log-probabilities [N, T, K]: mean over steps of the entropy
  max_token_entropy,   ///< max over steps of the entropy of the renormalised top-K
  mean_token_margin,   ///< mean over steps of 1 - (p1 - p2) of the renormalised top-K
  sample_dispersion,   ///< embeddings of S sampled answers [N, S, D]: 1 - mean cosine
  eigenscore,          ///< (1/S) sum ln eigenvalues of the centred Gram + alpha I
  semantic_sets,       ///< connected components of the graph cosine >= threshold
  semantic_entropy,    ///< entropy of the component sizes
};
/// How many measures there are: the last one's number + 1. A new measure goes at the end of the
/// enum, with a row in the measure table (quarry/measures.hpp); compile-time checks hold the
/// table, this count and the kernels' mirror enum together.
inline constexpr int kMeasureCount = static_cast<int>(Measure::semantic_entropy) + 1;

/// Parses a measure name as docs/measures.md writes it ("entropy", "kl_max", ...).
/// Throws InvalidArgument for an unknown name.
Measure parse_measure(std::string_view name);
std::string_view to_string(Measure measure);
/// True for the measures that need a committee (several members, or votes).
bool is_committee_measure(Measure measure);
/// True for the measures that read ScoreOptions::features besides the pool (egl).
bool needs_features(Measure measure);

/// What a measure reads.
enum class PoolKind {
  predictions,     ///< [N, C] probabilities or logits of one model
  committee,       ///< [M, N, C] or [N, M, C] probabilities or logits, or [M, N] votes
  token_logprobs,  ///< [N, T] log-probabilities of the generated tokens, with lengths
  top_logprobs,    ///< [N, T, K] top-K log-probabilities per step, with lengths
  samples,         ///< [N, S, D] embeddings of S sampled answers per row
};
PoolKind pool_kind(Measure measure);
/// "predictions", "committee", "token_logprobs", "top_logprobs", "samples".
std::string_view to_string(PoolKind kind);

/// A read-only view of a pool of predictions. Strides are in elements, not bytes.
///
/// Element (member m, row n, class c) lives at `data + m*member_stride + n*row_stride + c`.
/// A single model's [N, C] predictions have members == 1. Votes ([M, N] integer class labels,
/// -1 = abstained) have no class axis: element (m, n) lives at `data + m*member_stride +
/// n*row_stride`, and `classes` is the number of classes (0 = infer as the largest vote + 1).
///
/// LLM outputs use the same fields, read as the measure says (pool_kind()):
/// - token log-probabilities [N, T]: members = 1, classes = T steps;
/// - top-K log-probabilities [N, T, K]: members = T steps, classes = K, member_stride between
///   steps;
/// - sampled answers' embeddings [N, S, D]: members = S samples, classes = D dimensions.
/// Token and top-K pools may carry `lengths`: N integers (i32 or i64, in the same memory space
/// as `data`), each row's number of valid steps, 1 <= length <= T; steps past a row's length are
/// never read. Null: every row has all T steps.
struct PoolView {
  const void* data = nullptr;
  DType dtype = DType::f32;
  MemorySpace space = MemorySpace::host;
  int64_t members = 1;
  int64_t rows = 0;
  int64_t classes = 0;
  int64_t member_stride = 0;
  int64_t row_stride = 0;
  const void* lengths = nullptr;
  DType lengths_dtype = DType::i64;

  /// True when the view holds integer votes rather than probabilities or logits.
  bool is_votes() const { return dtype == DType::i32 || dtype == DType::i64; }

  /// A C-contiguous [rows, classes] matrix of one model's outputs.
  static PoolView matrix(const void* data, DType dtype, int64_t rows, int64_t classes,
                         MemorySpace space = MemorySpace::host);
  /// A C-contiguous committee array: [members, rows, classes] or [rows, members, classes].
  static PoolView committee(const void* data, DType dtype, int64_t members, int64_t rows,
                            int64_t classes, Layout layout = Layout::members_first,
                            MemorySpace space = MemorySpace::host);
  /// A C-contiguous [members, rows] array of integer votes (i32 or i64), -1 = abstained.
  static PoolView votes(const void* data, DType dtype, int64_t members, int64_t rows,
                        int64_t classes = 0, MemorySpace space = MemorySpace::host);
  /// C-contiguous [rows, steps] log-probabilities of the generated tokens; `lengths` (rows
  /// integers of `lengths_dtype`, or null for full rows).
  static PoolView token_logprobs(const void* data, DType dtype, int64_t rows, int64_t steps,
                                 const void* lengths = nullptr, DType lengths_dtype = DType::i64,
                                 MemorySpace space = MemorySpace::host);
  /// C-contiguous [rows, steps, k] top-K log-probabilities per step (-inf where fewer than K were
  /// returned, in any order), with lengths as token_logprobs().
  static PoolView top_logprobs(const void* data, DType dtype, int64_t rows, int64_t steps,
                               int64_t k, const void* lengths = nullptr,
                               DType lengths_dtype = DType::i64,
                               MemorySpace space = MemorySpace::host);
  /// C-contiguous [rows, samples, dim] embeddings of each row's sampled answers.
  static PoolView samples(const void* data, DType dtype, int64_t rows, int64_t samples, int64_t dim,
                          MemorySpace space = MemorySpace::host);
};

/// A read-only view of row embeddings [rows, dim] (f32 or f16), `row_stride` elements apart.
struct EmbeddingView {
  const void* data = nullptr;
  DType dtype = DType::f32;
  MemorySpace space = MemorySpace::host;
  int64_t rows = 0;
  int64_t dim = 0;
  int64_t row_stride = 0;

  /// A C-contiguous [rows, dim] matrix.
  static EmbeddingView matrix(const void* data, DType dtype, int64_t rows, int64_t dim,
                              MemorySpace space = MemorySpace::host);
};

/// k-means settings.
struct KMeansOptions {
  /// Lloyd iterations at most; the CUDA backend stops early once no assignment changes.
  int iterations = 25;
  /// Seeds the k-means++ initialisation.
  uint64_t seed = 0;
  /// k * dim initial centroids; empty = seeded k-means++.
  std::vector<float> initial_centroids;
};

/// The result of kmeans().
struct KMeansResult {
  std::vector<float> centroids;      ///< k * dim
  std::vector<int32_t> assignments;  ///< nearest centroid of each point
  double inertia = 0;                ///< sum of squared distances to the assigned centroids
  int iterations = 0;                ///< Lloyd iterations run
};

/// How rows are scored.
struct ScoreOptions {
  Measure measure = Measure::entropy;
  /// Inputs are logits: a numerically stable softmax(z / temperature) is fused into the scoring.
  bool logits = false;
  /// Softmax temperature for logits; must be finite and > 0.
  float temperature = 1.0f;
  /// Penultimate-layer features h [N, D] of the pool rows (f32, f16 or bf16), row-aligned with
  /// the pool: needed by Measure::egl and by Strategy::badge.
  std::optional<EmbeddingView> features;
  /// eigenscore: alpha of ln eigenvalues(E J E^T + alpha I); finite and >= 0.
  double eigenscore_alpha = 1e-3;
  /// semantic_sets, semantic_entropy: answers whose cosine similarity is >= this are joined.
  double semantic_threshold = 0.9;
};

/// Which backend runs the work.
enum class Device { automatic, cpu, cuda };
Device parse_device(std::string_view name);  // "auto", "cpu", "cuda"
std::string_view to_string(Device device);

/// How the picks are chosen from the scored rows.
enum class Strategy {
  rank,     ///< by score; with embeddings, the best candidate of each k-means cluster
  badge,    ///< k-means++ seeding on gradient embeddings (p - e_argmax) x h; needs features
  coreset,  ///< k-center greedy on the embeddings, starting from the labeled rows
};
/// "rank", "badge", "coreset"; parse_strategy throws InvalidArgument for another name.
Strategy parse_strategy(std::string_view name);
std::string_view to_string(Strategy strategy);

/// How rows of equal score are ordered wherever rows are ranked by score.
enum class TieBreak {
  row,     ///< ascending row: picks follow the file's order where many rows tie
  random,  ///< ascending splitmix64 hash of (seed, global row): seeded, alike on every backend
           ///< and every sharding of the pool (kernels/tie_key.hpp)
};
/// "row", "random"; parse_tie_break throws InvalidArgument for another name.
TieBreak parse_tie_break(std::string_view name);
std::string_view to_string(TieBreak tie_break);

/// What to select.
struct SelectOptions {
  ScoreOptions scoring;
  /// Number of rows to return, 1 <= k <= N.
  int64_t k = 0;
  /// Diversity: embeddings of the pool rows. When set, the top `candidates` rows by score are
  /// clustered into as many clusters as there are rank picks, and the best of each cluster is kept.
  std::optional<EmbeddingView> embeddings;
  /// Candidates to cluster; 0 = 10 * (rank picks), capped at N. Must be >= the rank picks.
  int64_t candidates = 0;
  KMeansOptions kmeans;
  /// Exploration: round(explore * k) of the k picks are drawn uniformly at random (seeded by
  /// `seed`) from the rows not otherwise picked. 0 <= explore < 1.
  double explore = 0.0;
  uint64_t seed = 0;
  /// Equal scores: lowest row first, or a seeded random order (hash of `seed` and the row).
  TieBreak tie_break = TieBreak::row;

  /// The batch strategy. badge and coreset run over the top `candidates` rows by score (0 = every
  /// row), badge on scoring.features, coreset on `embeddings`. docs/strategies.md.
  Strategy strategy = Strategy::rank;
  /// coreset: rows already labeled (indices into the pool), the k-center search's first centers.
  std::vector<int64_t> labeled_rows;
  /// coreset: embeddings [L, D] of labeled rows outside the pool, also centers.
  std::optional<EmbeddingView> labeled_embeddings;

  /// Budget: one labeling cost per pool row (`cost_count` doubles in host memory; positive,
  /// finite) and the total that may be spent, instead of k (budget 0 = no budget). Ranking picks
  /// maximise the total score within the budget (greedy by score / cost, or with exact_budget a 0/1
  /// knapsack over the top `candidates` rows, default 1,000, for integer costs); batch strategies
  /// take their picks in their own order while they fit, k (optional) then capping their number; a
  /// share `explore` of the budget goes to uniformly drawn rows.
  const double* costs = nullptr;
  int64_t cost_count = 0;
  double budget = 0.0;
  bool exact_budget = false;
};

/// Why a row was picked: its rank; the best of its k-means cluster; or drawn at random to explore.
/// badge and coreset name picks of those strategies.
enum class PickReason { rank, cluster, exploration, badge, coreset };
std::string_view to_string(PickReason reason);

/// The result of select(): rank and cluster picks best-first, then the exploration picks.
struct Selection {
  std::vector<int64_t> indices;     ///< pool row of each pick
  std::vector<float> scores;        ///< its score
  std::vector<PickReason> reasons;  ///< why it was picked
  std::vector<int32_t> clusters;    ///< its k-means cluster, or -1 without diversity
  double cost_spent = 0.0;          ///< with costs: the total cost of the picks
};

}  // namespace quarry
