"""Active-learning simulator: how many labels quarry's strategies save over random sampling.

Command line: ``python -m quarry.eval`` or ``quarry-eval`` (``--help``). From Python::

    from quarry.eval import simulate, summarize, markdown
    doc = simulate(["digits"], ["random", "margin", "bald"], budget=200, seeds=5)
    print(markdown(doc))

The stopping rules work in any loop: :func:`accuracy_plateau_stop` and
:func:`kappa_stability_stop` take the history so far and return the round to stop at, or None.
"""

from .data import Dataset, Split, load_dataset, make_split, stratified_sample
from .report import aulc, markdown, summarize
from .simulate import ROUND_FIELDS, TIMING_FIELDS, run_strategy, simulate
from .stopping import (
    accuracy_plateau_stop,
    cohen_kappa,
    kappa_stability_stop,
    stable_kappa_round,
)
from .strategies import Strategy, parse_strategies, parse_strategy

__all__ = [
    "ROUND_FIELDS",
    "TIMING_FIELDS",
    "Dataset",
    "Split",
    "Strategy",
    "accuracy_plateau_stop",
    "aulc",
    "cohen_kappa",
    "kappa_stability_stop",
    "load_dataset",
    "make_split",
    "markdown",
    "parse_strategies",
    "parse_strategy",
    "run_strategy",
    "simulate",
    "stable_kappa_round",
    "stratified_sample",
    "summarize",
]
