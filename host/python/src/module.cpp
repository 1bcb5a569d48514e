// quarry._quarry: the engine behind `import quarry`. Arrays arrive as nanobind ndarrays (DLPack
// or the buffer protocol) or through __cuda_array_interface__, and are read in place; the GIL is
// released for every call into the engine. The public, documented functions are the thin Python
// wrappers in quarry/__init__.py.

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "npy.hpp"
#include "quarry/quarry.hpp"

namespace nb = nanobind;

namespace {

using quarry::ArrayView;
using quarry::DType;
using quarry::MemorySpace;

// A Python callable shared by the engine's copies of a progress callback: each running call
// keeps its own reference, so replacing Resources.progress meanwhile never frees a callable in
// use. Copies are made and dropped without the GIL; the last one takes it to release the object.
struct PyCallable {
  nb::object fn;
  explicit PyCallable(nb::object f) : fn(std::move(f)) {}
  ~PyCallable() {
    if (!Py_IsInitialized()) {
      (void)fn.release();  // the interpreter is gone: nothing left to release
      return;
    }
    nb::gil_scoped_acquire acquire;
    fn.reset();
  }
};

// One Resources and the lock that lets threads share it safely (calls on it take turns).
struct PyResources {
  quarry::Resources resources;
  std::mutex mutex;
  // The progress callable, shared with the callback set on `resources` (and the copies of running
  // calls): the one reference to it the collector sees (resources_traverse).
  std::shared_ptr<PyCallable> progress;
  // The thread whose call holds `mutex`: a call from that thread (its progress callback calling
  // quarry on the same Resources) would wait for itself forever, and is refused instead.
  std::atomic<std::thread::id> owner{};

  explicit PyResources(quarry::Resources r) : resources(std::move(r)) {}
};

// Holds a PyResources' lock for one call into the engine (taken with the GIL released).
class CallLock {
 public:
  explicit CallLock(PyResources& res) : res_(res) {
    if (res.owner.load() == std::this_thread::get_id())
      throw quarry::InvalidArgument(
          "a progress callback called quarry with the Resources whose call it reports on; "
          "calls on one Resources take turns, so this would wait forever: use another "
          "quarry.Resources inside the callback");
    res.mutex.lock();
    res.owner.store(std::this_thread::get_id());
  }
  ~CallLock() {
    res_.owner.store(std::thread::id{});
    res_.mutex.unlock();
  }
  CallLock(const CallLock&) = delete;
  CallLock& operator=(const CallLock&) = delete;

 private:
  PyResources& res_;
};

// Ctrl-C while the engine runs with the GIL released: the engine polls, between blocks of rows,
// whether the main thread has a signal pending; PyErr_CheckSignals runs its handler, and the
// exception it raises (KeyboardInterrupt) is kept here until the engine has unwound, then raised.
unsigned long g_main_thread = 0;
thread_local PyObject* t_pending_type = nullptr;
thread_local PyObject* t_pending_value = nullptr;
thread_local PyObject* t_pending_traceback = nullptr;

bool python_signal_raised() {
  nb::gil_scoped_acquire acquire;
  if (PyErr_CheckSignals() == 0) return false;
  PyErr_Fetch(&t_pending_type, &t_pending_value, &t_pending_traceback);
  return true;
}

// For the duration of an engine call: only the main thread handles signals.
struct PythonInterrupts {
  std::optional<quarry::InterruptCheck> check;
  PythonInterrupts() {
    if (PyThread_get_thread_ident() == g_main_thread) check.emplace(python_signal_raised);
  }
};

// An array the engine reads, and whatever keeps its memory alive during the call.
struct InputArray {
  ArrayView view;
  nb::ndarray<nb::ro> keep;  // empty for __cuda_array_interface__ inputs: the caller holds those
};

// The keyword options of a call, as one dict read against the options schema (quarry/options.hpp):
// each value is type- and range-checked under its Python name, None means "the default", and a
// key nobody reads is refused (a misspelt option is an error, not silently ignored).
class Options {
 public:
  explicit Options(nb::dict values) : values_(std::move(values)) {}

