"""quarry.label_studio against a real Label Studio server (from PyPI, in its own virtualenv:
requirements/label-studio.lock; scripts/test.sh makes it), started here on 127.0.0.1 only and
stopped at the end. Two rounds: quarry picks, the ranking is pushed, the annotator's next-task
stream and the sorted Data Manager view serve the picks in quarry's order, the annotations come
back as labeled IDs, and the next round excludes them.

Without the server's virtualenv the tests skip, unless QUARRY_REQUIRE_LABEL_STUDIO=1 (CI), when
they fail."""

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import quarry
from conftest import REPO, random_probs

pa = pytest.importorskip("pyarrow")
from quarry import label_studio as ls  # noqa: E402

pytestmark = pytest.mark.slow

STARTUP_SECONDS = 600  # a fresh server migrates its database first: 2-3 minutes on a 2-core VM
LABEL_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="label" toName="text"><Choice value="yes"/><Choice value="no"/></Choices>
</View>"""


def label_studio_program() -> Path | None:
    path = Path(
        os.environ.get("QUARRY_LABEL_STUDIO", REPO / ".venv-label-studio" / "bin" / "label-studio")
    )
    return path if path.exists() else None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if os.environ.get("QUARRY_LABEL_STUDIO_URL"):  # a server already running (and its token)
        client = ls.Client(os.environ["QUARRY_LABEL_STUDIO_URL"],
                           os.environ["QUARRY_LABEL_STUDIO_TOKEN"])  # fmt: skip
        client.get("/api/current-user/whoami")
        yield client
        return
    program = label_studio_program()
    if program is None:
        message = "Label Studio is not installed (scripts/test.sh makes .venv-label-studio)"
        if os.environ.get("QUARRY_REQUIRE_LABEL_STUDIO") == "1":
            pytest.fail(message)
        pytest.skip(message)
    data = tmp_path_factory.mktemp("label-studio")
    with socket.socket() as s:  # a free port on the loopback interface
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(20)
    env = dict(
        os.environ,
        LABEL_STUDIO_BASE_DATA_DIR=str(data),
        LABEL_STUDIO_USERNAME="quarry@example.com",
        LABEL_STUDIO_PASSWORD=secrets.token_hex(12),
        LABEL_STUDIO_USER_TOKEN=token,
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        LATEST_VERSION_CHECK="false",
        COLLECT_ANALYTICS="false",
        SENTRY_DSN="",
    )
    log = open(data / "server.log", "w")
    process = subprocess.Popen(
        [str(program), "start", "--no-browser", "--host", "127.0.0.1", "--internal-host",
         "127.0.0.1", "--port", str(port)],
        cwd=data, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        while True:
            if process.poll() is not None:
                pytest.fail(f"Label Studio exited with {process.returncode}: see {log.name}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() - started > STARTUP_SECONDS:
                pytest.fail(f"Label Studio did not answer within {STARTUP_SECONDS} s: {log.name}")
            time.sleep(2)
        print(f"Label Studio up in {time.monotonic() - started:.0f} s at {url}")
        client = ls.Client(url, token)
        client.get("/api/current-user/whoami")  # the token works
        yield client
    finally:
        # The server's process group: `label-studio start` and the processes it started.
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def annotate_next(client, project, n):
    """Asks for the annotator's next task n times (Label Studio's labeling stream, as the editor
    does) and annotates each; returns the IDs served, in order."""
    served = []
    for _ in range(n):
        task = client.get(f"/api/projects/{project}/next")
        served.append(task["data"]["id"])
        choice = "yes" if task["id"] % 2 else "no"
        client.post(f"/api/tasks/{task['id']}/annotations", {
            "result": [{"from_name": "label", "to_name": "text", "type": "choices",
                        "value": {"choices": [choice]}}],
            "lead_time": 1.0,
        })  # fmt: skip
    return served


def test_two_rounds_serve_quarrys_picks_in_order(server, rng):
    n, c, k = 300, 4, 12
    p = random_probs(rng, n, c)
    ids = np.array([f"item-{i:04d}" for i in rng.permutation(n)], dtype=object)
    pool = pa.table(
        {"id": ids, "probs": pa.FixedSizeListArray.from_arrays(pa.array(p.reshape(-1)), c)}
    )
    project = server.create_project("quarry two rounds", LABEL_CONFIG)
    before = server.requests
    tasks = ls.import_pool(server, project, ids, [{"text": f"text of {i}"} for i in ids])
    assert server.requests - before == 1  # the import answers with the task IDs
    assert sorted(tasks) == sorted(ids)

    labeled: dict = {}
    for round_ in (1, 2):
        cpu = quarry.Resources("cpu")
        exclude = list(labeled) or None
        picks = quarry.select(pool, k, column="probs", id_column="id", labeled_ids=exclude,
                              resources=cpu)  # fmt: skip
        # The independent reference: the same pool less the labeled rows, as an array.
        keep = ~np.isin(ids, list(labeled))
        ref = quarry.select(p[keep], k, resources=cpu)
        assert list(picks.ids) == list(ids[keep][ref.indices])
        assert not set(picks.ids) & set(labeled)

        push = ls.push_ranking(server, project, picks, tasks=tasks, model_version=f"r{round_}")
        assert push.sampling == ls.UNCERTAINTY_SAMPLING
        assert push.requests == 5  # delete, import predictions, settings, views list, view save
        print(f"round {round_}: push of {k} picks in {push.seconds * 1000:.0f} ms")
        # The Data Manager view, sorted by the prediction score: quarry's order.
        view = [t["data"]["id"] for t in ls.view_tasks(server, project, push.view)]
        assert view == list(picks.ids)
        # The annotator's stream: quarry's picks, in quarry's order.
        half = k // 2
        assert annotate_next(server, project, half) == list(picks.ids[:half])
        view = [t["data"]["id"] for t in ls.view_tasks(server, project, push.view)]
        assert view == list(picks.ids[half:])  # annotated tasks leave the view
        assert annotate_next(server, project, k - half) == list(picks.ids[half:])

        pulled = ls.pull_labels(server, project)
        assert set(pulled) == set(labeled) | set(picks.ids)
        assert all(a[0]["result"][0]["value"]["choices"][0] in ("yes", "no")
                   for a in pulled.values())  # fmt: skip
        labeled = pulled
    assert len(labeled) == 2 * k


def test_the_example_runs_two_rounds_within_its_budget(server):
    """examples/label_studio_rounds.py, as a user runs it, against the same server."""
    r = subprocess.run(
        [sys.executable, REPO / "examples" / "label_studio_rounds.py", "--url", server.url,
         "--token", server._token, "--budget", "40", "--simulate-annotators"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    print(r.stdout)
    assert "spent 40 of 40" in r.stdout
    assert r.stdout.count("pushed in 5 requests") == 2
