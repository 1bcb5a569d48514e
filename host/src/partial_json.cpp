// Partials as JSON: what `quarry select --row-offset` writes and `quarry merge` reads, and what
// any other program can produce or inspect. Floats are written with enough digits to read back
// the same bits.

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "quarry/error.hpp"
#include "quarry/options.hpp"
#include "quarry/shard.hpp"

namespace quarry {

namespace {

using nlohmann::json;

constexpr const char* kFormat = "quarry-partial/1";

// JSON has no infinities: a vote pool's rows nobody voted on score -inf.
json score_value(float s) {
  if (std::isinf(s)) return s < 0 ? "-inf" : "inf";
  return s;
}

float read_score(const json& v) {
  if (v.is_string()) {
    const auto text = v.get<std::string>();
    if (text == "-inf") return -std::numeric_limits<float>::infinity();
    if (text == "inf") return std::numeric_limits<float>::infinity();
    throw InvalidInput("a score must be a number, \"-inf\" or \"inf\", not \"" + text + "\"");
  }
  return v.get<float>();
}

// An integer field, refused unless it is a JSON integer (0.5 is not row 0) in the range of its
// option (the options schema: the command line's range for the same option), or of int64.
template <typename T>
T read_integer(const json& v, std::string_view key) {
  const OptionInfo* option = nullptr;
  for (const OptionInfo& o : option_schema())
    if (o.json_key == key) option = &o;
  if (key == "kmeans_seed") option = &option_info("seed");
  const OptionInfo& range = option ? *option : option_info("row_offset");  // int64's range
  const std::string prefix = "not a well-formed quarry partial: ";
  if (!v.is_number_integer())
    throw InvalidInput(prefix + integer_range_message(range, key, v.dump()));
  try {
    if (v.is_number_unsigned()) {
      const auto u = v.get<uint64_t>();
      check_unsigned_option(range, key, u);
      return static_cast<T>(u);
    }
    const auto s = v.get<int64_t>();
    check_integer_option(range, key, s);
    return static_cast<T>(s);
  } catch (const InvalidArgument& e) {
    throw InvalidInput(prefix + e.what());
  }
}

template <typename T>
std::vector<T> read_integers(const json& v, std::string_view key) {
  if (!v.is_array())
    throw InvalidInput("not a well-formed quarry partial: " + std::string(key) +
                       " must be an array of integers");
  std::vector<T> out;
  out.reserve(v.size());
  for (const json& e : v) out.push_back(read_integer<T>(e, key));
  return out;
}

// An option's key in the JSON: the options schema's.
std::string key(std::string_view option) {
  return std::string(option_info(option).json_key);
}

DType read_dtype(const json& v) {
  const auto text = v.get<std::string>();
  for (DType d : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64})
    if (to_string(d) == text) return d;
  throw InvalidInput("unknown dtype '" + text + "'");
}

}  // namespace

std::string to_json(const Partial& p) {
  const SelectOptions& o = p.options;
  json j;
  j["format"] = kFormat;
  j[key("measure")] = to_string(o.scoring.measure);
  j[key("logits")] = o.scoring.logits;
  j[key("temperature")] = o.scoring.temperature;
  j[key("k")] = o.k;
  j[key("candidates")] = o.candidates;
  j[key("kmeans_iters")] = o.kmeans.iterations;
  j["kmeans_seed"] = o.kmeans.seed;
  j["kmeans_initial_centroids"] = o.kmeans.initial_centroids;
  j[key("explore")] = o.explore;
  j[key("seed")] = o.seed;
  j[key("tie_break")] = to_string(o.tie_break);
  j["dtype"] = to_string(p.dtype);
  j["members"] = p.members;
  j[key("classes")] = p.classes;
  j["embedding_dim"] = p.embedding_dim;
  j["embedding_dtype"] = to_string(p.embedding_dtype);
  j[key("pool_rows")] = p.pool_rows;
  json shards = json::array();
  for (const RowRange& r : p.shards) shards.push_back({r.offset, r.rows});
  j["shards"] = shards;
  j["indices"] = p.indices;
  json scores = json::array();
  for (float s : p.scores) scores.push_back(score_value(s));
  j["scores"] = scores;
  json embeddings = json::array();
  const auto dim = static_cast<size_t>(p.embedding_dim);
  for (size_t i = 0; dim > 0 && i < p.embeddings.size() / dim; ++i)
    embeddings.push_back(
        std::vector<float>(p.embeddings.begin() + i * dim, p.embeddings.begin() + (i + 1) * dim));
  j["embeddings"] = embeddings;
  j["explore_rows"] = p.explore_rows;
  json explore_scores = json::array();
  for (float s : p.explore_scores) explore_scores.push_back(score_value(s));
  j["explore_scores"] = explore_scores;
  j["backend"] = p.backend;
  return j.dump() + "\n";
}

