"""Time of quarry.label_studio.push_ranking (and of the pool import and label pull) against a
running Label Studio: one project of --tasks tasks, pushes of --picks picks.

    python bench/bench_label_studio.py --url http://127.0.0.1:8080 --token TOKEN \\
        [--tasks 10000] [--picks 100 1000] [--repeat 3]
"""

import argparse
import time

import numpy as np

from quarry import label_studio as ls

LABEL_CONFIG = """<View><Text name="text" value="$text"/>
<Choices name="label" toName="text"><Choice value="a"/><Choice value="b"/></Choices></View>"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--picks", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    client = ls.Client(args.url, args.token)
    project = client.create_project("quarry push benchmark", LABEL_CONFIG)
    ids = [f"row-{i:07d}" for i in range(args.tasks)]
    start, before = time.perf_counter(), client.requests
    tasks = ls.import_pool(client, project, ids, [{"text": i} for i in ids])
    print(f"import of {args.tasks} tasks: {time.perf_counter() - start:.2f} s "
          f"({client.requests - before} requests)")  # fmt: skip
    rng = np.random.default_rng(0)
    for k in args.picks:
        times = []
        for r in range(args.repeat):
            picks = list(rng.choice(ids, k, replace=False))
            push = ls.push_ranking(client, project, picks, tasks=tasks, model_version=f"{k}-{r}")
            view = ls.view_tasks(client, project, push.view)
            assert [t["data"]["id"] for t in view] == picks
            times.append(push.seconds)
        print(f"push of {k} picks ({push.requests} requests): best {min(times):.2f} s, "
              f"median {sorted(times)[len(times) // 2]:.2f} s of {args.repeat}")  # fmt: skip
    start = time.perf_counter()
    labels = ls.pull_labels(client, project)
    print(f"pull of labels ({len(labels)} annotated): {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
