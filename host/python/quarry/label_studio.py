"""Label Studio: serve quarry's picks to annotators in quarry's order, and bring the labels back.

Through Label Studio's documented REST API (``/api/...``; tested against Label Studio 1.23.2),
with the standard library's HTTP client, a fixed number of requests per round whatever the
number of tasks:

- :func:`import_pool` creates one task per pool row (one import request, which answers with
  the new task IDs), the row's ID in ``task.data[id_field]``;
- :func:`push_ranking` replaces the project's predictions with one per pick, whose ``score`` is
  the pick's rank scaled into Label Studio's [0, 1] (rank / (k + 1): the first pick lowest),
  sets the project's model version to this round's and its sampling to "Uncertainty sampling"
  (Label Studio then serves the unlabeled task with the lowest prediction score first: quarry's
  order), and keeps a Data Manager view sorted by that score
  (the fallback where sampling is set otherwise: open the view and label from it);
- :func:`pull_labels` exports the annotated tasks (one request) as a dict ID -> annotations,
  whose keys are the next round's ``labeled_ids``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Client", "Push", "import_pool", "push_ranking", "pull_labels", "task_ids"]

UNCERTAINTY_SAMPLING = "Uncertainty sampling"
VIEW_TITLE = "quarry ranking"


class LabelStudioError(RuntimeError):
    """A request Label Studio refused (status and its message) or could not be reached."""


class Client:
    """Label Studio at ``url`` with an API token: a legacy token (``Authorization: Token``) or
    a personal access token (a JWT refresh token, exchanged for access tokens as needed)."""

    def __init__(self, url: str, token: str, *, timeout: float = 300.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._token = token
        self._jwt = token.count(".") == 2
        self._access: str | None = None
        self._access_time = 0.0
        self.requests = 0  # how many HTTP requests this client made (for tests and measuring)

    def _authorization(self) -> str:
        if not self._jwt:
            return f"Token {self._token}"
        if self._access is None or time.monotonic() - self._access_time > 240:
            reply = self._send("POST", "/api/token/refresh", {"refresh": self._token}, auth=False)
            self._access, self._access_time = reply["access"], time.monotonic()
        return f"Bearer {self._access}"

    def _send(self, method: str, path: str, body: Any = None, *, auth: bool = True,
              params: Mapping[str, Any] | None = None) -> Any:  # fmt: skip
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = self._authorization()
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        self.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                text = reply.read()
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:500]
            raise LabelStudioError(f"{method} {path}: HTTP {e.code}: {detail}") from None
        except urllib.error.URLError as e:
            raise LabelStudioError(f"{method} {path}: {e.reason}") from None
        except TimeoutError:
            raise LabelStudioError(
                f"{method} {path}: no answer within {self.timeout:g} s"
            ) from None
        return json.loads(text) if text else None

    def get(self, path: str, **params: Any) -> Any:
        return self._send("GET", path, params=params)

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return self._send("POST", path, body, params=params)

    def patch(self, path: str, body: Any) -> Any:
        return self._send("PATCH", path, body)

    def create_project(self, title: str, label_config: str, **settings: Any) -> int:
        """A new project; returns its ID."""
        reply = self.post("/api/projects", {"title": title, "label_config": label_config,
                                            **settings})  # fmt: skip
        return int(reply["id"])


def _python_id(value: Any) -> Any:
    return int(value) if isinstance(value, (int, np.integer)) else str(value)


def import_pool(
    client: Client,
    project: int,
    ids: Iterable[Any],
    data: Iterable[Mapping[str, Any]] | None = None,
    *,
    id_field: str = "id",
) -> dict[Any, int]:
    """Creates one task per row in one import request: ``data`` (one dict a row, e.g. the text
    to label) with the row's ID under ``id_field``. Returns ID -> Label Studio task ID."""
    ids = [_python_id(v) for v in ids]
    rows = [{} for _ in ids] if data is None else [dict(d) for d in data]
    if len(rows) != len(ids):
        raise ValueError(f"{len(ids)} IDs and {len(rows)} rows of data")
    tasks = [{"data": {**row, id_field: i}} for i, row in zip(ids, rows, strict=True)]
    reply = client.post(f"/api/projects/{project}/import", tasks, return_task_ids="true")
    created = reply.get("task_ids") if isinstance(reply, dict) else None
    if created is not None and len(created) == len(ids):  # a synchronous import, in order
        return dict(zip(ids, map(int, created), strict=True))
    return task_ids(client, project, id_field=id_field)


def task_ids(client: Client, project: int, *, id_field: str = "id") -> dict[Any, int]:
    """ID -> task ID of every task of ``project`` (pages of 5,000 tasks, IDs and data only)."""
    out: dict[Any, int] = {}
    page = 1
    while True:
        try:
            reply = client.get(
                "/api/tasks", project=project, page=page, page_size=5000, fields="task_only",
                include="id,data",
            )  # fmt: skip
        except LabelStudioError as e:
            if "HTTP 404" in str(e):  # past the last page
                break
            raise
        tasks = reply["tasks"] if isinstance(reply, dict) else reply
        for task in tasks:
            if id_field in task["data"]:
                out[task["data"][id_field]] = int(task["id"])
        total = reply.get("total", len(out)) if isinstance(reply, dict) else len(out)
        if not tasks or page * 5000 >= total:
            break
        page += 1
    return out


