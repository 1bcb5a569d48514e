// Partials as JSON: what `quarry select --row-offset` writes and `quarry merge` reads, and what
// any other program can produce or inspect. Floats are written with enough digits to read back
// the same bits.

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "quarry/error.hpp"
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
  j["measure"] = to_string(o.scoring.measure);
  j["logits"] = o.scoring.logits;
  j["temperature"] = o.scoring.temperature;
  j["k"] = o.k;
  j["candidates"] = o.candidates;
  j["kmeans_iterations"] = o.kmeans.iterations;
  j["kmeans_seed"] = o.kmeans.seed;
  j["kmeans_initial_centroids"] = o.kmeans.initial_centroids;
  j["explore"] = o.explore;
  j["seed"] = o.seed;
  j["tie_break"] = to_string(o.tie_break);
  j["dtype"] = to_string(p.dtype);
  j["members"] = p.members;
  j["classes"] = p.classes;
  j["embedding_dim"] = p.embedding_dim;
  j["embedding_dtype"] = to_string(p.embedding_dtype);
  j["pool_rows"] = p.pool_rows;
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
    o.scoring.measure = parse_measure(j.at("measure").get<std::string>());
    o.scoring.logits = j.at("logits").get<bool>();
    o.scoring.temperature = j.at("temperature").get<float>();
    o.k = j.at("k").get<int64_t>();
    o.candidates = j.at("candidates").get<int64_t>();
    o.kmeans.iterations = j.at("kmeans_iterations").get<int>();
    o.kmeans.seed = j.at("kmeans_seed").get<uint64_t>();
    o.kmeans.initial_centroids = j.at("kmeans_initial_centroids").get<std::vector<float>>();
    o.explore = j.at("explore").get<double>();
    o.seed = j.at("seed").get<uint64_t>();
    // Partials written before the tie-break existed ranked ties by row.
    o.tie_break = parse_tie_break(j.value("tie_break", std::string("row")));
    p.dtype = read_dtype(j.at("dtype"));
    p.members = j.at("members").get<int64_t>();
    p.classes = j.at("classes").get<int64_t>();
    p.embedding_dim = j.at("embedding_dim").get<int64_t>();
    p.embedding_dtype = read_dtype(j.at("embedding_dtype"));
    p.pool_rows = j.at("pool_rows").get<int64_t>();
    for (const json& r : j.at("shards")) {
      if (!r.is_array() || r.size() != 2) throw InvalidInput("shards are [offset, rows] pairs");
      p.shards.push_back({r[0].get<int64_t>(), r[1].get<int64_t>()});
    }
    p.indices = j.at("indices").get<std::vector<int64_t>>();
    for (const json& s : j.at("scores")) p.scores.push_back(read_score(s));
    for (const json& row : j.at("embeddings")) {
      if (!row.is_array() || static_cast<int64_t>(row.size()) != p.embedding_dim)
        throw InvalidInput("each embedding must hold embedding_dim values");
      for (const json& v : row) p.embeddings.push_back(v.get<float>());
    }
    p.explore_rows = j.at("explore_rows").get<std::vector<int64_t>>();
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
