// quarry._quarry: the engine behind `import quarry`. Arrays arrive as nanobind ndarrays (DLPack
// or the buffer protocol) or through __cuda_array_interface__, and are read in place; the GIL is
// released for every call into the engine. The public, documented functions are the thin Python
// wrappers in quarry/__init__.py.

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "quarry/quarry.hpp"

namespace nb = nanobind;

namespace {

using quarry::ArrayView;
using quarry::DType;
using quarry::MemorySpace;

// One Resources and the lock that lets threads share it safely (calls on it take turns).
struct PyResources {
  quarry::Resources resources;
  std::mutex mutex;
  nb::object progress;

  explicit PyResources(quarry::Resources r) : resources(std::move(r)) {}
};

// An array the engine reads, and whatever keeps its memory alive during the call.
struct InputArray {
  ArrayView view;
  nb::ndarray<nb::ro> keep;  // empty for __cuda_array_interface__ inputs: the caller holds those
};

DType dtype_of(nb::dlpack::dtype t, const char* what) {
  using code = nb::dlpack::dtype_code;
  if (t.lanes == 1) {
    if (t.code == static_cast<uint8_t>(code::Float) && t.bits == 32) return DType::f32;
    if (t.code == static_cast<uint8_t>(code::Float) && t.bits == 16) return DType::f16;
    if (t.code == static_cast<uint8_t>(code::Bfloat) && t.bits == 16) return DType::bf16;
    if (t.code == static_cast<uint8_t>(code::Int) && t.bits == 32) return DType::i32;
    if (t.code == static_cast<uint8_t>(code::Int) && t.bits == 64) return DType::i64;
    if (t.code == static_cast<uint8_t>(code::Float) && t.bits == 64) return DType::f64;
  }
  const char* kind = t.code == static_cast<uint8_t>(code::Float)     ? "float"
                     : t.code == static_cast<uint8_t>(code::Int)     ? "int"
                     : t.code == static_cast<uint8_t>(code::UInt)    ? "uint"
                     : t.code == static_cast<uint8_t>(code::Complex) ? "complex"
                     : t.code == static_cast<uint8_t>(code::Bool)    ? "bool"
                                                                     : "unknown";
  const std::string bits = t.code == static_cast<uint8_t>(code::Bool) ? "" : std::to_string(t.bits);
  throw quarry::InvalidArgument(std::string(what) + ": unsupported dtype " + kind + bits +
                                " (float32, float16, bfloat16 or float64; int32 or int64 for "
                                "votes)");
}

MemorySpace space_of(int device_type, const char* what) {
  switch (device_type) {
    case nb::device::cpu::value:
    case nb::device::cuda_host::value:  // pinned host memory
      return MemorySpace::host;
    case nb::device::cuda::value:
    case nb::device::cuda_managed::value:
      return MemorySpace::device;
    default:
      throw quarry::InvalidArgument(std::string(what) +
                                    ": the array lives on a device quarry cannot read (DLPack "
                                    "device type " +
                                    std::to_string(device_type) + "); host and CUDA memory only");
  }
}

// "<f4" -> (float, 32 bits), as __cuda_array_interface__ spells types.
nb::dlpack::dtype dtype_of_typestr(const std::string& typestr, const char* what) {
  if (typestr.size() < 3 || (typestr[0] != '<' && typestr[0] != '|' && typestr[0] != '='))
    throw quarry::InvalidArgument(std::string(what) + ": unsupported type string '" + typestr +
                                  "' (little-endian only)");
  using code = nb::dlpack::dtype_code;
  nb::dlpack::dtype t;
  const char kind = typestr[1];
  t.code = static_cast<uint8_t>(kind == 'f'   ? code::Float
                                : kind == 'i' ? code::Int
                                : kind == 'u' ? code::UInt
                                : kind == 'c' ? code::Complex
                                : kind == 'b' ? code::Bool
                                              : static_cast<code>(255));
  t.bits = static_cast<uint8_t>(8 * std::stoi(typestr.substr(2)));
  t.lanes = 1;
  return t;
}

// Reads an object exposing __cuda_array_interface__ (version 2 or 3) in place, once the work its
// producer queued on the stream it names is done (in `res`'s stream order).
ArrayView view_from_cuda_array_interface(nb::handle obj, PyResources& res, const char* what) {
  nb::dict cai = nb::cast<nb::dict>(obj.attr("__cuda_array_interface__"));
  if (cai.contains("mask") && !cai["mask"].is_none())
    throw quarry::InvalidArgument(std::string(what) + ": masked arrays are not supported");
  if (cai.contains("stream") && !cai["stream"].is_none())
    res.resources.wait_for_stream(reinterpret_cast<void*>(nb::cast<uintptr_t>(cai["stream"])));
  ArrayView a;
  const nb::dlpack::dtype t = dtype_of_typestr(nb::cast<std::string>(cai["typestr"]), what);
  a.dtype = dtype_of(t, what);
  a.space = MemorySpace::device;
  nb::tuple data = nb::cast<nb::tuple>(cai["data"]);
  a.data = reinterpret_cast<const void*>(nb::cast<uintptr_t>(data[0]));
  for (nb::handle d : nb::cast<nb::tuple>(cai["shape"])) a.shape.push_back(nb::cast<int64_t>(d));
  const int64_t item = static_cast<int64_t>(quarry::dtype_size(a.dtype));
  if (cai.contains("strides") && !cai["strides"].is_none()) {
    for (nb::handle s : nb::cast<nb::tuple>(cai["strides"])) {
      const int64_t bytes = nb::cast<int64_t>(s);
      if (bytes % item != 0)
        throw quarry::InvalidArgument(std::string(what) +
                                      ": strides are not a multiple of the element size");
      a.strides.push_back(bytes / item);
    }
  } else {
    a.strides = ArrayView::contiguous(nullptr, a.dtype, a.shape).strides;
  }
  return a;
}

InputArray input_array(nb::handle obj, PyResources& res, const char* what) {
  InputArray in;
  nb::ndarray<nb::ro> array;
  if (nb::try_cast(obj, array, false)) {
    in.view.data = array.data();
    in.view.dtype = dtype_of(array.dtype(), what);
    in.view.space = space_of(array.device_type(), what);
    in.view.shape.resize(array.ndim());
    in.view.strides.resize(array.ndim());
    for (size_t i = 0; i < array.ndim(); ++i) {
      in.view.shape[i] = static_cast<int64_t>(array.shape(i));
      in.view.strides[i] = array.stride(i);
    }
    in.keep = std::move(array);
    return in;
  }
  if (nb::hasattr(obj, "__cuda_array_interface__")) {
    in.view = view_from_cuda_array_interface(obj, res, what);
    return in;
  }
  if (nb::hasattr(obj, "dtype")) {  // an array neither DLPack nor the buffer protocol carries
    nb::object dtype = obj.attr("dtype");
    if (nb::hasattr(dtype, "byteorder") &&
        nb::cast<std::string>(nb::str(dtype.attr("byteorder"))) == ">")
      throw quarry::InvalidArgument(std::string(what) +
                                    ": big-endian arrays are not supported; convert with "
                                    "arr.astype(arr.dtype.newbyteorder('<'))");
    throw quarry::InvalidArgument(std::string(what) + ": unsupported dtype " +
                                  nb::cast<std::string>(nb::str(dtype)) +
                                  " (float32, float16, bfloat16 or float64; int32 or int64 for "
                                  "votes)");
  }
  throw quarry::InvalidArgument(
      std::string(what) +
      ": expected an array (numpy, PyTorch, CuPy, JAX: anything with "
      "__dlpack__, __cuda_array_interface__ or the buffer protocol), got " +
      nb::cast<std::string>(nb::str(obj.type().attr("__name__"))));
}

quarry::Layout parse_layout(const std::string& layout) {
  if (layout == "members-first" || layout == "members_first") return quarry::Layout::members_first;
  if (layout == "rows-first" || layout == "rows_first") return quarry::Layout::rows_first;
  throw quarry::InvalidArgument("layout must be 'members-first' or 'rows-first', got '" + layout +
                                "'");
}

// The pool and the inputs beside it that decide how it is scored, kept alive for the call.
struct ScoringInputs {
  InputArray pool;
  std::optional<InputArray> lengths;
  std::optional<InputArray> features;
  quarry::PoolSpec spec;
  quarry::ScoreOptions options;
};

ScoringInputs scoring_inputs(PyResources& res, nb::handle pool_obj,
                             const std::optional<std::string>& measure, bool logits,
                             float temperature, const std::string& layout, int64_t classes,
                             nb::handle lengths_obj, std::optional<double> alpha,
                             std::optional<double> threshold, nb::handle features_obj) {
  ScoringInputs in;
  in.pool = input_array(pool_obj, res, "pool");
  if (!lengths_obj.is_none()) in.lengths = input_array(lengths_obj, res, "lengths");
  std::optional<quarry::Measure> m;
  if (measure) m = quarry::parse_measure(*measure);
  in.spec = quarry::pool_from_array(in.pool.view, m, parse_layout(layout), classes, "pool",
                                    in.lengths ? &in.lengths->view : nullptr, "lengths");
  quarry::ScoreOptions& options = in.options;
  options.measure = in.spec.measure;
  options.logits = logits;
  options.temperature = temperature;
  const std::string measure_name(quarry::to_string(in.spec.measure));
  if (alpha && in.spec.measure != quarry::Measure::eigenscore)
    throw quarry::InvalidArgument("alpha applies to eigenscore, not to " + measure_name);
  if (threshold && in.spec.measure != quarry::Measure::semantic_sets &&
      in.spec.measure != quarry::Measure::semantic_entropy)
    throw quarry::InvalidArgument(
        "threshold applies to semantic_sets and semantic_entropy, not to " + measure_name);
  if (alpha) options.eigenscore_alpha = *alpha;
  if (threshold) options.semantic_threshold = *threshold;
  if (!features_obj.is_none()) {
    in.features = input_array(features_obj, res, "features");
    options.features = quarry::embeddings_from_array(in.features->view, "features", "features");
  }
  return in;
}

// A 1-D numpy array that takes over a vector's storage.
template <typename T>
nb::ndarray<nb::numpy, T, nb::ndim<1>> to_numpy(std::vector<T>&& values) {
  auto* owned = new std::vector<T>(std::move(values));
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return nb::ndarray<nb::numpy, T, nb::ndim<1>>(owned->data(), {owned->size()}, owner);
}

nb::object score_rows(PyResources& res, nb::handle pool_obj, std::optional<std::string> measure,
                      bool logits, float temperature, const std::string& layout, int64_t classes,
                      nb::handle lengths, std::optional<double> alpha,
                      std::optional<double> threshold, nb::handle features,
                      nb::handle device_empty) {
  const ScoringInputs in = scoring_inputs(res, pool_obj, measure, logits, temperature, layout,
                                          classes, lengths, alpha, threshold, features);
  const quarry::PoolSpec& spec = in.spec;
  const quarry::ScoreOptions& options = in.options;
  if (spec.view.space == MemorySpace::device && res.resources.device() == quarry::Device::cuda) {
    // Scores of a device pool stay on the device: `device_empty(rows)` makes a float32 array of
    // the pool's framework on the pool's device, and the engine writes into it.
    nb::object out = device_empty(spec.view.rows);
    nb::ndarray<float, nb::ndim<1>, nb::c_contig, nb::device::cuda> target =
        nb::cast<decltype(target)>(out);
    if (static_cast<int64_t>(target.shape(0)) != spec.view.rows)
      throw quarry::InvalidArgument("the device output has " + std::to_string(target.shape(0)) +
                                    " elements for " + std::to_string(spec.view.rows) + " rows");
    {
      nb::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(res.mutex);
      quarry::score(res.resources, spec.view, options, target.data());
    }
    return out;
  }
  std::vector<float> scores(static_cast<size_t>(spec.view.rows));
  {
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(res.mutex);
    quarry::score(res.resources, spec.view, options, scores.data());
  }
  return nb::cast(to_numpy(std::move(scores)));
}

// The picks travel as bytearrays that Python wraps with numpy.frombuffer: for the few values of a
// selection that is several microseconds cheaper than handing numpy an array per field.
template <typename T>
nb::object to_bytearray(const std::vector<T>& values) {
  return nb::steal(
      PyByteArray_FromStringAndSize(reinterpret_cast<const char*>(values.data()),
                                    static_cast<Py_ssize_t>(values.size() * sizeof(T))));
}

quarry::SelectOptions select_options(quarry::Measure measure, bool logits, float temperature,
                                     int64_t k, int64_t candidates, int kmeans_iters,
                                     double explore, uint64_t seed) {
  quarry::SelectOptions options;
  options.scoring.measure = measure;
  options.scoring.logits = logits;
  options.scoring.temperature = temperature;
  options.k = k;
  options.candidates = candidates;
  options.kmeans.iterations = kmeans_iters;
  options.kmeans.seed = seed;
  options.explore = explore;
  options.seed = seed;
  return options;
}

// (indices, scores, reason codes, clusters, measure name): what quarry.Selection is made from.
nb::tuple selection_tuple(quarry::Selection&& sel, quarry::Measure measure) {
  std::vector<int8_t> reasons(sel.reasons.size());
  for (size_t i = 0; i < reasons.size(); ++i) reasons[i] = static_cast<int8_t>(sel.reasons[i]);
  return nb::make_tuple(to_bytearray(sel.indices), to_bytearray(sel.scores), to_bytearray(reasons),
                        to_bytearray(sel.clusters), std::string(quarry::to_string(measure)),
                        sel.cost_spent);
}

nb::tuple select_rows(PyResources& res, nb::handle pool_obj, int64_t k,
                      std::optional<std::string> measure, bool logits, float temperature,
                      const std::string& layout, int64_t classes, nb::handle lengths,
                      std::optional<double> alpha, std::optional<double> threshold,
                      nb::handle features, nb::handle embeddings_obj, int64_t candidates,
                      int kmeans_iters, double explore, uint64_t seed, const std::string& strategy,
                      nb::handle labeled_obj, nb::handle costs_obj, double budget,
                      bool exact_budget, const std::string& tie_break) {
  const ScoringInputs in = scoring_inputs(res, pool_obj, measure, logits, temperature, layout,
                                          classes, lengths, alpha, threshold, features);
  quarry::SelectOptions options = select_options(in.spec.measure, logits, temperature, k,
                                                 candidates, kmeans_iters, explore, seed);
  options.scoring = in.options;
  options.strategy = quarry::parse_strategy(strategy);
  options.tie_break = quarry::parse_tie_break(tie_break);
  std::optional<InputArray> embeddings;
  if (!embeddings_obj.is_none()) {
    embeddings = input_array(embeddings_obj, res, "embeddings");
    options.embeddings = quarry::embeddings_from_array(embeddings->view, "embeddings");
  }
  std::optional<InputArray> labeled;
  if (!labeled_obj.is_none()) {
    labeled = input_array(labeled_obj, res, "labeled");
    quarry::labeled_from_array(labeled->view, options, "labeled");
  }
  std::vector<double> costs;
  if (!costs_obj.is_none())
    costs = quarry::costs_from_array(input_array(costs_obj, res, "costs").view, "costs");
  options.costs = costs_obj.is_none() ? nullptr : costs.data();
  options.cost_count = static_cast<int64_t>(costs.size());
  options.budget = budget;
  options.exact_budget = exact_budget;
  quarry::Selection sel;
  {
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(res.mutex);
    sel = quarry::select(res.resources, in.spec.view, options);
  }
  return selection_tuple(std::move(sel), in.spec.measure);
}

// A pool given as several arrays (shards, rows in list order), and their embeddings if any.
struct ShardArrays {
  std::vector<InputArray> pools, embeddings;
  std::vector<quarry::PoolView> views;
  std::vector<quarry::EmbeddingView> embedding_views;
  quarry::Measure measure = quarry::Measure::entropy;
};

ShardArrays shard_arrays(PyResources& res, nb::handle pools, std::optional<std::string> measure,
                         const std::string& layout, int64_t classes, nb::handle embeddings) {
  ShardArrays out;
  for (nb::handle pool : pools) {
    const std::string name = "pool[" + std::to_string(out.pools.size()) + "]";
    out.pools.push_back(input_array(pool, res, name.c_str()));
    // Every shard is scored with the first one's measure (its natural one when none is named).
    std::optional<quarry::Measure> m;
    if (!out.views.empty())
      m = out.measure;
    else if (measure)
      m = quarry::parse_measure(*measure);
    const quarry::PoolSpec spec =
        quarry::pool_from_array(out.pools.back().view, m, parse_layout(layout), classes, name);
    out.views.push_back(spec.view);
    out.measure = spec.measure;
  }
  if (!embeddings.is_none())
    for (nb::handle e : embeddings) {
      const std::string name = "embeddings[" + std::to_string(out.embeddings.size()) + "]";
      out.embeddings.push_back(input_array(e, res, name.c_str()));
      out.embedding_views.push_back(
          quarry::embeddings_from_array(out.embeddings.back().view, name));
    }
  return out;
}

nb::object score_shards(PyResources& res, nb::handle pools, std::optional<std::string> measure,
                        bool logits, float temperature, const std::string& layout,
                        int64_t classes) {
  const ShardArrays shards = shard_arrays(res, pools, measure, layout, classes, nb::none());
  quarry::ScoreOptions options;
  options.measure = shards.measure;
  options.logits = logits;
  options.temperature = temperature;
  std::vector<float> scores;
  {
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(res.mutex);
    scores = quarry::score(res.resources, shards.views, options);
  }
  return nb::cast(to_numpy(std::move(scores)));
}

nb::tuple select_shards(PyResources& res, nb::handle pools, int64_t k,
                        std::optional<std::string> measure, bool logits, float temperature,
                        const std::string& layout, int64_t classes, nb::handle embeddings,
                        int64_t candidates, int kmeans_iters, double explore, uint64_t seed,
                        const std::string& tie_break) {
  const ShardArrays shards = shard_arrays(res, pools, measure, layout, classes, embeddings);
  quarry::SelectOptions options = select_options(shards.measure, logits, temperature, k, candidates,
                                                 kmeans_iters, explore, seed);
  options.tie_break = quarry::parse_tie_break(tie_break);
  quarry::Selection sel;
  {
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(res.mutex);
    sel = quarry::select(res.resources, shards.views, options, shards.embedding_views);
  }
  return selection_tuple(std::move(sel), shards.measure);
}

quarry::Partial partial_of_shards(PyResources& res, nb::handle pools, int64_t k,
                                  std::optional<std::string> measure, bool logits,
                                  float temperature, const std::string& layout, int64_t classes,
                                  nb::handle embeddings, int64_t candidates, int kmeans_iters,
                                  double explore, uint64_t seed, int64_t row_offset,
                                  int64_t pool_rows, const std::string& tie_break) {
  const ShardArrays shards = shard_arrays(res, pools, measure, layout, classes, embeddings);
  quarry::SelectOptions options = select_options(shards.measure, logits, temperature, k, candidates,
                                                 kmeans_iters, explore, seed);
  options.tie_break = quarry::parse_tie_break(tie_break);
  nb::gil_scoped_release release;
  std::lock_guard<std::mutex> lock(res.mutex);
  return quarry::select_partial(res.resources, shards.views, options, shards.embedding_views,
                                row_offset, pool_rows);
}

// A partial's pickled state: its small fields as JSON, its rows' arrays as raw bytes (a
// diversity partial's embeddings are megabytes: as JSON text they would take a second to parse).
template <typename T>
nb::bytes raw_bytes(const std::vector<T>& v) {
  return nb::bytes(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

template <typename T>
std::vector<T> from_raw_bytes(nb::handle b) {
  const auto bytes = nb::cast<nb::bytes>(b);
  if (bytes.size() % sizeof(T) != 0) throw quarry::InvalidInput("a Partial's state is damaged");
  std::vector<T> v(bytes.size() / sizeof(T));
  std::memcpy(v.data(), bytes.c_str(), bytes.size());
  return v;
}

nb::tuple partial_state(const quarry::Partial& p) {
  quarry::Partial fields;  // everything but the arrays
  fields.options = p.options;
  fields.dtype = p.dtype;
  fields.members = p.members;
  fields.classes = p.classes;
  fields.embedding_dim = p.embedding_dim;
  fields.embedding_dtype = p.embedding_dtype;
  fields.pool_rows = p.pool_rows;
  fields.shards = p.shards;
  fields.backend = p.backend;
  return nb::make_tuple(quarry::to_json(fields), raw_bytes(p.indices), raw_bytes(p.scores),
                        raw_bytes(p.embeddings), raw_bytes(p.explore_rows),
                        raw_bytes(p.explore_scores));
}

void set_partial_state(quarry::Partial& p, const nb::tuple& state) {
  if (state.size() != 6) throw quarry::InvalidInput("a Partial's state is damaged");
  quarry::Partial restored = quarry::partial_from_json(nb::cast<std::string>(state[0]));
  restored.indices = from_raw_bytes<int64_t>(state[1]);
  restored.scores = from_raw_bytes<float>(state[2]);
  restored.embeddings = from_raw_bytes<float>(state[3]);
  restored.explore_rows = from_raw_bytes<int64_t>(state[4]);
  restored.explore_scores = from_raw_bytes<float>(state[5]);
  new (&p) quarry::Partial(std::move(restored));
}

nb::tuple merge_partials(PyResources& res, const std::vector<quarry::Partial>& partials,
                         int64_t k) {
  quarry::Selection sel;
  {
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(res.mutex);
    sel = quarry::merge(res.resources, partials, k);
  }
  return selection_tuple(std::move(sel), partials.empty() ? quarry::Measure::entropy
                                                          : partials[0].options.scoring.measure);
}

nb::tuple cluster(PyResources& res, nb::handle points_obj, int64_t k, int iterations, uint64_t seed,
                  nb::handle initial_obj) {
  const InputArray points = input_array(points_obj, res, "points");
  const quarry::EmbeddingView view = quarry::embeddings_from_array(points.view, "points");
  quarry::KMeansOptions options;
  options.iterations = iterations;
  options.seed = seed;
  if (!initial_obj.is_none()) {
    // A few values, copied anyway: other dtypes are converted.
    nb::ndarray<const float, nb::ndim<2>, nb::c_contig, nb::device::cpu> initial;
    if (!nb::try_cast(initial_obj, initial) || static_cast<int64_t>(initial.shape(0)) != k ||
        static_cast<int64_t>(initial.shape(1)) != view.dim)
      throw quarry::InvalidArgument(
          "initial_centroids must be a [k, D] float array in host memory");
    options.initial_centroids.assign(initial.data(), initial.data() + initial.size());
  }
  quarry::KMeansResult result;
  {
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(res.mutex);
    result = quarry::kmeans(res.resources, view, k, options);
  }
  const int64_t dim = view.dim;
  auto centroids = to_numpy(std::move(result.centroids));
  nb::object reshaped = nb::cast(centroids).attr("reshape")(k, dim);
  return nb::make_tuple(reshaped, to_numpy(std::move(result.assignments)), result.inertia,
                        result.iterations);
}

// A cudaStream_t from an int, or an object with __cuda_stream__ (the CUDA stream protocol),
// .cuda_stream (PyTorch) or .ptr (CuPy).
void* stream_pointer(nb::handle stream) {
  if (nb::isinstance<nb::int_>(stream)) return reinterpret_cast<void*>(nb::cast<uintptr_t>(stream));
  if (nb::hasattr(stream, "__cuda_stream__")) {
    nb::tuple t = nb::cast<nb::tuple>(stream.attr("__cuda_stream__")());
    return reinterpret_cast<void*>(nb::cast<uintptr_t>(t[1]));
  }
  if (nb::hasattr(stream, "cuda_stream"))
    return reinterpret_cast<void*>(nb::cast<uintptr_t>(stream.attr("cuda_stream")));
  if (nb::hasattr(stream, "ptr"))
    return reinterpret_cast<void*>(nb::cast<uintptr_t>(stream.attr("ptr")));
  throw quarry::InvalidArgument(
      "stream must be an int (a cudaStream_t) or a stream object (__cuda_stream__, PyTorch's "
      "torch.cuda.Stream, CuPy's cupy.cuda.Stream)");
}

void set_progress(PyResources& res, nb::object callback) {
  res.progress = callback;
  if (callback.is_none()) {
    res.resources.set_progress({});
    return;
  }
  // Called from the engine with the GIL released; the callable lives as long as `res`.
  PyObject* fn = callback.ptr();
  res.resources.set_progress([fn](int64_t done, int64_t total) {
    nb::gil_scoped_acquire acquire;
    const nb::handle callable(fn);
    callable(done, total);
  });
}

// None -> 0 (the backend's default), "8G" or a positive int -> bytes.
std::size_t budget_bytes(nb::handle memory_budget) {
  if (memory_budget.is_none()) return 0;
  if (nb::isinstance<nb::str>(memory_budget))
    return quarry::parse_memory_size(nb::cast<std::string>(memory_budget));
  int64_t bytes = 0;
  if (!nb::try_cast(memory_budget, bytes, false) || bytes <= 0)
    throw quarry::InvalidArgument(
        "memory_budget must be None, a positive number of bytes or a size such as '8G', got " +
        nb::cast<std::string>(nb::repr(memory_budget)));
  return static_cast<std::size_t>(bytes);
}

// A progress callable can refer back to its Resources (a lambda in a module that holds both):
// the collector must see that reference to free the cycle.
int resources_traverse(PyObject* self, visitproc visit, void* arg) {
  Py_VISIT(Py_TYPE(self));
  if (!nb::inst_ready(self)) return 0;
  Py_VISIT(nb::inst_ptr<PyResources>(self)->progress.ptr());
  return 0;
}

int resources_clear(PyObject* self) {
  PyResources* res = nb::inst_ptr<PyResources>(self);
  res->resources.set_progress({});
  res->progress.reset();
  return 0;
}

PyType_Slot resources_slots[] = {{Py_tp_traverse, reinterpret_cast<void*>(resources_traverse)},
                                 {Py_tp_clear, reinterpret_cast<void*>(resources_clear)},
                                 {0, nullptr}};

void make_resources(PyResources* self, const std::string& device, nb::handle memory_budget,
                    nb::handle stream, nb::object progress, int cuda_device) {
  const quarry::Device kind = quarry::parse_device(device);
  const std::size_t budget = budget_bytes(memory_budget);
  if (!stream.is_none()) {
    if (kind == quarry::Device::cpu)
      throw quarry::InvalidArgument("a CUDA stream was given with device='cpu'");
    new (self) PyResources(quarry::Resources(cuda_device, stream_pointer(stream)));
  } else {
    nb::gil_scoped_release release;  // starting CUDA can take a while
    new (self) PyResources(quarry::Resources(kind, cuda_device));
  }
  self->resources.set_memory_budget(budget);
  set_progress(*self, std::move(progress));
}

// The C++ call that select() makes, timed in C++ `repeats` times: the baseline against which
// bench/bench_python.py measures the binding's overhead. Seconds per call.
double time_select_call(PyResources& res, nb::handle pool_obj, int64_t k, int64_t repeats) {
  const InputArray pool = input_array(pool_obj, res, "pool");
  const quarry::PoolSpec spec = quarry::pool_from_array(pool.view);
  quarry::SelectOptions options;
  options.scoring.measure = spec.measure;
  options.k = k;
  nb::gil_scoped_release release;
  std::lock_guard<std::mutex> lock(res.mutex);
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < repeats; ++i) quarry::select(res.resources, spec.view, options);
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  return elapsed.count() / static_cast<double>(repeats);
}

// The status as an identifier (to_string's words are for people).
const char* cuda_status_name(quarry::CudaStatus status) {
  switch (status) {
    case quarry::CudaStatus::available:
      return "available";
    case quarry::CudaStatus::not_built:
      return "not_built";
    case quarry::CudaStatus::no_plugin:
      return "no_plugin";
    case quarry::CudaStatus::no_driver:
      return "no_driver";
    case quarry::CudaStatus::no_device:
      return "no_device";
  }
  return "unknown";
}

nb::dict info() {
  nb::dict d;
  d["version"] = quarry::version();
  d["built_with_cuda"] = quarry::built_with_cuda();
  nb::list gpus;
  for (const auto& g : quarry::cuda_device_descriptions()) gpus.append(g);
  d["gpus"] = gpus;
  // Why CUDA can or cannot run here: not_built, no_plugin, no_driver, no_device or available.
  const quarry::CudaAvailability cuda = quarry::cuda_availability();
  nb::dict c;
  c["status"] = cuda_status_name(cuda.status);
  c["detail"] = cuda.detail;
  c["plugin_path"] = cuda.plugin_path;
  c["device_count"] = cuda.device_count;
  c["driver_version"] = cuda.driver_version;
  d["cuda"] = c;
  d["cpu"] = quarry::cpu_description();
  return d;
}

// Exception types, made once at import and kept by the module.
PyObject* error_type = nullptr;
PyObject* invalid_argument_type = nullptr;
PyObject* invalid_input_type = nullptr;
PyObject* backend_unavailable_type = nullptr;
PyObject* cuda_error_type = nullptr;
PyObject* out_of_memory_type = nullptr;

PyObject* new_exception(nb::module_& m, const char* name, PyObject* bases, const char* doc) {
  const std::string qualified = std::string("quarry.") + name;
  PyObject* type = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, bases, nullptr);
  if (type == nullptr) throw nb::python_error();
  Py_DECREF(bases);
  m.attr(name) = nb::borrow(type);
  return type;
}

void register_exceptions(nb::module_& m) {
  error_type = new_exception(m, "Error", Py_BuildValue("(O)", PyExc_Exception),
                             "Base of every exception quarry raises.");
  invalid_argument_type =
      new_exception(m, "InvalidArgument", Py_BuildValue("(OO)", error_type, PyExc_ValueError),
                    "The call was malformed: bad k, shapes or dtypes, an unknown measure, "
                    "options out of range. Nothing was computed.");
  invalid_input_type = new_exception(
      m, "InvalidInput", Py_BuildValue("(OO)", error_type, PyExc_ValueError),
      "The data is invalid (non-finite values, negative probabilities, rows not summing to 1, "
      "bad votes). `row` is the first offending pool row, or None.");
  backend_unavailable_type =
      new_exception(m, "BackendUnavailable", Py_BuildValue("(OO)", error_type, PyExc_RuntimeError),
                    "CUDA was asked for and this build or this machine does not have it.");
  cuda_error_type =
      new_exception(m, "CudaError", Py_BuildValue("(OO)", error_type, PyExc_RuntimeError),
                    "A CUDA runtime or library call failed.");
  out_of_memory_type =
      new_exception(m, "OutOfMemory", Py_BuildValue("(OO)", error_type, PyExc_MemoryError),
                    "The device ran out of memory, or the job does not fit the memory budget.");

  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const quarry::InvalidInput& e) {
      nb::object exc = nb::steal(PyObject_CallFunction(invalid_input_type, "s", e.what()));
      if (!exc.is_valid()) return;
      exc.attr("row") = e.row() >= 0 ? nb::cast(e.row()) : nb::none();
      PyErr_SetObject(invalid_input_type, exc.ptr());
    } catch (const quarry::InvalidArgument& e) {
      PyErr_SetString(invalid_argument_type, e.what());
    } catch (const quarry::BackendUnavailable& e) {
      PyErr_SetString(backend_unavailable_type, e.what());
    } catch (const quarry::OutOfMemory& e) {
      PyErr_SetString(out_of_memory_type, e.what());
    } catch (const quarry::CudaError& e) {
      PyErr_SetString(cuda_error_type, e.what());
    } catch (const quarry::Error& e) {
      PyErr_SetString(error_type, e.what());
    }
  });
}

}  // namespace