  // An integer in the option's range (the C++ field's): a TypeError for a non-integer (floats and
  // bools included), InvalidArgument naming the option and its range otherwise.
  template <typename T>
  T integer(const char* name, T fallback) {
    nb::handle v = get(name);
    return v.is_valid() ? integer_value<T>(v, name, name) : fallback;
  }
  double number(const char* name, double fallback) {
    const std::optional<double> v = optional_number(name);
    return v ? *v : fallback;
  }
  std::optional<double> optional_number(const char* name) {
    nb::handle v = get(name);
    if (!v.is_valid()) return std::nullopt;
    if (nb::isinstance<nb::bool_>(v) || !PyNumber_Check(v.ptr()) || PyComplex_Check(v.ptr()))
      throw nb::type_error(
          (std::string(name) + ": expected a number, got " + type_name(v)).c_str());
    const double d = PyFloat_AsDouble(v.ptr());
    if (d == -1.0 && PyErr_Occurred()) throw nb::python_error();
    return d;
  }
  bool flag(const char* name, bool fallback) {
    nb::handle v = get(name);
    if (!v.is_valid()) return fallback;
    bool b = false;
    if (!nb::try_cast(v, b, false))
      throw nb::type_error(
          (std::string(name) + ": expected True or False, got " + type_name(v)).c_str());
    return b;
  }
  std::optional<std::string> text(const char* name) {
    nb::handle v = get(name);
    if (!v.is_valid()) return std::nullopt;
    if (!nb::isinstance<nb::str>(v))
      throw nb::type_error((std::string(name) + ": expected a str, got " + type_name(v)).c_str());
    return nb::cast<std::string>(v);
  }
  std::string text(const char* name, const char* fallback) {
    const auto v = text(name);
    return v ? *v : fallback;
  }
  // An array (or anything input_array() reads); an invalid handle for None.
  nb::handle array(const char* name) { return get(name); }

  // Every key was read: an unknown one is refused.
  void check_all_read() const {
    for (auto [key, value] : values_) {
      const std::string k = nb::cast<std::string>(key);
      if (std::find(read_.begin(), read_.end(), k) == read_.end())
        throw quarry::InvalidArgument("unknown option '" + k + "'");
    }
  }

  template <typename T>
  static T integer_value(nb::handle v, const char* name, std::string_view spelling) {
    const quarry::OptionInfo& option = quarry::option_info(name);
    if (nb::isinstance<nb::bool_>(v) || !PyIndex_Check(v.ptr()))
      throw nb::type_error(
          (std::string(spelling) + ": expected an integer, got " + type_name(v)).c_str());
    nb::object index = nb::steal(PyNumber_Index(v.ptr()));
    if (!index.is_valid()) throw nb::python_error();
    const std::string text = nb::cast<std::string>(nb::str(index));
    int overflow = 0;
    const long long value = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
    if (overflow > 0) {
      const unsigned long long u = PyLong_AsUnsignedLongLong(index.ptr());
      if (PyErr_Occurred()) {
        PyErr_Clear();
        throw quarry::InvalidArgument(quarry::integer_range_message(option, spelling, text));
      }
      quarry::check_unsigned_option(option, spelling, u);
    } else if (overflow < 0) {
      throw quarry::InvalidArgument(quarry::integer_range_message(option, spelling, text));
    } else {
      quarry::check_integer_option(option, spelling, value);
    }
    if constexpr (std::is_unsigned_v<T>)
      return overflow > 0 ? static_cast<T>(PyLong_AsUnsignedLongLong(index.ptr()))
                          : static_cast<T>(value);
    else
      return static_cast<T>(value);  // in range: the schema's range is the type's
  }

 private:
  static std::string type_name(nb::handle v) {
    return nb::cast<std::string>(nb::str(v.type().attr("__name__")));
  }
  // The value of `name`, or an invalid handle when it is missing or None.
  nb::handle get(const char* name) {
    read_.emplace_back(name);
    PyObject* v = PyDict_GetItemString(values_.ptr(), name);  // borrowed: the dict keeps it
    return v == nullptr || v == Py_None ? nb::handle() : nb::handle(v);
  }

  nb::dict values_;
  std::vector<std::string> read_;
};

// The dtypes an argument takes, for its error messages.
std::string accepted_dtypes(const char* what) {
  const std::string name(what);
  if (name == "lengths") return "int32 or int64";
  if (name == "costs") return "float32, float64, int32 or int64";
  if (name == "labeled") return "int32 or int64 rows, or float32, float16 or bfloat16 embeddings";
  if (name.rfind("embeddings", 0) == 0 || name == "features" || name == "points")
    return "float32, float16 or bfloat16";
  return "float32, float16, bfloat16 or float64; int32 or int64 for votes";
}

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
  throw quarry::InvalidArgument(std::string(what) + ": unsupported dtype " + kind + bits + " (" +
                                accepted_dtypes(what) + ")");
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
  const std::string size = typestr.substr(2);
  if (size.size() > 2 || size.find_first_not_of("0123456789") != std::string::npos)
    throw quarry::InvalidArgument(std::string(what) + ": unsupported type string '" + typestr +
                                  "' (a byte order, a kind and a size, such as '<f4')");
  t.bits = static_cast<uint8_t>(8 * std::stoi(size));
  t.lanes = 1;
  return t;
}

