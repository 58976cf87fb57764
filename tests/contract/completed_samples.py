"""The sample completion events in events/completed/, as the deployed workflow emits them: each
scenario runs through the state machine of template.yaml (moto), whose EmitCompletion state puts the
event the relay decided.

`python -m tests.contract.completed_samples` rewrites them; test_event_contract.py fails when the
workflow would emit something else, so the samples subscribers copy from cannot drift from the code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wan_relay_local.replay import EXPIRED_XML, Media, ReplayDashScope, Reply

from tests.conftest import EVENTS, sample

COMPLETED = EVENTS / "completed"
CONTEXT = {"pipeline": "catalogue-hero", "sku": "A-1029"}
VOLATILE = ("detected_at",)

Scenario = Callable[[ReplayDashScope], dict[str, Any]]


def _answer(name: str) -> Scenario:
    def play(replay: ReplayDashScope) -> dict[str, Any]:
        answer = replay.rehost(sample(name))
        replay.script(answer["output"]["task_id"], answer)
        return {"task_id": answer["output"]["task_id"], "model": name.split("_")[0], "context": CONTEXT}

    return play


def _expired(replay: ReplayDashScope) -> dict[str, Any]:
    answer = sample("wan2.7-i2v_succeeded")
    path = answer["output"]["video_url"].split("aliyuncs.com", 1)[1].split("?", 1)[0]
    answer = replay.rehost(answer, media={path: Media(b"", status=403, error_body=EXPIRED_XML)})
    replay.script(answer["output"]["task_id"], answer)
    return {"task_id": answer["output"]["task_id"], "model": "wan2.7-i2v", "context": CONTEXT}


def _timed_out(replay: ReplayDashScope) -> dict[str, Any]:
    answer = sample("running")
    # a 2 s budget and an answer that takes longer: the second poll finds the budget spent (the first one
    # starts well within it, even on a loaded machine)
    replay.script(answer["output"]["task_id"], Reply(answer, delay=2.2))
    return {"task_id": answer["output"]["task_id"], "model": "wan2.7-i2v", "context": CONTEXT, "timeout_seconds": 2}


SCENARIOS: dict[str, Scenario] = {
    "succeeded_image": _answer("wan2.6-t2i_succeeded"),
    "succeeded_video": _answer("wan2.7-i2v_succeeded"),
    "partial_images": _answer("wan2.5-t2i_partial"),
    "failed": _answer("failed_output_code"),
    "canceled": _answer("canceled"),
    "unknown": _answer("unknown"),
    "media_unavailable": _expired,
    "timed_out": _timed_out,
}


def emit(name: str, workflow: Any) -> dict[str, Any]:
    """The full EventBridge event the workflow emits in scenario `name`, volatile fields blanked."""
    execution = workflow.run(SCENARIOS[name](workflow.replay))
    assert execution["status"] == "SUCCEEDED", execution
    (event,) = workflow.completed_events()
    return stable(event)


def stable(event: dict[str, Any]) -> dict[str, Any]:
    event = json.loads(json.dumps(event))
    for key in ("id", "time", "account", "region", "resources", "version"):
        event.pop(key, None)
    for key in VOLATILE:
        event["detail"]["timing"][key] = "2026-01-09T09:18:46.000Z"
    return event


def write_all() -> None:
    from tests.conftest import API_KEY
    from tests.workflow.conftest import deployed_workflow, recorded_sleeps

    COMPLETED.mkdir(exist_ok=True)
    for name in SCENARIOS:
        with ReplayDashScope(api_key=API_KEY) as replay, recorded_sleeps(), deployed_workflow(replay) as workflow:
            event = emit(name, workflow)
            Path(COMPLETED / f"{name}.json").write_text(json.dumps(event, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    write_all()
