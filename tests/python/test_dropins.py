"""quarry.modal and quarry.small_text against modAL, scikit-activeml and small-text themselves.

Tie rule: quarry ranks by descending score and gives equal scores to the lower row first; modAL
and scikit-activeml pick among equal scores in argpartition's arbitrary order. So the picks must
agree on every row scoring above the k-th best score, and at the k-th best score (the rows tied
at the boundary, within the float32 precision quarry scores in) quarry must take the lowest rows.
"""

import numpy as np
import pytest

import quarry

modAL = pytest.importorskip("modAL")
sklearn = pytest.importorskip("sklearn")

from modAL import disagreement, uncertainty  # noqa: E402
from modAL.models import ActiveLearner, Committee  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.naive_bayes import GaussianNB  # noqa: E402

import quarry.modal  # noqa: E402


def assert_same_picks(ours, utility, k, rtol=1e-5):
    """`ours`: quarry's k picks; `utility`: the reference library's score of every row (higher
    first)."""
    ours = np.asarray(ours)
    assert len(ours) == k and len(set(ours.tolist())) == k
    kth = np.sort(utility)[::-1][k - 1]
    tol = rtol * max(abs(kth), 1e-30)
    above = np.flatnonzero(utility > kth + tol)
    at = np.flatnonzero(np.abs(utility - kth) <= tol)
    assert set(above) <= set(ours), "a row scoring above the k-th best was not picked"
    boundary = sorted(set(ours) - set(above))
    assert set(boundary) <= set(at), "a pick scores below the k-th best"
    if len(at) > len(boundary) and np.ptp(utility[at]) == 0:
        assert boundary == sorted(at)[: len(boundary)], "exact ties: quarry takes the lowest rows"


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(
        n_samples=1500, n_features=12, n_informative=8, n_classes=4, random_state=3
    )
    return X, y


def fitted(estimator, X, y, n=60):
    return estimator.fit(X[:n], y[:n])


@pytest.mark.parametrize(
    ("ours", "theirs", "utility"),
    [
        (quarry.modal.uncertainty_sampling, uncertainty.uncertainty_sampling,
         lambda c, X: uncertainty.classifier_uncertainty(c, X)),
        (quarry.modal.margin_sampling, uncertainty.margin_sampling,
         lambda c, X: -uncertainty.classifier_margin(c, X)),
        (quarry.modal.entropy_sampling, uncertainty.entropy_sampling,
         lambda c, X: uncertainty.classifier_entropy(c, X)),
    ],
)  # fmt: skip
def test_single_model_strategies_match_modal(data, ours, theirs, utility):
    X, y = data
    clf = fitted(LogisticRegression(max_iter=500), X, y)
    pool = X[60:]
    for k in (1, 10, 100):
        got_idx, got_values = ours(clf, pool, n_instances=k)
        want_idx, want_values = theirs(clf, pool, n_instances=k)
        assert_same_picks(got_idx, utility(clf, pool), k)
        # modAL's own values for the same rows.
        order = np.argsort(want_idx)
        if set(got_idx) == set(want_idx):
            np.testing.assert_allclose(
                got_values[np.argsort(got_idx)], want_values[order], rtol=1e-12
            )


def test_active_learner_runs_with_quarry_strategy(data):
    X, y = data
    learner = ActiveLearner(
        estimator=LogisticRegression(max_iter=500),
        query_strategy=quarry.modal.entropy_sampling,
        X_training=X[:40],
        y_training=y[:40],
    )
    pool_X, pool_y = X[40:], y[40:]
    for _ in range(3):
        idx, rows = learner.query(pool_X, n_instances=5)
        np.testing.assert_array_equal(rows, pool_X[idx])
        learner.teach(pool_X[idx], pool_y[idx])
        pool_X, pool_y = np.delete(pool_X, idx, axis=0), np.delete(pool_y, idx)
    assert learner.X_training.shape[0] == 55


def test_random_tie_break_picks_among_ties(data):
    X, y = data
    clf = fitted(LogisticRegression(max_iter=500), X, y)
    pool = np.repeat(X[60:70], 20, axis=0)  # every score occurs 20 times
    np.random.seed(0)
    idx, _ = quarry.modal.entropy_sampling(clf, pool, n_instances=5, random_tie_break=True)
    assert len(set(idx)) == 5
    utility = uncertainty.classifier_entropy(clf, pool)
    np.testing.assert_allclose(utility[idx], utility.max(), rtol=1e-6)
    assert sorted(idx) != list(range(5))  # not the lowest rows: shuffled