NB_MODULE(_quarry, m) {
  m.doc() = "quarry's engine; use the functions of the quarry package.";
  register_exceptions(m);

  nb::class_<PyResources>(
      m, "Resources", nb::type_slots(resources_slots),
      "Resources(device='auto', memory_budget=None, stream=None, progress=None, cuda_device=0)\n\n"
      "The backend quarry runs on, with its device, stream and kept memory. Make one and reuse it\n"
      "across calls; calls on one Resources from several threads take turns (one per thread runs\n"
      "them in parallel).\n\n"
      "device: 'auto' (the GPU when this build has CUDA and one is present, else the CPU), 'cpu'\n"
      "  or 'cuda' (BackendUnavailable when there is none).\n"
      "memory_budget: working-memory cap: None (default), bytes, or a size such as '8G'.\n"
      "stream: a CUDA stream to run on, borrowed: an int (cudaStream_t), torch.cuda.Stream,\n"
      "  cupy.cuda.Stream, or anything with __cuda_stream__.\n"
      "progress: called as progress(rows_done, rows_total) after each chunk of rows.\n"
      "cuda_device: the CUDA device's ordinal.")
      .def("__init__", &make_resources, nb::arg("device") = "auto",
           nb::arg("memory_budget").none() = nb::none(), nb::arg("stream").none() = nb::none(),
           nb::arg("progress").none() = nb::none(), nb::arg("cuda_device") = 0)
      .def_prop_ro("device",
                   [](PyResources& r) { return std::string(to_string(r.resources.device())); })
      .def("describe", [](PyResources& r) { return r.resources.describe(); })
      .def_prop_rw(
          "memory_budget", [](PyResources& r) { return r.resources.memory_budget(); },
          [](PyResources& r, nb::handle budget) {
            r.resources.set_memory_budget(budget_bytes(budget));
          },
          nb::arg("budget").none(),
          "Working-memory cap in bytes (device memory on CUDA); larger pools are scored in "
          "chunks with identical results. Set an int, a size such as '8G', or None for the "
          "default (80% of free device memory on CUDA, unbounded on the CPU).")
      .def_prop_rw(
          "progress",
          [](PyResources& r) { return r.progress.is_valid() ? r.progress : nb::none(); },
          &set_progress, nb::arg("callback").none())
      .def_prop_ro("peak_device_memory",
                   [](PyResources& r) { return r.resources.peak_device_memory(); })
      .def_prop_ro("cuda_stream", [](PyResources& r) {
        return reinterpret_cast<uintptr_t>(r.resources.cuda_stream());
      });

  nb::class_<quarry::Partial>(
      m, "Partial",
      "One shard's (or several shards') partial result: made by select_partial(), merged by\n"
      "merge(). Picklable (compactly: its arrays as raw bytes), so that Dask, Ray or\n"
      "multiprocessing can move it; to_json() gives the text `quarry merge` reads.")
      .def_prop_ro("k", [](const quarry::Partial& p) { return p.options.k; })
      .def_prop_ro("measure",
                   [](const quarry::Partial& p) {
                     return std::string(to_string(p.options.scoring.measure));
                   })
      .def_prop_ro("pool_rows", [](const quarry::Partial& p) { return p.pool_rows; })
      .def_prop_ro("shards",
                   [](const quarry::Partial& p) {
                     nb::list out;
                     for (const quarry::RowRange& r : p.shards)
                       out.append(nb::make_tuple(r.offset, r.rows));
                     return out;
                   })
      .def_prop_ro(
          "indices",
          [](const quarry::Partial& p) { return nb::cast(to_numpy(std::vector(p.indices))); })
      .def_prop_ro(
          "scores",
          [](const quarry::Partial& p) { return nb::cast(to_numpy(std::vector(p.scores))); })
      .def_prop_ro("embedding_dim", [](const quarry::Partial& p) { return p.embedding_dim; })
      .def_prop_ro(
          "explore_rows",
          [](const quarry::Partial& p) { return nb::cast(to_numpy(std::vector(p.explore_rows))); })
      .def_prop_ro("backend", [](const quarry::Partial& p) { return p.backend; })
      .def("to_json", [](const quarry::Partial& p) { return quarry::to_json(p); })
      .def_static(
          "from_json", [](const std::string& text) { return quarry::partial_from_json(text); },
          nb::arg("text"))
      .def("__getstate__", &partial_state)
      .def("__setstate__", &set_partial_state)
      .def("__repr__", [](const quarry::Partial& p) {
        int64_t rows = 0;
        for (const quarry::RowRange& r : p.shards) rows += r.rows;
        return "Partial(measure='" + std::string(to_string(p.options.scoring.measure)) +
               "', k=" + std::to_string(p.options.k) + ", rows covered=" + std::to_string(rows) +
               ", rows held=" + std::to_string(p.indices.size()) + ")";
      });

  m.def("score", &score_rows, nb::arg("resources"), nb::arg("pool"), nb::arg("measure").none(),
        nb::arg("logits"), nb::arg("temperature"), nb::arg("layout"), nb::arg("classes"),
        nb::arg("lengths").none(), nb::arg("alpha").none(), nb::arg("threshold").none(),
        nb::arg("features").none(), nb::arg("device_empty"));
  m.def("select", &select_rows, nb::arg("resources"), nb::arg("pool"), nb::arg("k"),
        nb::arg("measure").none(), nb::arg("logits"), nb::arg("temperature"), nb::arg("layout"),
        nb::arg("classes"), nb::arg("lengths").none(), nb::arg("alpha").none(),
        nb::arg("threshold").none(), nb::arg("features").none(), nb::arg("embeddings").none(),
        nb::arg("candidates"), nb::arg("kmeans_iters"), nb::arg("explore"), nb::arg("seed"),
        nb::arg("strategy"), nb::arg("labeled").none(), nb::arg("costs").none(), nb::arg("budget"),
        nb::arg("exact_budget"), nb::arg("tie_break"));
  m.def("score_shards", &score_shards, nb::arg("resources"), nb::arg("pools"),
        nb::arg("measure").none(), nb::arg("logits"), nb::arg("temperature"), nb::arg("layout"),
        nb::arg("classes"));
  m.def("select_shards", &select_shards, nb::arg("resources"), nb::arg("pools"), nb::arg("k"),
        nb::arg("measure").none(), nb::arg("logits"), nb::arg("temperature"), nb::arg("layout"),
        nb::arg("classes"), nb::arg("embeddings").none(), nb::arg("candidates"),
        nb::arg("kmeans_iters"), nb::arg("explore"), nb::arg("seed"), nb::arg("tie_break"));
  m.def("select_partial", &partial_of_shards, nb::arg("resources"), nb::arg("pools"), nb::arg("k"),
        nb::arg("measure").none(), nb::arg("logits"), nb::arg("temperature"), nb::arg("layout"),
        nb::arg("classes"), nb::arg("embeddings").none(), nb::arg("candidates"),
        nb::arg("kmeans_iters"), nb::arg("explore"), nb::arg("seed"), nb::arg("row_offset"),
        nb::arg("pool_rows"), nb::arg("tie_break"));
  m.def("merge", &merge_partials, nb::arg("resources"), nb::arg("partials"), nb::arg("k"));
  m.def(
      "combine",
      [](const std::vector<quarry::Partial>& partials) { return quarry::combine(partials); },
      nb::arg("partials"), nb::call_guard<nb::gil_scoped_release>());
  m.def("kmeans", &cluster, nb::arg("resources"), nb::arg("points"), nb::arg("k"),
        nb::arg("iterations"), nb::arg("seed"), nb::arg("initial_centroids").none());
  m.def("info", &info);
  m.attr("__version__") = quarry::version();  // without info(), which asks the driver
  m.def("_time_select_call", &time_select_call, nb::arg("resources"), nb::arg("pool"), nb::arg("k"),
        nb::arg("repeats"));
  m.def("parse_memory_size",
        [](const std::string& text) { return quarry::parse_memory_size(text); });
}
