"""Per-call cost of quarry's drop-ins beside the strategies they replace, at several pool sizes.

Each strategy is called as its library calls it, on the same seeded pool, with a classifier that
returns precomputed outputs (the first feature of every sample is its row id), so the time is the
strategy's own: scoring, ranking and, for batch strategies, the picking. quarry runs on its CPU
backend. Sizes run in ascending order; a library is not run at a size where its last time,
scaled linearly by the rows, passes --cap seconds (default 60); the table says so.

    nice -n 10 python bench/compare_dropins.py                      # 1k, 100k and 1M rows
    nice -n 10 python bench/compare_dropins.py --rows 1000 --only modal

Prints a Markdown table (seconds per call, the best of --repeat calls under 1 s, else one call).
Needs numpy, scikit-learn, modAL-python, small-text and scikit-activeml.
"""

import argparse
import time
import warnings

import numpy as np

CLASSES, MEMBERS, DIM, DROPOUT, K, LABELED = 10, 5, 32, 10, 100, 1000


class Outputs:
    """Precomputed outputs by row id (column 0 of every sample)."""

    def __init__(self, rows, seed=0):
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((rows, MEMBERS, CLASSES)) * 2
        e = np.exp(z - z.max(axis=2, keepdims=True))
        self.committee = e / e.sum(axis=2, keepdims=True)  # [N, M, C]
        self.proba = np.ascontiguousarray(self.committee[:, 0])
        self.mean = self.committee.mean(axis=1)
        self.votes = self.committee.argmax(axis=2)  # [N, M]
        z = rng.standard_normal((rows, DROPOUT, CLASSES)) * 2
        e = np.exp(z - z.max(axis=2, keepdims=True))
        self.dropout = e / e.sum(axis=2, keepdims=True)  # [N, dropout samples, C]
        self.X = np.column_stack([np.arange(rows), rng.standard_normal((rows, DIM - 1))])