@pytest.fixture(scope="module")
def committee(data):
    X, y = data
    learners = [
        ActiveLearner(estimator=est, X_training=X[:80], y_training=y[:80])
        for est in (
            LogisticRegression(max_iter=500),
            GaussianNB(),
            RandomForestClassifier(n_estimators=10, random_state=0),
        )
    ]
    return Committee(learner_list=learners)


@pytest.mark.parametrize(
    ("ours", "theirs", "utility"),
    [
        (quarry.modal.vote_entropy_sampling, disagreement.vote_entropy_sampling,
         disagreement.vote_entropy),
        (quarry.modal.consensus_entropy_sampling, disagreement.consensus_entropy_sampling,
         disagreement.consensus_entropy),
        (quarry.modal.max_disagreement_sampling, disagreement.max_disagreement_sampling,
         disagreement.KL_max_disagreement),
    ],
)  # fmt: skip
def test_committee_strategies_match_modal(data, committee, ours, theirs, utility):
    X, _ = data
    pool = X[80:]
    full = utility(committee, pool)
    for k in (1, 25, 200):
        got_idx, got_values = ours(committee, pool, n_instances=k)
        want_idx, want_values = theirs(committee, pool, n_instances=k)
        assert_same_picks(got_idx, full, k)
        # Values are modAL's own for the rows picked.
        np.testing.assert_allclose(got_values, full[got_idx], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(np.sort(got_values), np.sort(want_values), rtol=1e-5)
    # The committee drives a query with quarry's strategy unchanged.
    committee.query_strategy = ours
    idx, rows = committee.query(pool, n_instances=3)
    np.testing.assert_array_equal(rows, pool[idx])


def test_scikit_activeml_measures_rank_alike(data):
    skpool = pytest.importorskip("skactiveml.pool")
    from skactiveml.pool._query_by_committee import average_kl_divergence, variation_ratios
    from skactiveml.pool._query_by_committee import vote_entropy as sk_vote_entropy

    X, y = data
    probas = np.stack(
        [fitted(est, X, y, 100).predict_proba(X[100:]) for est in
         (LogisticRegression(max_iter=500), GaussianNB(),
          RandomForestClassifier(n_estimators=10, random_state=0))]
    )  # fmt: skip
    single = probas[0]
    for measure, method in [
        ("least_confidence", "least_confident"),
        ("margin", "margin_sampling"),
        ("entropy", "entropy"),
    ]:
        reference = skpool.uncertainty_scores(single, method=method)
        np.testing.assert_allclose(quarry.score(single, measure), reference, rtol=1e-5, atol=1e-6)
        assert_same_picks(quarry.select(single, 50, measure=measure).indices, reference, 50)
    committee = np.clip(probas, 1e-7, 1)
    committee /= committee.sum(axis=2, keepdims=True)
    reference = average_kl_divergence(committee.copy())
    np.testing.assert_allclose(quarry.score(committee, "bald"), reference, rtol=1e-4, atol=1e-6)
    assert_same_picks(quarry.select(committee, 50, measure="bald").indices, reference, 50)
    votes = probas.argmax(axis=2)  # [M, N]
    for measure, reference in [
        ("vote_entropy", sk_vote_entropy(votes.T, classes=np.arange(4))),
        ("variation_ratio", variation_ratios(votes.T)),
    ]:
        np.testing.assert_allclose(quarry.score(votes, measure), reference, rtol=1e-6, atol=1e-7)
        assert_same_picks(quarry.select(votes, 50, measure=measure).indices, reference, 50)


def test_small_text_round(data):
    small_text = pytest.importorskip("small_text")
    import quarry.small_text as qst

    X, y = data
    train = small_text.SklearnDataset(X, y, target_labels=np.arange(4))
    factory = small_text.SklearnClassifierFactory(
        small_text.ConfidenceEnhancedLinearSVC(), num_classes=4
    )
    for strategy in (qst.LeastConfidence(), qst.BreakingTies(), qst.PredictionEntropy(),
                     qst.Ratio()):  # fmt: skip
        learner = small_text.PoolBasedActiveLearner(factory, strategy, train)
        initial = small_text.random_initialization_balanced(y, n_samples=40)
        learner.initialize_data(initial, y[initial])
        picked = learner.query(num_samples=15)
        assert len(set(picked)) == 15 and not set(picked) & set(initial)
        # The rows quarry ranks best among the unlabeled ones.
        unlabeled = np.setdiff1d(np.arange(len(y)), initial)
        proba = learner.classifier.predict_proba(train[unlabeled])
        want = unlabeled[quarry.select(proba, 15, measure=strategy.measure).indices]
        np.testing.assert_array_equal(picked, want)
        learner.update(y[picked])
        assert len(learner.indices_labeled) == 55