@dataclass
class Push:
    """What :func:`push_ranking` did: the model version, the view sorted by rank, the task IDs
    in quarry's order, and the HTTP requests it made."""

    model_version: str
    view: int
    tasks: list[int] = field(default_factory=list)
    sampling: str | None = None
    requests: int = 0
    seconds: float = 0.0


def push_ranking(
    client: Client,
    project: int,
    picks: Any,
    *,
    tasks: Mapping[Any, int] | None = None,
    model_version: str | None = None,
    id_field: str = "id",
    follow_predictions: bool = True,
) -> Push:
    """Serves ``picks`` (a :class:`quarry.tables.TableSelection`, or IDs best first) to the
    project's annotators in that order.

    ``tasks``: ID -> task ID (from :func:`import_pool`; looked up when None). The project's
    previous predictions are deleted (a prediction score is averaged over a task's predictions
    in Label Studio's Data Manager, so an older round's would blur the order), then one
    prediction per pick is imported with ``score`` = rank / (k + 1) (Label Studio takes scores
    in [0, 1]). ``follow_predictions`` sets the
    project's sampling to uncertainty sampling, which serves the lowest score first; the
    Data Manager view "quarry ranking" lists the unlabeled predicted tasks by that score either
    way.
    """
    start, before = time.perf_counter(), client.requests
    ids = getattr(picks, "ids", None)
    ids = list(picks) if ids is None else list(ids)
    ids = [_python_id(v) for v in ids]
    if tasks is None:
        tasks = task_ids(client, project, id_field=id_field)
    missing = [i for i in ids if i not in tasks]
    if missing:
        raise LabelStudioError(
            f"{len(missing)} picked ID(s) have no task in project {project}, e.g. {missing[0]!r}"
        )
    version = model_version or f"quarry-{time.strftime('%Y%m%dT%H%M%S')}"
    # Only the tasks that hold predictions (the previous round's picks), not the whole project.
    predicted = {"conjunction": "and", "items": [{"filter": "filter:tasks:total_predictions",
                 "operator": "greater", "type": "Number", "value": 0}]}  # fmt: skip
    client.post("/api/dm/actions", {"filters": predicted,
                "selectedItems": {"all": True, "excluded": []}},
                id="delete_tasks_predictions", project=project)  # fmt: skip
    ordered = [tasks[i] for i in ids]
    # Label Studio takes scores in [0, 1]: rank / (k + 1) keeps the rank's order (and its gaps).
    predictions = [
        {"task": t, "result": [], "score": rank / (len(ordered) + 1), "model_version": version}
        for rank, t in enumerate(ordered, 1)
    ]
    reply = client.post(f"/api/projects/{project}/import/predictions", predictions)
    if reply.get("created") != len(predictions):  # it drops invalid predictions with a log line
        raise LabelStudioError(
            f"Label Studio created {reply.get('created')} of {len(predictions)} predictions"
        )
    settings: dict[str, Any] = {"model_version": version}
    if follow_predictions:
        settings["sampling"] = UNCERTAINTY_SAMPLING
    reply = client.patch(f"/api/projects/{project}", settings)
    view = _sorted_view(client, project)
    return Push(version, view, ordered, reply.get("sampling"), client.requests - before,
                time.perf_counter() - start)  # fmt: skip


def _sorted_view(client: Client, project: int) -> int:
    """The Data Manager view "quarry ranking": tasks with a prediction and no annotation, by
    ascending prediction score (= rank)."""
    data = {
        "title": VIEW_TITLE,
        "ordering": ["tasks:predictions_score"],
        "filters": {
            "conjunction": "and",
            "items": [
                {
                    "filter": "filter:tasks:total_predictions",
                    "operator": "greater",
                    "type": "Number",
                    "value": 0,
                },
                {
                    "filter": "filter:tasks:total_annotations",
                    "operator": "equal",
                    "type": "Number",
                    "value": 0,
                },
            ],  # fmt: skip
        },
    }
    for view in client.get("/api/dm/views", project=project):
        if view.get("data", {}).get("title") == VIEW_TITLE:
            client.patch(f"/api/dm/views/{view['id']}", {"project": project, "data": data})
            return int(view["id"])
    return int(client.post("/api/dm/views", {"project": project, "data": data})["id"])


def view_tasks(client: Client, project: int, view: int) -> list[dict[str, Any]]:
    """The tasks of a Data Manager view, in its order (first 10,000; IDs and data only)."""
    reply = client.get("/api/tasks", project=project, view=view, page_size=10000,
                       fields="task_only", include="id,data")  # fmt: skip
    return reply["tasks"] if isinstance(reply, dict) else reply


def pull_labels(client: Client, project: int, *, id_field: str = "id") -> dict[Any, list]:
    """The annotated tasks' IDs and their annotations (one export request): ID -> list of
    annotations (each with its ``result``). Skipped or cancelled annotations do not count."""
    tasks = client.get(f"/api/projects/{project}/export", exportType="JSON",
                       download_all_tasks="false")  # fmt: skip
    out: dict[Any, list] = {}
    for task in tasks:
        done = [a for a in task.get("annotations", []) if not a.get("was_cancelled")]
        if done and id_field in task["data"]:
            out[task["data"][id_field]] = done
    return out
