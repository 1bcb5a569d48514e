"""The drop-ins' contracts against modAL, small-text and scikit-activeml on the same inputs.

modAL ships no tests, so its behaviours are tested here: return types, n > N, layouts of
predict_proba (binary scikit-learn classifiers return it Fortran-ordered), committees, unfitted
and one-class estimators, unnormalised rows. Each adapter's picks are compared with the library's
own strategy on seeded random inputs without ties.
"""

import numpy as np
import pytest

import quarry

modAL = pytest.importorskip("modAL")
sklearn = pytest.importorskip("sklearn")

from modAL import disagreement, uncertainty  # noqa: E402
from modAL.models import ActiveLearner, Committee  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.naive_bayes import GaussianNB  # noqa: E402

import quarry.modal as qm  # noqa: E402

SINGLE = [
    (qm.uncertainty_sampling, uncertainty.uncertainty_sampling),
    (qm.margin_sampling, uncertainty.margin_sampling),
    (qm.entropy_sampling, uncertainty.entropy_sampling),
]
COMMITTEE = [
    (qm.vote_entropy_sampling, disagreement.vote_entropy_sampling),
    (qm.consensus_entropy_sampling, disagreement.consensus_entropy_sampling),
    (qm.max_disagreement_sampling, disagreement.max_disagreement_sampling),
]


class Fixed:
    """A classifier whose predict_proba returns the given array, as the peers' test mocks do."""

    def __init__(self, proba):
        self.proba = proba

    def predict_proba(self, X):
        return self.proba


def same_set(ours, theirs):
    assert sorted(np.asarray(ours).tolist()) == sorted(np.asarray(theirs).tolist())


@pytest.mark.parametrize("ours, theirs", SINGLE)
@pytest.mark.parametrize("make", [LogisticRegression, GaussianNB])
def test_binary_sklearn_classifiers_fortran_proba(ours, theirs, make):
    X, y = make_classification(n_samples=400, n_features=6, random_state=1)
    clf = make().fit(X[:50], y[:50])
    assert clf.predict_proba(X).flags.f_contiguous  # the layout issue 23 item 7 is about
    for k in (1, 7, 350):
        got, values = ours(clf, X[50:], n_instances=k)
        want, want_values = theirs(clf, X[50:], n_instances=k)
        same_set(got, want)
        assert got.dtype == np.int64 and values.dtype == np.float64 and len(values) == k
        np.testing.assert_allclose(np.sort(values), np.sort(want_values), rtol=1e-12)


@pytest.mark.parametrize("ours, theirs", SINGLE)
def test_unnormalised_rows_and_zero_rows_as_modal(ours, theirs):
    rng = np.random.default_rng(5)
    print("seed 5")
    proba = rng.random((300, 4))  # rows do not sum to 1; quarry.select refuses them
    proba[17] = 0.0
    with pytest.raises(quarry.InvalidInput):
        quarry.select(proba, 3)
    for k in (0, 1, 20):
        got, values = ours(Fixed(proba), proba, n_instances=k)
        want, want_values = theirs(Fixed(proba), proba, n_instances=k)
        same_set(got, want)
        np.testing.assert_allclose(np.sort(values), np.sort(want_values), rtol=1e-12)


@pytest.mark.parametrize("ours, theirs", SINGLE)
def test_n_beyond_pool_raises_modal_assertion(ours, theirs):
    X, y = make_classification(n_samples=60, n_features=5, random_state=2)
    clf = LogisticRegression().fit(X, y)
    for strategy in (ours, theirs):
        with pytest.raises(AssertionError, match="n_instances must be less or equal"):
            strategy(clf, X[:5], n_instances=6)


@pytest.mark.parametrize("ours, theirs", SINGLE)
def test_unfitted_and_one_class_estimators(ours, theirs):
    X, _ = make_classification(n_samples=5, n_features=5, random_state=2)
    unfitted = LogisticRegression()
    one_class = Fixed(np.ones((5, 1)))
    for clf in (unfitted, one_class):
        for k in (0, 3, 5):
            got, values = ours(clf, X, n_instances=k)
            want, want_values = theirs(clf, X, n_instances=k)
            assert len(got) == len(values) == k and set(got.tolist()) <= set(range(5))
            assert len(set(got.tolist())) == k
            np.testing.assert_array_equal(np.sort(values), np.sort(want_values))
        with pytest.raises(AssertionError):  # issue 23 item 8: not rows past the pool
            ours(clf, X, n_instances=6)


def test_one_dimensional_or_short_proba_is_a_clear_error():
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match="2-D"):
        qm.entropy_sampling(Fixed(np.full(4, 0.5)), X)
    with pytest.raises(ValueError, match="3 rows for 4 samples"):
        qm.entropy_sampling(Fixed(np.full((3, 2), 0.5)), X)