// Reads an object exposing __cuda_array_interface__ (version 2 or 3) in place, once the work its
// producer queued on the stream it names is done (in `res`'s stream order).
ArrayView view_from_cuda_array_interface(nb::handle obj, PyResources& res, const char* what);

// The same, with a malformed interface (a missing key, a value of the wrong type) refused by name.
ArrayView checked_cuda_array_interface(nb::handle obj, PyResources& res, const char* what) {
  const std::string malformed = std::string(what) + ": malformed __cuda_array_interface__: ";
  nb::object cai = obj.attr("__cuda_array_interface__");
  if (!nb::isinstance<nb::dict>(cai)) throw quarry::InvalidArgument(malformed + "not a dict");
  for (const char* key : {"typestr", "data", "shape"})
    if (!nb::borrow<nb::dict>(cai).contains(key))
      throw quarry::InvalidArgument(malformed + "no '" + key + "' entry");
  try {
    return view_from_cuda_array_interface(obj, res, what);
  } catch (const std::bad_cast&) {
    throw quarry::InvalidArgument(malformed +
                                  "'typestr' must be a str, 'data' a (pointer, read-only) tuple, "
                                  "'shape' and 'strides' tuples of ints");
  }
}

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

// Why an array with a dtype quarry reads still could not be imported: sparse tensors, byte strides
// that are not whole elements; empty when neither explains it.
std::string import_problem(nb::handle obj, const char* what) {
  const std::string name(what);
  if ((nb::hasattr(obj, "is_sparse") && nb::cast<bool>(nb::bool_(obj.attr("is_sparse")))) ||
      (nb::hasattr(obj, "layout") &&
       nb::cast<std::string>(nb::str(obj.attr("layout"))).find("sparse") != std::string::npos))
    return name + ": sparse tensors are not supported; convert with .to_dense()";
  if (nb::hasattr(obj, "strides") && nb::hasattr(obj, "itemsize")) {
    const nb::object strides = obj.attr("strides");
    int64_t item = 0;
    if (nb::try_cast(obj.attr("itemsize"), item) && item > 0 && nb::isinstance<nb::tuple>(strides))
      for (nb::handle stride : nb::borrow<nb::tuple>(strides)) {
        int64_t bytes = 0;
        if (nb::try_cast(stride, bytes) && bytes % item != 0)
          return name + ": byte strides " + nb::cast<std::string>(nb::str(strides)) +
                 " are not a multiple of the element size (" + std::to_string(item) +
                 " bytes); copy with numpy.ascontiguousarray";
      }
  }
  return {};
}