def labeled_count(rows):
    return min(LABELED, rows // 10)


def ids(X):
    return np.asarray(X)[:, 0].astype(np.int64)


def modal_cases(out):
    from modAL import disagreement, uncertainty

    import quarry.modal as qm

    class Clf:
        def predict_proba(self, X):
            return out.proba[ids(X)]

    class Committee:
        classes_ = np.arange(CLASSES)

        def __len__(self):
            return MEMBERS

        def __iter__(self):
            return iter(range(MEMBERS))

        def vote(self, X):
            return out.votes[ids(X)]

        def vote_proba(self, X):
            return out.committee[ids(X)]

        def predict_proba(self, X):
            return out.mean[ids(X)]

    cases = []
    for name in ("uncertainty_sampling", "margin_sampling", "entropy_sampling"):
        cases.append((f"modAL {name}", getattr(uncertainty, name), getattr(qm, name), Clf()))
    for name in ("vote_entropy_sampling", "consensus_entropy_sampling",
                 "max_disagreement_sampling"):  # fmt: skip
        cases.append((f"modAL {name}", getattr(disagreement, name), getattr(qm, name),
                      Committee()))  # fmt: skip
    return [(label, (lambda f, c: lambda: f(c, out.X, n_instances=K))(theirs, clf),
             (lambda f, c: lambda: f(c, out.X, n_instances=K))(ours, clf))
            for label, theirs, ours, clf in cases]  # fmt: skip


def small_text_cases(out):
    import small_text.query_strategies as st
    from small_text.query_strategies import bayesian, coresets

    import quarry.small_text as qst

    rows = len(out.X)
    labeled = np.arange(rows - labeled_count(rows), rows)
    unlabeled = np.arange(rows - labeled_count(rows))

    class Clf:
        def predict_proba(self, X, dropout_sampling=None):
            return out.proba[ids(X)] if dropout_sampling is None else out.dropout[ids(X)]

        def embed(self, X, return_proba=False, pbar=None):
            emb = np.asarray(X, dtype=np.float64)
            return (emb, out.proba[ids(X)]) if return_proba else emb

    def call(strategy):
        return lambda: strategy.query(Clf(), out.X, unlabeled, labeled, np.zeros(len(labeled)), n=K)

    cases = []
    for name in ("LeastConfidence", "BreakingTies", "PredictionEntropy"):
        cases.append((f"small-text {name}", call(getattr(st, name)()),
                      call(getattr(qst, name)())))  # fmt: skip
    cases.append(("small-text BALD", call(bayesian.BALD(DROPOUT)), call(qst.BALD(DROPOUT))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases.append(("small-text GreedyCoreset", call(coresets.GreedyCoreset()),
                      call(qst.GreedyCoreset())))  # fmt: skip
    cases.append(("small-text EmbeddingKMeans", call(st.EmbeddingKMeans()),
                  call(qst.EmbeddingKMeans())))  # fmt: skip
    return cases


def skactiveml_cases(out):
    from skactiveml import pool
    from skactiveml.classifier import SklearnClassifier
    from sklearn.base import BaseEstimator, ClassifierMixin

    import quarry.skactiveml as qsk

    class Member(ClassifierMixin, BaseEstimator):
        def __init__(self, member=0):
            self.member = member

        def fit(self, X, y):
            self.classes_ = np.arange(CLASSES)
            return self

        def predict_proba(self, X):
            return out.committee[ids(X), self.member]

        def predict(self, X):
            return out.votes[ids(X), self.member]

    rows = len(out.X)
    y = np.full(rows, np.nan)
    y[rows - labeled_count(rows) :] = np.arange(labeled_count(rows)) % CLASSES
    clf = SklearnClassifier(Member(), classes=np.arange(CLASSES)).fit(out.X, y)
    ensemble = [SklearnClassifier(Member(m), classes=np.arange(CLASSES)).fit(out.X, y)
                for m in range(MEMBERS)]  # fmt: skip

    def call(strategy, **kw):
        return lambda: strategy.query(out.X, y, batch_size=K, **kw)

    cases = []
    for method in ("least_confident", "margin_sampling", "entropy"):
        theirs = pool.UncertaintySampling(method=method)
        ours = qsk.UncertaintySampling(method=method)
        cases.append((f"scikit-activeml UncertaintySampling {method}",
                      call(theirs, clf=clf, fit_clf=False),
                      call(ours, clf=clf, fit_clf=False)))  # fmt: skip
    for method in ("KL_divergence", "vote_entropy", "variation_ratios"):
        cases.append((f"scikit-activeml QueryByCommittee {method}",
                      call(pool.QueryByCommittee(method=method), ensemble=ensemble,
                           fit_ensemble=False),
                      call(qsk.QueryByCommittee(method=method), ensemble=ensemble,
                           fit_ensemble=False)))  # fmt: skip
    cases.append(("scikit-activeml CoreSet", call(pool.CoreSet()), call(qsk.CoreSet())))
    cases.append(("scikit-activeml Badge", call(pool.Badge(random_state=0), clf=clf,
                                                fit_clf=False),
                  call(qsk.Badge(random_state=0), clf=clf, fit_clf=False)))  # fmt: skip
    return cases


def timed(fn, repeat):
    best = None
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        took = time.perf_counter() - start
        best = took if best is None else min(best, took)
        if took > 1.0:
            break
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000, 100_000, 1_000_000])
    parser.add_argument("--only", choices=["modal", "small_text", "skactiveml"], nargs="+")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cap", type=float, default=60.0,
                        help="skip a library call projected past this")  # fmt: skip
    args = parser.parse_args()
    makers = {"modal": modal_cases, "small_text": small_text_cases,
              "skactiveml": skactiveml_cases}  # fmt: skip
    results, last_time = {}, {}
    for rows in sorted(args.rows):
        out = Outputs(rows)
        for key, make in makers.items():
            if args.only and key not in args.only:
                continue
            for label, theirs, ours in make(out):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ours_s = timed(ours, args.repeat)
                    theirs_s = None
                    last = last_time.get(label)
                    if last is None or last[1] * rows / last[0] <= args.cap:
                        theirs_s = timed(theirs, args.repeat)
                        last_time[label] = (rows, theirs_s)
                results.setdefault(label, {})[rows] = (theirs_s, ours_s)
                print(f"{label} {rows}: library {theirs_s}, quarry {ours_s:.4f}", flush=True)
    sizes = sorted(args.rows)
    print("\n| strategy | " + " | ".join(f"{r:,} rows: library / quarry" for r in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for label, by_size in results.items():
        cells = []
        for r in sizes:
            theirs_s, ours_s = by_size.get(r, (None, None))
            if ours_s is None:
                cells.append("")
                continue
            lib = f"not run (projected > {args.cap:g} s)" if theirs_s is None else (
                f"{theirs_s:.4g} s")  # fmt: skip
            ratio = "" if theirs_s is None else f" ({theirs_s / ours_s:.3g}×)"
            cells.append(f"{lib} / {ours_s:.4g} s{ratio}")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