@pytest.fixture(scope="module")
def committee():
    X, y = make_classification(n_samples=600, n_features=8, n_informative=5, n_classes=3,
                               random_state=4)  # fmt: skip
    learners = [ActiveLearner(estimator=est, X_training=X[:60], y_training=y[:60])
                for est in (LogisticRegression(max_iter=300), GaussianNB())]  # fmt: skip
    return Committee(learner_list=learners), X[60:]


@pytest.mark.parametrize("ours, theirs", COMMITTEE)
def test_committees_as_modal(committee, ours, theirs):
    committee, pool = committee
    for k in (1, 30):
        got, values = ours(committee, pool, n_instances=k)
        want, want_values = theirs(committee, pool, n_instances=k)
        if ours is not qm.vote_entropy_sampling:  # votes tie by construction
            same_set(got, want)
        np.testing.assert_allclose(np.sort(values), np.sort(want_values), rtol=1e-9)
    with pytest.raises(AssertionError):
        ours(committee, pool[:4], n_instances=5)


def test_consensus_reads_predict_proba_not_vote_proba(committee):
    committee, pool = committee

    class Spy:
        classes_ = committee.classes_
        calls = []

        def predict_proba(self, X):
            self.calls.append("predict_proba")
            return committee.predict_proba(X)

        def vote_proba(self, X):
            raise AssertionError("modAL's consensus entropy reads predict_proba")

    spy = Spy()
    got, _ = qm.consensus_entropy_sampling(spy, pool, n_instances=5)
    want, _ = disagreement.consensus_entropy_sampling(committee, pool, n_instances=5)
    same_set(got, want)
    assert spy.calls == ["predict_proba"]


def test_random_tie_break_stays_in_pool():
    X = np.zeros((6, 2))
    np.random.seed(3)
    got, values = qm.uncertainty_sampling(Fixed(np.full((6, 2), 0.5)), X, 6, random_tie_break=True)
    assert sorted(got.tolist()) == list(range(6)) and np.all(values == 0.5)


# small-text ------------------------------------------------------------------------------------


def small_text_query(strategy, proba, labeled, n, rows=None, **kw):
    rows = len(proba) if rows is None else rows
    unlabeled = np.setdiff1d(np.arange(rows), labeled)
    return strategy.query(Fixed(proba), np.zeros((rows, 3)), unlabeled, labeled,
                          np.zeros(len(labeled), int), n=n, **kw)  # fmt: skip


@pytest.mark.parametrize("name", ["LeastConfidence", "BreakingTies", "PredictionEntropy"])
def test_small_text_uncertainty_same_picks_and_scores(name):
    st = pytest.importorskip("small_text.query_strategies")
    import quarry.small_text as qst

    rng = np.random.default_rng(11)
    print("seed 11")
    proba = rng.dirichlet(np.ones(5), size=2000)
    labeled = rng.choice(2000, 100, replace=False)
    ours, theirs = getattr(qst, name)(), getattr(st, name)()
    assert str(ours) == str(theirs) and isinstance(ours, type(theirs))
    for n in (1, 50):
        got = small_text_query(ours, proba, labeled, n)
        want = small_text_query(theirs, proba, labeled, n)
        same_set(got, want)
        assert ours.scores_.dtype == np.float64 and ours.scores_.shape == (2000,)
        np.testing.assert_allclose(ours.scores_, theirs.scores_, atol=2e-7)
    with pytest.raises(ValueError, match="rows for 2000 samples"):
        small_text_query(ours, proba[:1999], labeled, 5, rows=2000)


def test_small_text_bald_same_picks():
    bayesian = pytest.importorskip("small_text.query_strategies.bayesian")
    import quarry.small_text as qst

    rng = np.random.default_rng(12)
    print("seed 12")
    proba = rng.dirichlet(np.ones(4), size=(1500, 10))  # [N, dropout samples, C]

    class Dropout(Fixed):
        def predict_proba(self, X, dropout_sampling):
            return self.proba

    labeled = rng.choice(1500, 50, replace=False)
    unlabeled = np.setdiff1d(np.arange(1500), labeled)
    for n in (1, 40):
        args = (Dropout(proba), np.zeros((1500, 2)), unlabeled, labeled, np.zeros(50, int))
        got = qst.BALD(10).query(*args, n=n)
        want = bayesian.BALD(10).query(*args, n=n)
        same_set(got, want)
    assert str(qst.BALD(7)) == "BALD(dropout_samples=7)"


@pytest.mark.parametrize("metric, normalize", [("euclidean", True), ("euclidean", False),
                                               ("cosine", False)])  # fmt: skip
