"""The Ray Data recipe of docs/scale-out.md (map_batches -> partials -> quarry.merge), run on a
local Ray: the same picks as quarry.select on the concatenated pool. Skipped without Ray."""

import numpy as np
import pytest

import quarry
from conftest import random_probs

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_data_recipe(local_ray, tmp_path, rng):
    pool = random_probs(rng, 3000, 6)
    paths = []
    for i, (a, b) in enumerate([(0, 1), (1, 1200), (1200, 1201), (1201, 3000)]):
        paths.append(str(tmp_path / f"part-{i}.npy"))
        np.save(paths[-1], pool[a:b])

    # The recipe, as in docs/scale-out.md.
    rows = [np.load(p, mmap_mode="r").shape[0] for p in paths]
    offsets = np.cumsum([0, *rows[:-1]])
    pool_rows, k = sum(rows), 100

    def partials(batch):
        return {
            "partial": np.array(
                [
                    quarry.select_partial(
                        str(path), k, row_offset=int(offset), pool_rows=pool_rows,
                        explore=0.1, seed=7,
                    ).to_json()
                    for path, offset in zip(batch["path"], batch["offset"], strict=True)
                ],
                dtype=object,
            )
        }  # fmt: skip

    shards = ray.data.from_items(
        [{"path": p, "offset": int(o)} for p, o in zip(paths, offsets, strict=True)]
    )
    texts = [row["partial"] for row in shards.map_batches(partials, batch_size=1).take_all()]
    picks = quarry.merge(texts, k)

    want = quarry.select(pool, k, explore=0.1, seed=7)
    np.testing.assert_array_equal(picks.indices, want.indices)
    np.testing.assert_array_equal(picks.scores, want.scores)
    np.testing.assert_array_equal(picks.reasons, want.reasons)