Partial partial_from_json(std::string_view text) {
  try {
    const json j = json::parse(text);
    if (!j.is_object() || !j.contains("format") || j["format"] != kFormat)
      throw InvalidInput(std::string("not a quarry partial (no \"format\": \"") + kFormat + "\")");
    Partial p;
    SelectOptions& o = p.options;
    o.scoring.measure = parse_measure(j.at(key("measure")).get<std::string>());
    o.scoring.logits = j.at(key("logits")).get<bool>();
    o.scoring.temperature = j.at(key("temperature")).get<float>();
    o.k = read_integer<int64_t>(j.at(key("k")), "k");
    o.candidates = read_integer<int64_t>(j.at(key("candidates")), "candidates");
    o.kmeans.iterations = read_integer<int>(j.at(key("kmeans_iters")), "kmeans_iterations");
    o.kmeans.seed = read_integer<uint64_t>(j.at("kmeans_seed"), "kmeans_seed");
    o.kmeans.initial_centroids = j.at("kmeans_initial_centroids").get<std::vector<float>>();
    o.explore = j.at(key("explore")).get<double>();
    o.seed = read_integer<uint64_t>(j.at(key("seed")), "seed");
    // Partials written before the tie-break existed ranked ties by row.
    o.tie_break = parse_tie_break(j.value(key("tie_break"), std::string("row")));
    p.dtype = read_dtype(j.at("dtype"));
    p.members = read_integer<int64_t>(j.at("members"), "members");
    p.classes = read_integer<int64_t>(j.at(key("classes")), "classes");
    p.embedding_dim = read_integer<int64_t>(j.at("embedding_dim"), "embedding_dim");
    p.embedding_dtype = read_dtype(j.at("embedding_dtype"));
    p.pool_rows = read_integer<int64_t>(j.at(key("pool_rows")), "pool_rows");
    for (const json& r : j.at("shards")) {
      if (!r.is_array() || r.size() != 2) throw InvalidInput("shards are [offset, rows] pairs");
      p.shards.push_back(
          {read_integer<int64_t>(r[0], "shards"), read_integer<int64_t>(r[1], "shards")});
    }
    p.indices = read_integers<int64_t>(j.at("indices"), "indices");
    for (const json& s : j.at("scores")) p.scores.push_back(read_score(s));
    for (const json& row : j.at("embeddings")) {
      if (!row.is_array() || static_cast<int64_t>(row.size()) != p.embedding_dim)
        throw InvalidInput("each embedding must hold embedding_dim values");
      for (const json& v : row) p.embeddings.push_back(v.get<float>());
    }
    p.explore_rows = read_integers<int64_t>(j.at("explore_rows"), "explore_rows");
    for (const json& s : j.at("explore_scores")) p.explore_scores.push_back(read_score(s));
    p.backend = j.at("backend").get<std::string>();
    return p;
  } catch (const json::exception& e) {
    throw InvalidInput(std::string("not a well-formed quarry partial: ") + e.what());
  } catch (const InvalidArgument& e) {  // an unknown measure
    throw InvalidInput(std::string("not a well-formed quarry partial: ") + e.what());
  }
}

}  // namespace quarry