def test_small_text_greedy_coreset_same_picks(metric, normalize):
    coresets = pytest.importorskip("small_text.query_strategies.coresets")
    import quarry.small_text as qst

    rng = np.random.default_rng(13)
    print("seed 13")
    emb = rng.normal(size=(800, 16))
    unlabeled, labeled = np.arange(700), np.arange(700, 800)
    for n in (1, 25):
        args = (None, None, unlabeled, labeled, None, n, emb)
        with pytest.warns(UserWarning) if metric != "cosine" else np.errstate():
            theirs = coresets.GreedyCoreset(metric, normalize=normalize)
            ours = qst.GreedyCoreset(metric, normalize=normalize)
        np.testing.assert_array_equal(ours.sample(*args), theirs.sample(*args))  # same order
        assert str(ours) == str(theirs)


def test_small_text_embedding_kmeans_rule():
    strategies = pytest.importorskip("small_text.query_strategies.strategies")
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import normalize

    import quarry.small_text as qst

    rng = np.random.default_rng(14)
    print("seed 14")
    centres = rng.normal(size=(8, 12)) * 5
    emb = centres[rng.integers(0, 8, 600)] + rng.normal(size=(600, 12))
    unlabeled = np.arange(550)
    ours = qst.EmbeddingKMeans()
    assert str(ours) == str(strategies.EmbeddingKMeans()) == "EmbeddingKMeans(normalize=True)"
    picks = ours.sample(None, None, unlabeled, np.arange(550, 600), None, 8, emb)
    assert len(set(picks.tolist())) == 8 and picks.max() < 550
    vectors = normalize(emb)[unlabeled]
    # The engine's clustering is as good as scikit-learn's single k-means++ run (small-text's
    # KMeans(n_clusters=n)) in the median over seeds (one engine start in 3 of these 10 stops in
    # a worse local optimum: scikit-learn's greedy k-means++ tries several centres per step), and
    # each pick is the vector nearest its centre (small-text's rule).
    ours_inertia = [quarry.kmeans(vectors.astype(np.float32), 8, seed=s).inertia for s in range(10)]
    theirs_inertia = [KMeans(8, n_init=1, random_state=s).fit(vectors).inertia_ for s in range(10)]
    assert np.median(ours_inertia) <= 1.05 * np.median(theirs_inertia)
    fitted = quarry.kmeans(vectors.astype(np.float32), 8, seed=0)
    nearest = (np.asarray(fitted.centroids, np.float64) @ vectors.T).argmax(axis=1)
    np.testing.assert_array_equal(np.sort(picks), np.sort(nearest))


# scikit-activeml -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sk_data():
    pytest.importorskip("skactiveml")
    X, y_true = make_classification(n_samples=1200, n_features=6, n_informative=4, n_classes=3,
                                    random_state=6)  # fmt: skip
    y = np.full(len(X), np.nan)
    y[:60] = y_true[:60]
    return X, y


@pytest.mark.parametrize("method", ["least_confident", "margin_sampling", "entropy"])
def test_skactiveml_uncertainty_same_picks(sk_data, method):
    from skactiveml.classifier import SklearnClassifier
    from skactiveml.pool import UncertaintySampling

    import quarry.skactiveml as qsk

    X, y = sk_data
    clf = SklearnClassifier(LogisticRegression(), classes=[0, 1, 2])
    for batch in (1, 40):
        got = qsk.UncertaintySampling(method=method, random_state=0).query(
            X, y, clf, batch_size=batch
        )
        want = UncertaintySampling(method=method, random_state=0).query(X, y, clf, batch_size=batch)
        np.testing.assert_array_equal(got, want)  # the same rows, best first
    cand = np.arange(100, 400)
    got = qsk.UncertaintySampling(method=method).query(X, y, clf, candidates=cand, batch_size=5)
    want = UncertaintySampling(method=method).query(X, y, clf, candidates=cand, batch_size=5)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("method", ["KL_divergence", "vote_entropy", "variation_ratios"])
def test_skactiveml_qbc_same_picks(sk_data, method):
    from skactiveml.classifier import SklearnClassifier
    from skactiveml.pool import QueryByCommittee

    import quarry.skactiveml as qsk

    X, y = sk_data
    ensemble = [SklearnClassifier(est, classes=[0, 1, 2]) for est in
                (LogisticRegression(), GaussianNB(), LogisticRegression(C=0.05))]  # fmt: skip
    batch = 1 if method != "KL_divergence" else 30  # votes tie among thousands of rows
    got = qsk.QueryByCommittee(method=method).query(X, y, ensemble, batch_size=batch)
    want, utilities = QueryByCommittee(method=method).query(
        X, y, ensemble, batch_size=batch, return_utilities=True
    )
    if method == "KL_divergence":
        np.testing.assert_array_equal(got, want)
    else:  # ties: the best utility, lowest row
        best = np.nanmax(utilities[0])
        assert got[0] == np.flatnonzero(np.isclose(utilities[0], best, rtol=1e-6))[0]