InputArray input_array(nb::handle obj, PyResources& res, const char* what) {
  InputArray in;
  if (nb::isinstance<nb::bytes>(obj))  // the buffer protocol would read it as uint8
    throw quarry::InvalidArgument(std::string(what) +
                                  ": got bytes; give an array, or a .npy path as a str or "
                                  "pathlib.Path");
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
    in.view = checked_cuda_array_interface(obj, res, what);
    return in;
  }
  if (nb::hasattr(obj, "dtype")) {  // an array neither DLPack nor the buffer protocol carries
    nb::object dtype = obj.attr("dtype");
    if (nb::hasattr(dtype, "byteorder") &&
        nb::cast<std::string>(nb::str(dtype.attr("byteorder"))) == ">")
      throw quarry::InvalidArgument(std::string(what) +
                                    ": big-endian arrays are not supported; convert with "
                                    "arr.astype(arr.dtype.newbyteorder('<'))");
    if (const std::string problem = import_problem(obj, what); !problem.empty())
      throw quarry::InvalidArgument(problem);
    throw quarry::InvalidArgument(std::string(what) + ": unsupported dtype " +
                                  nb::cast<std::string>(nb::str(dtype)) + " (" +
                                  accepted_dtypes(what) + ")");
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

ScoringInputs scoring_inputs(PyResources& res, nb::handle pool_obj, Options& opt) {
  const std::optional<std::string> measure = opt.text("measure");
  const bool logits = opt.flag("logits", false);
  const auto temperature = static_cast<float>(opt.number("temperature", 1.0));
  const std::string layout = opt.text("layout", "members-first");
  const auto classes = opt.integer<int64_t>("classes", 0);
  const nb::handle lengths_obj = opt.array("lengths");
  const std::optional<double> alpha = opt.optional_number("alpha");
  const std::optional<double> threshold = opt.optional_number("threshold");
  const nb::handle features_obj = opt.array("features");
  ScoringInputs in;
  in.pool = input_array(pool_obj, res, "pool");
  if (lengths_obj.is_valid()) in.lengths = input_array(lengths_obj, res, "lengths");
  std::optional<quarry::Measure> m;
  if (measure) m = quarry::parse_measure(*measure);
  in.spec = quarry::pool_from_array(in.pool.view, m, parse_layout(layout), classes, "pool",
                                    in.lengths ? &in.lengths->view : nullptr, "lengths");
  quarry::ScoreOptions& options = in.options;
  options.measure = in.spec.measure;
  options.logits = logits;
  options.temperature = temperature;
  quarry::check_measure_options(in.spec.measure, alpha.has_value(), threshold.has_value(), "");
  if (alpha) options.eigenscore_alpha = *alpha;
  if (threshold) options.semantic_threshold = *threshold;
  if (features_obj.is_valid()) {
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

nb::object score_rows(PyResources& res, nb::handle pool_obj, nb::dict options_dict,
                      nb::handle device_empty) {
  Options opt(std::move(options_dict));
  const ScoringInputs in = scoring_inputs(res, pool_obj, opt);
  opt.check_all_read();
  const quarry::PoolSpec& spec = in.spec;
  const quarry::ScoreOptions& options = in.options;
  if (spec.view.space == MemorySpace::device && res.resources.device() == quarry::Device::cuda) {
    // Scores of a device pool stay on the device: `device_empty(rows)` makes a float32 array of
    // the pool's framework on the pool's device, and the engine writes into it. The array comes
    // from the framework's allocator on the framework's current stream (its second value): work
    // still queued there may use that memory, so quarry's stream waits for it before writing.
    nb::tuple made = nb::cast<nb::tuple>(device_empty(spec.view.rows));
    nb::object out = made[0];
    res.resources.wait_for_stream(reinterpret_cast<void*>(nb::cast<uintptr_t>(made[1])));
    nb::ndarray<float, nb::ndim<1>, nb::c_contig, nb::device::cuda> target =
        nb::cast<decltype(target)>(out);
    if (static_cast<int64_t>(target.shape(0)) != spec.view.rows)
      throw quarry::InvalidArgument("the device output has " + std::to_string(target.shape(0)) +
                                    " elements for " + std::to_string(spec.view.rows) + " rows");
    {
      nb::gil_scoped_release release;
      const CallLock lock(res);
      const PythonInterrupts interrupts;
      quarry::score(res.resources, spec.view, options, target.data());
    }
    return out;
  }
  std::vector<float> scores(static_cast<size_t>(spec.view.rows));
  {
    nb::gil_scoped_release release;
    const CallLock lock(res);
    const PythonInterrupts interrupts;
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

// What every selection reads besides the scoring: k, the candidates, k-means and exploration.
quarry::SelectOptions select_options(quarry::Measure measure, Options& opt) {
  quarry::SelectOptions options;
  options.scoring.measure = measure;
  options.scoring.logits = opt.flag("logits", false);
  options.scoring.temperature = static_cast<float>(opt.number("temperature", 1.0));
  options.k = opt.integer<int64_t>("k", 0);
  options.candidates = opt.integer<int64_t>("candidates", 0);
  options.kmeans.iterations = opt.integer<int>("kmeans_iters", 25);
  options.seed = opt.integer<uint64_t>("seed", 0);
  options.kmeans.seed = options.seed;
  options.explore = opt.number("explore", 0.0);
  options.tie_break = quarry::parse_tie_break(opt.text("tie_break", "row"));
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

nb::tuple select_rows(PyResources& res, nb::handle pool_obj, nb::dict options_dict) {
  Options opt(std::move(options_dict));
  const ScoringInputs in = scoring_inputs(res, pool_obj, opt);
  quarry::SelectOptions options = select_options(in.spec.measure, opt);
  options.scoring = in.options;
  options.strategy = quarry::parse_strategy(opt.text("strategy", "rank"));
  const nb::handle embeddings_obj = opt.array("embeddings");
  const nb::handle labeled_obj = opt.array("labeled");
  const nb::handle costs_obj = opt.array("costs");
  const double budget = opt.number("budget", 0.0);
  const bool exact_budget = opt.flag("exact_budget", false);
  opt.check_all_read();
  std::optional<InputArray> embeddings;
  if (embeddings_obj.is_valid()) {
    embeddings = input_array(embeddings_obj, res, "embeddings");
    options.embeddings = quarry::embeddings_from_array(embeddings->view, "embeddings");
  }
  std::optional<InputArray> labeled;
  if (labeled_obj.is_valid()) {
    labeled = input_array(labeled_obj, res, "labeled");
    quarry::labeled_from_array(labeled->view, options, "labeled");
  }
  std::vector<double> costs;
  if (costs_obj.is_valid())
    costs = quarry::costs_from_array(input_array(costs_obj, res, "costs").view, "costs");
  options.costs = costs_obj.is_valid() ? costs.data() : nullptr;
  options.cost_count = static_cast<int64_t>(costs.size());
  options.budget = budget;
  options.exact_budget = exact_budget;
  quarry::Selection sel;
  {
    nb::gil_scoped_release release;
    const CallLock lock(res);
    const PythonInterrupts interrupts;
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

ShardArrays shard_arrays(PyResources& res, nb::handle pools, Options& opt) {
  const std::optional<std::string> measure = opt.text("measure");
  const std::string layout = opt.text("layout", "members-first");
  const auto classes = opt.integer<int64_t>("classes", 0);
  const nb::handle embeddings = opt.array("embeddings");
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
  if (embeddings.is_valid())
    for (nb::handle e : embeddings) {
      const std::string name = "embeddings[" + std::to_string(out.embeddings.size()) + "]";
      out.embeddings.push_back(input_array(e, res, name.c_str()));
      out.embedding_views.push_back(
          quarry::embeddings_from_array(out.embeddings.back().view, name));
    }
  return out;
}

nb::object score_shards(PyResources& res, nb::handle pools, nb::dict options_dict) {
  Options opt(std::move(options_dict));
  const ShardArrays shards = shard_arrays(res, pools, opt);
  quarry::ScoreOptions options;
  options.measure = shards.measure;
  options.logits = opt.flag("logits", false);
  options.temperature = static_cast<float>(opt.number("temperature", 1.0));
  opt.check_all_read();
  std::vector<float> scores;
  {
    nb::gil_scoped_release release;
    const CallLock lock(res);
    const PythonInterrupts interrupts;
    scores = quarry::score(res.resources, shards.views, options);
  }
  return nb::cast(to_numpy(std::move(scores)));
}

nb::tuple select_shards(PyResources& res, nb::handle pools, nb::dict options_dict) {
  Options opt(std::move(options_dict));
  const ShardArrays shards = shard_arrays(res, pools, opt);
  const quarry::SelectOptions options = select_options(shards.measure, opt);
  opt.check_all_read();
  quarry::Selection sel;
  {
    nb::gil_scoped_release release;
    const CallLock lock(res);
    const PythonInterrupts interrupts;
    sel = quarry::select(res.resources, shards.views, options, shards.embedding_views);
  }
  return selection_tuple(std::move(sel), shards.measure);
}

quarry::Partial partial_of_shards(PyResources& res, nb::handle pools, nb::dict options_dict) {
  Options opt(std::move(options_dict));
  const ShardArrays shards = shard_arrays(res, pools, opt);
  const quarry::SelectOptions options = select_options(shards.measure, opt);
  const auto row_offset = opt.integer<int64_t>("row_offset", 0);
  const auto pool_rows = opt.integer<int64_t>("pool_rows", 0);
  opt.check_all_read();
  nb::gil_scoped_release release;
  const CallLock lock(res);
  const PythonInterrupts interrupts;
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
  quarry::Partial restored;
  try {
    restored = quarry::partial_from_json(nb::cast<std::string>(state[0]));
    restored.indices = from_raw_bytes<int64_t>(state[1]);
    restored.scores = from_raw_bytes<float>(state[2]);
    restored.embeddings = from_raw_bytes<float>(state[3]);
    restored.explore_rows = from_raw_bytes<int64_t>(state[4]);
    restored.explore_scores = from_raw_bytes<float>(state[5]);
  } catch (const std::bad_cast&) {  // a field of the wrong Python type
    throw quarry::InvalidInput("a Partial's state is damaged (a field has the wrong type)");
  }
  new (&p) quarry::Partial(std::move(restored));
}

nb::tuple merge_partials(PyResources& res, const std::vector<quarry::Partial>& partials,
                         nb::handle k_obj) {
  const auto k = Options::integer_value<int64_t>(k_obj, "k", "k");
  quarry::Selection sel;
  {
    nb::gil_scoped_release release;
    const CallLock lock(res);
    const PythonInterrupts interrupts;
    sel = quarry::merge(res.resources, partials, k);
  }
  return selection_tuple(std::move(sel), partials.empty() ? quarry::Measure::entropy
                                                          : partials[0].options.scoring.measure);
}

nb::tuple cluster(PyResources& res, nb::handle points_obj, nb::handle k_obj,
                  nb::handle iterations_obj, nb::handle seed_obj, nb::handle initial_obj) {
  const auto k = Options::integer_value<int64_t>(k_obj, "k", "k");
  const auto iterations = Options::integer_value<int>(iterations_obj, "kmeans_iters", "iterations");
  const auto seed = Options::integer_value<uint64_t>(seed_obj, "seed", "seed");
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
    const CallLock lock(res);
    const PythonInterrupts interrupts;
    result = quarry::kmeans(res.resources, view, k, options);
  }
  const int64_t dim = view.dim;
  auto centroids = to_numpy(std::move(result.centroids));
  nb::object reshaped = nb::cast(centroids).attr("reshape")(k, dim);
  return nb::make_tuple(reshaped, to_numpy(std::move(result.assignments)), result.inertia,
                        result.iterations);
}

// An address given as a Python int, refused clearly when it is not one in [0, 2^64).
uintptr_t address_of(nb::handle value, const std::string& what) {
  uintptr_t address = 0;
  if (!nb::isinstance<nb::int_>(value) || !nb::try_cast(value, address, false))
    throw quarry::InvalidArgument(what + " must be an int in [0, 2^64) (an address), got " +
                                  nb::cast<std::string>(nb::repr(value)));
  return address;
}

// A cudaStream_t from an int, or an object with __cuda_stream__ (the CUDA stream protocol),
// .cuda_stream (PyTorch) or .ptr (CuPy).
void* stream_pointer(nb::handle stream) {
  if (nb::isinstance<nb::int_>(stream))
    return reinterpret_cast<void*>(address_of(stream, "stream (a cudaStream_t)"));
  if (nb::hasattr(stream, "__cuda_stream__")) {
    nb::object t = stream.attr("__cuda_stream__")();
    if (!nb::isinstance<nb::tuple>(t) || nb::len(t) != 2)
      throw quarry::InvalidArgument("stream.__cuda_stream__() must return (version, address)");
    return reinterpret_cast<void*>(
        address_of(nb::borrow<nb::tuple>(t)[1], "stream.__cuda_stream__()[1]"));
  }
  if (nb::hasattr(stream, "cuda_stream"))
    return reinterpret_cast<void*>(address_of(stream.attr("cuda_stream"), "stream.cuda_stream"));
  if (nb::hasattr(stream, "ptr"))
    return reinterpret_cast<void*>(address_of(stream.attr("ptr"), "stream.ptr"));
  throw quarry::InvalidArgument(
      "stream must be an int (a cudaStream_t) or a stream object (__cuda_stream__, PyTorch's "
      "torch.cuda.Stream, CuPy's cupy.cuda.Stream)");
}

void set_progress(PyResources& res, nb::object callback) {
  if (callback.is_none()) {
    res.resources.set_progress({});
    res.progress.reset();
    return;
  }
  // Called from the engine with the GIL released; each call holds the callable it started with.
  auto fn = std::make_shared<PyCallable>(std::move(callback));
  res.progress = fn;
  res.resources.set_progress([fn](int64_t done, int64_t total) {
    nb::gil_scoped_acquire acquire;
    fn->fn(done, total);
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
  const std::shared_ptr<PyCallable>& progress = nb::inst_ptr<PyResources>(self)->progress;
  if (progress) Py_VISIT(progress->fn.ptr());
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

// None (automatic) or a thread count >= 0 (0: automatic).
int threads_value(nb::handle threads) {
  if (threads.is_none()) return 0;
  return Options::integer_value<int>(threads, "threads", "threads");
}

void make_resources(PyResources* self, const std::string& device, nb::handle memory_budget,
                    nb::handle stream, nb::object progress, nb::handle cuda_device_obj,
                    nb::handle threads_obj) {
  const int cuda_device =
      Options::integer_value<int>(cuda_device_obj, "cuda_device", "cuda_device");
  const int threads = threads_value(threads_obj);  // checked before a device is started
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
  self->resources.set_threads(threads);
  set_progress(*self, std::move(progress));
}

// A .npy file read with the command line's reader (quarry_io) into memory, as a read-only numpy
// array: a FIFO is refused without blocking, and a file truncated while it is read is an
// InvalidInput rather than the SIGBUS a memory map would raise in the interpreter.
nb::object load_npy(const std::string& path) {
  std::unique_ptr<quarry::io::NpyArray> array;
  {
    nb::gil_scoped_release release;
    array = std::make_unique<quarry::io::NpyArray>(
        quarry::io::NpyArray::open(path, {.into_memory = true}));
  }
  std::vector<size_t> shape(array->shape().begin(), array->shape().end());
  nb::dlpack::dtype t{};
  t.lanes = 1;
  t.bits = static_cast<uint8_t>(8 * quarry::dtype_size(array->dtype()));
  const DType d = array->dtype();
  t.code = static_cast<uint8_t>(d == DType::i32 || d == DType::i64 ? nb::dlpack::dtype_code::Int
                                                                   : nb::dlpack::dtype_code::Float);
  const void* data = array->data();
  nb::capsule owner(array.release(),
                    [](void* p) noexcept { delete static_cast<quarry::io::NpyArray*>(p); });
  return nb::cast(
      nb::ndarray<nb::numpy, nb::ro>(data, shape.size(), shape.data(), owner, nullptr, t));
}

// Refuses a strategy partial results cannot carry, with the engine's reason: Python asks the
// strategy, as the C++ sharded selection does, instead of keeping a list of its own.
void check_shardable(const std::string& strategy, bool budgeted, bool exact_budget) {
  quarry::SelectOptions options;
  options.strategy = quarry::parse_strategy(strategy);
  options.budget = budgeted ? 1.0 : 0.0;
  options.exact_budget = exact_budget;
  quarry::check_shardable(options);
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
  const CallLock lock(res);
  const PythonInterrupts interrupts;
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

// The measure table (quarry/measures.hpp), a dict per measure.
nb::list measure_table() {
  nb::list out;
  for (const quarry::MeasureInfo& m : quarry::measures()) {
    nb::dict d;
    d["name"] = std::string(m.name);
    d["pool_kind"] = std::string(quarry::to_string(m.pool_kind));
    d["family"] = std::string(m.family);
    d["logits"] = m.logits;
    d["votes"] = m.votes;
    d["lengths"] = m.lengths;
    d["alpha"] = m.alpha;
    d["threshold"] = m.threshold;
    d["features"] = m.features;
    d["shardable"] = m.shardable;
    d["formula"] = std::string(m.formula);
    out.append(d);
  }
  return out;
}

// The options schema (quarry/options.hpp), a dict per option.
nb::list option_table() {
  nb::list out;
  for (const quarry::OptionInfo& o : quarry::option_schema()) {
    nb::dict d;
    d["name"] = std::string(o.name);
    d["cli_flag"] = std::string(o.cli_flag);
    d["json_key"] = std::string(o.json_key);
    d["cpp_field"] = std::string(o.cpp_field);
    d["type"] = std::string(quarry::to_string(o.type));
    if (o.type == quarry::OptionType::integer) {
      d["min"] = o.min;
      d["max"] = o.max;
    } else {
      d["min"] = nb::none();
      d["max"] = nb::none();
    }
    d["default"] = std::string(o.default_value);
    d["applies_to"] = std::string(o.applies_to);
    d["help"] = std::string(o.help);
    out.append(d);
  }
  return out;
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
      "bad votes). `row` is the first offending pool row, or None; `input` names the input it\n"
      "is of ('pool', 'embeddings', 'features', 'lengths', 'costs', 'labeled'), or None.");
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
      exc.attr("input") = e.input().empty() ? nb::none() : nb::cast(e.input());
      PyErr_SetObject(invalid_input_type, exc.ptr());
    } catch (const quarry::InvalidArgument& e) {
      PyErr_SetString(invalid_argument_type, e.what());
    } catch (const quarry::BackendUnavailable& e) {
      PyErr_SetString(backend_unavailable_type, e.what());
    } catch (const quarry::OutOfMemory& e) {
      PyErr_SetString(out_of_memory_type, e.what());
    } catch (const quarry::CudaError& e) {
      PyErr_SetString(cuda_error_type, e.what());
    } catch (const quarry::Interrupted&) {
      if (t_pending_type != nullptr) {
        PyErr_Restore(t_pending_type, t_pending_value, t_pending_traceback);
        t_pending_type = t_pending_value = t_pending_traceback = nullptr;
      } else {
        PyErr_SetNone(PyExc_KeyboardInterrupt);
      }
    } catch (const quarry::Error& e) {
      PyErr_SetString(error_type, e.what());
    }
  });
}

}  // namespace

NB_MODULE(_quarry, m) {
  m.doc() = "quarry's engine; use the functions of the quarry package.";
  register_exceptions(m);
  // A daemon thread still inside a call when the interpreter exits holds its arguments forever:
  // that is how Python ends daemon threads, not a leak of quarry's to report.
  nb::set_leak_warnings(false);
  g_main_thread = nb::cast<unsigned long>(
      nb::module_::import_("threading").attr("main_thread")().attr("ident"));

  nb::class_<PyResources>(
      m, "Resources", nb::type_slots(resources_slots),
      "Resources(device='auto', memory_budget=None, stream=None, progress=None, cuda_device=0,\n"
      "          threads=None)\n\n"
      "The backend quarry runs on, with its device, stream and kept memory. Make one and reuse it\n"
      "across calls; calls on one Resources from several threads take turns (one per thread runs\n"
      "them in parallel).\n\n"
      "device: 'auto' (the GPU when this build has CUDA and one is present, else the CPU), 'cpu'\n"
      "  or 'cuda' (BackendUnavailable when there is none).\n"
      "memory_budget: working-memory cap: None (default), bytes, or a size such as '8G'.\n"
      "stream: a CUDA stream to run on, borrowed: an int (cudaStream_t), torch.cuda.Stream,\n"
      "  cupy.cuda.Stream, or anything with __cuda_stream__.\n"
      "progress: called as progress(rows_done, rows_total) after each chunk of rows.\n"
      "cuda_device: the CUDA device's ordinal.\n"
      "threads: the most CPU threads a call uses: None (default) for the CPUs this process may\n"
      "  run on (its affinity and cgroup quota, at most OMP_NUM_THREADS); small calls use fewer.")
      .def("__init__", &make_resources, nb::arg("device") = "auto",
           nb::arg("memory_budget").none() = nb::none(), nb::arg("stream").none() = nb::none(),
           nb::arg("progress").none() = nb::none(), nb::arg("cuda_device").none() = 0,
           nb::arg("threads").none() = nb::none())
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
          "progress", [](PyResources& r) { return r.progress ? r.progress->fn : nb::none(); },
          &set_progress, nb::arg("callback").none())
      .def_prop_rw(
          "threads",
          [](PyResources& r) -> nb::object {
            const int t = r.resources.threads();
            return t == 0 ? nb::object(nb::none()) : nb::object(nb::int_(t));
          },
          [](PyResources& r, nb::handle threads) {
            r.resources.set_threads(threads_value(threads));
          },
          nb::arg("threads").none(),
          "The most CPU threads a call uses, or None: the CPUs this process may run on.")
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

  // Keyword options travel as one dict, read against the options schema (class Options).
  m.def("score", &score_rows, nb::arg("resources"), nb::arg("pool").none(), nb::arg("options"),
        nb::arg("device_empty"));
  m.def("select", &select_rows, nb::arg("resources"), nb::arg("pool").none(), nb::arg("options"));
  m.def("score_shards", &score_shards, nb::arg("resources"), nb::arg("pools"), nb::arg("options"));
  m.def("select_shards", &select_shards, nb::arg("resources"), nb::arg("pools"),
        nb::arg("options"));
  m.def("select_partial", &partial_of_shards, nb::arg("resources"), nb::arg("pools"),
        nb::arg("options"));
  m.def("merge", &merge_partials, nb::arg("resources"), nb::arg("partials"), nb::arg("k").none());
  m.def(
      "combine",
      [](const std::vector<quarry::Partial>& partials) { return quarry::combine(partials); },
      nb::arg("partials"), nb::call_guard<nb::gil_scoped_release>());
  m.def("kmeans", &cluster, nb::arg("resources"), nb::arg("points").none(), nb::arg("k").none(),
        nb::arg("iterations").none(), nb::arg("seed").none(), nb::arg("initial_centroids").none());
  m.def("measures", &measure_table);
  m.def("option_schema", &option_table);
  m.def("info", &info);
  m.def("load_npy", &load_npy, nb::arg("path"));
  m.def("check_shardable", &check_shardable, nb::arg("strategy"), nb::arg("budgeted"),
        nb::arg("exact_budget"));
  m.attr("__version__") = quarry::version();  // without info(), which asks the driver
  m.def("_time_select_call", &time_select_call, nb::arg("resources"), nb::arg("pool"), nb::arg("k"),
        nb::arg("repeats"));
  m.def("parse_memory_size",
        [](const std::string& text) { return quarry::parse_memory_size(text); });
}
