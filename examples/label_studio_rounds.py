"""Two rounds of active learning with Label Studio and a labeling budget across the rounds.

score -> pick within the round's budget -> push the ranking -> annotate -> pull the labels ->
exclude them -> pick again with what is left of the budget -> push. The pool is
examples/pool.npy with an ID and a labeling cost per row, as a Parquet file would hold them.

    python examples/label_studio_rounds.py --url http://127.0.0.1:8080 --token TOKEN \\
        [--budget 60] [--simulate-annotators]

Without --simulate-annotators it waits (press Enter) while people label the round in Label
Studio; with it, it annotates through the API, in the order Label Studio serves the tasks, and
checks that this order is quarry's. A real loop retrains its model on the labels and scores the
pool again between the rounds; here the pool's predictions stay as they are.
"""

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa

import quarry
from quarry import label_studio as ls

LABEL_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="label" toName="text"><Choice value="cat"/><Choice value="dog"/></Choices>
</View>"""


def pool_table() -> pa.Table:
    probs = np.load(Path(__file__).with_name("pool.npy"))
    n, c = probs.shape
    rng = np.random.default_rng(0)
    return pa.table({
        "id": [f"img-{i:05d}" for i in range(n)],
        "probs": pa.FixedSizeListArray.from_arrays(pa.array(probs.reshape(-1)), c),
        "cost": rng.integers(1, 6, n).astype(np.float64),  # e.g. seconds to label, estimated
        "text": [f"example {i}" for i in range(n)],
    })  # fmt: skip


def annotate(client: ls.Client, project: int, count: int) -> list[str]:
    served = []
    for _ in range(count):
        task = client.get(f"/api/projects/{project}/next")
        served.append(task["data"]["id"])
        client.post(f"/api/tasks/{task['id']}/annotations", {
            "result": [{"from_name": "label", "to_name": "text", "type": "choices",
                        "value": {"choices": ["cat"]}}],
        })  # fmt: skip
    return served


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True, help="legacy or personal access token")
    parser.add_argument("--budget", type=float, default=60.0, help="total cost of both rounds")
    parser.add_argument("--simulate-annotators", action="store_true")
    args = parser.parse_args()

    table = pool_table()
    client = ls.Client(args.url, args.token)
    project = client.create_project("quarry: two rounds", LABEL_CONFIG)
    tasks = ls.import_pool(client, project, table.column("id").to_pylist(),
                           [{"text": t} for t in table.column("text").to_pylist()])  # fmt: skip
    print(f"project {project}: {len(tasks)} tasks")

    labeled: dict = {}
    spent = 0.0
    for round_, share in ((1, 0.5), (2, 1.0)):
        round_budget = args.budget * share - spent  # half in round 1, the rest in round 2
        picks = quarry.select(table, column="probs", id_column="id", cost_column="cost",
                              budget=round_budget, labeled_ids=list(labeled) or None)  # fmt: skip
        push = ls.push_ranking(client, project, picks, tasks=tasks, model_version=f"round-{round_}")
        spent += picks.cost_spent
        print(f"round {round_}: {len(picks)} picks costing {picks.cost_spent:g} "
              f"(budget left {args.budget - spent:g}); pushed in {push.requests} requests, "
              f"{push.seconds * 1000:.0f} ms; sorted view {push.view}")  # fmt: skip
        if args.simulate_annotators:
            served = annotate(client, project, len(picks))
            assert served == list(picks.ids), (served, list(picks.ids))
        else:
            input(f"label the {len(picks)} tasks of round {round_} in Label Studio, then Enter ")
        labeled = ls.pull_labels(client, project)
        print(f"round {round_}: {len(labeled)} rows labeled so far")
    assert spent <= args.budget + 1e-9
    print(f"spent {spent:g} of {args.budget:g}")


if __name__ == "__main__":
    main()
