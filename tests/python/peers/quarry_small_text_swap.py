"""pytest plugin (``-p quarry_small_text_swap``): small-text's strategies replaced by quarry's.

Loaded before small-text's own tests are collected, so their ``from small_text.query_strategies
import LeastConfidence`` binds quarry's class. quarry's classes subclass small-text's, so they
are made before the names are replaced.
"""

import small_text
import small_text.query_strategies as qs
import small_text.query_strategies.bayesian as bayesian
import small_text.query_strategies.coresets as coresets
import small_text.query_strategies.strategies as strategies

import quarry.small_text as ours

SWAPPED = ("LeastConfidence", "BreakingTies", "PredictionEntropy", "BALD", "GreedyCoreset",
           "EmbeddingKMeans")  # fmt: skip

for name in SWAPPED:
    for module in (small_text, qs, strategies, bayesian, coresets):
        if hasattr(module, name):
            setattr(module, name, getattr(ours, name))