def test_skactiveml_coreset_same_picks(sk_data):
    from skactiveml.pool import CoreSet

    import quarry.skactiveml as qsk

    X, y = sk_data
    for batch in (1, 25):
        got = qsk.CoreSet(random_state=0).query(X, y, batch_size=batch)
        want = CoreSet(random_state=0).query(X, y, batch_size=batch)
        np.testing.assert_array_equal(got, want)


def test_skactiveml_badge_first_pick_and_contract(sk_data):
    from skactiveml.classifier import SklearnClassifier
    from skactiveml.pool import Badge

    import quarry.skactiveml as qsk

    X, y = sk_data
    clf = SklearnClassifier(LogisticRegression(), classes=[0, 1, 2])
    got = qsk.Badge(random_state=0).query(X, y, clf, batch_size=20)
    want = Badge(random_state=0).query(X, y, clf, batch_size=20)
    assert isinstance(got, list) and len(set(got)) == 20
    assert got[0] == want[0]  # the largest gradient embedding; later picks are seeded draws
    assert np.all(np.isnan(y[got]))
    again = qsk.Badge(random_state=0).query(X, y, clf, batch_size=20)
    assert got == again


def test_diverse_uncertainty_sampling_is_quarry_diversity():
    X, y = make_classification(n_samples=900, n_features=6, n_classes=3, n_informative=4,
                               random_state=8)  # fmt: skip
    clf = LogisticRegression().fit(X[:80], y[:80])  # binary or not, any layout
    learner = ActiveLearner(estimator=LogisticRegression(), X_training=X[:80], y_training=y[:80],
                            query_strategy=qm.diverse_uncertainty_sampling)  # fmt: skip
    idx, rows = learner.query(X[80:], n_instances=12)
    np.testing.assert_array_equal(rows, X[80:][idx])
    got, values = qm.diverse_uncertainty_sampling(clf, X[80:], n_instances=12, seed=3)
    want = quarry.select(clf.predict_proba(X[80:]), 12, measure="least_confidence",
                         embeddings=X[80:].astype(np.float32), seed=3)  # fmt: skip
    np.testing.assert_array_equal(got, want.indices)
    np.testing.assert_allclose(values, 1 - clf.predict_proba(X[80:][got]).max(axis=1))
    assert len(set(want.clusters.tolist())) == 12  # one pick per k-means cluster
    with pytest.raises(AssertionError):
        qm.diverse_uncertainty_sampling(clf, X[:5], n_instances=6)


def test_small_text_and_skactiveml_take_fortran_binary_proba():
    """Issue 23 item 7 for the other drop-ins: binary scikit-learn classifiers' layout."""
    st = pytest.importorskip("small_text.query_strategies")
    pytest.importorskip("skactiveml")
    from skactiveml.classifier import SklearnClassifier
    from skactiveml.pool import UncertaintySampling

    import quarry.skactiveml as qsk
    import quarry.small_text as qst

    X, y = make_classification(n_samples=500, n_features=5, random_state=9)
    clf = LogisticRegression().fit(X[:40], y[:40])
    proba = clf.predict_proba(X)
    assert proba.flags.f_contiguous and not proba.flags.c_contiguous
    labeled = np.arange(40)
    for name in ("LeastConfidence", "BreakingTies", "PredictionEntropy"):
        ours, theirs = getattr(qst, name)(), getattr(st, name)()
        same_set(small_text_query(ours, proba, labeled, 10),
                 small_text_query(theirs, proba, labeled, 10))  # fmt: skip
    y_partial = np.full(len(X), np.nan)
    y_partial[:40] = y[:40]
    sk_clf = SklearnClassifier(LogisticRegression(), classes=[0, 1])
    np.testing.assert_array_equal(
        qsk.UncertaintySampling().query(X, y_partial, sk_clf, batch_size=10),
        UncertaintySampling().query(X, y_partial, sk_clf, batch_size=10),
    )


def test_small_text_subsampling_wrapper_runs_quarry_base():
    st = pytest.importorskip("small_text.query_strategies")
    import quarry.small_text as qst

    rng = np.random.default_rng(15)
    print("seed 15")
    proba = rng.dirichlet(np.ones(3), size=3000)
    labeled = rng.choice(3000, 30, replace=False)
    picks = []
    for base in (qst.PredictionEntropy(), st.PredictionEntropy()):
        wrapper = st.SubsamplingQueryStrategy(base, subsample_size=500)
        np.random.seed(4)  # small-text draws its subsample with numpy's global generator
        picks.append(small_text_query(wrapper, proba, labeled, 20))
        assert str(wrapper).startswith("SubsamplingQueryStrategy(base_query_strategy="
                                       "PredictionEntropy()")  # fmt: skip
        assert wrapper.scores_.dtype == np.float64 and len(wrapper.scores_) == 500
    same_set(*picks)
