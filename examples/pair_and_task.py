"""From votes to a preference pair and to an annotation request, on a running stack (`make up`).

    make example          (or: .venv/bin/python examples/pair_and_task.py [--stack .run/stack.json] [--within 1.0])

1. Two answers to one prompt; five thumbs-up on one, five thumbs-down on the other: expects a
   preference pair on `preference-pairs` (the liked answer chosen) within `--within` seconds of the
   last vote being accepted.
2. Two answers to another prompt; a 3-2 split: expects an annotation request on
   `annotation-requests`, and no pair.

Interactions go to ingest (`POST /v1/interactions`), votes to feedback (`POST /v1/votes/batch`).
Prints what it read; exits non-zero when something is not as expected.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

# Run as a plain script from anywhere: the repository root holds `shared`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared import topics
from shared.events import Message
from shared.prompt_key import prompt_key

APP_ID = "example-app"
READ_TIMEOUT_S = 10.0


def now() -> str:
    return datetime.now(UTC).isoformat()


def interaction_body(prompt: str, interaction_id: str, content: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "app_id": APP_ID,
        "occurred_at": now(),
        "interaction_id": interaction_id,
        "conversation_id": f"conv-{interaction_id}",
        "user_ref": "example-user",
        "messages": [{"role": "user", "content": prompt}],
        "response": {"content": content, "model": "acme-chat", "model_version": "2026-11-01"},
    }


def thumb_bodies(interaction_id: str, up: int, down: int) -> list[dict[str, Any]]:
    values = [1] * up + [-1] * down
    return [
        {
            "event_id": str(uuid.uuid4()),
            "app_id": APP_ID,
            "occurred_at": now(),
            "interaction_id": interaction_id,
            "user_ref": f"voter-{interaction_id}-{i}",
            "source": "end_user",
            "kind": "thumb",
            "value": value,
        }
        for i, value in enumerate(values)
    ]


class OutputReader:
    """Reads preference-pairs and annotation-requests from the beginning, without a consumer group."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.names = {
            topics.topic(prefix, topics.PREFERENCE_PAIRS): "pairs",
            topics.topic(prefix, topics.ANNOTATION_REQUESTS): "requests",
        }
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10)
        self.records: dict[str, list[tuple[bytes | None, dict[str, Any] | None, float]]] = {"pairs": [], "requests": []}

    async def start(self) -> None:
        await self.consumer.start()
        partitions = []
        for name in self.names:
            for _ in range(100):
                found = self.consumer.partitions_for_topic(name)
                if found:
                    break
                await self.consumer._client.force_metadata_update()
                await asyncio.sleep(0.05)
            partitions += [TopicPartition(name, p) for p in found or ()]
        self.consumer.assign(partitions)
        await self.consumer.seek_to_beginning()

    async def poll(self) -> None:
        for tp, batch in (await self.consumer.getmany(timeout_ms=50)).items():
            for record in batch:
                value = json.loads(record.value) if record.value is not None else None
                self.records[self.names[tp.topic]].append((record.key, value, time.monotonic()))

    def live_pairs(self, key: str) -> dict[bytes, tuple[dict[str, Any], float]]:
        """Latest value per pair_id of a prompt group (compaction applied by hand)."""
        mine = {k for k, v, _ in self.records["pairs"] if v is not None and v["prompt_key"] == key}
        latest: dict[bytes, tuple[dict[str, Any] | None, float]] = {}
        for k, v, seen_at in self.records["pairs"]:
            if k in mine:
                latest[k] = (v, seen_at)
        return {k: (v, t) for k, (v, t) in latest.items() if v is not None}

    def requests(self, key: str) -> list[tuple[dict[str, Any], float]]:
        return [(v, t) for _, v, t in self.records["requests"] if v is not None and v["prompt_key"] == key]


async def post(client: httpx.AsyncClient, url: str, body: Any) -> None:
    response = await client.post(url, json=body)
    if response.status_code != 202:
        raise SystemExit(f"POST {url}: HTTP {response.status_code}: {response.text[:500]}")


async def send_scenario(stack: dict[str, Any], prompt: str, votes: list[tuple[str, int, int]]) -> float:
    """Post two answers and their votes; return when the last vote was accepted (monotonic)."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        for interaction_id, content in ((votes[0][0], "Answer one."), (votes[1][0], "Answer two, different.")):
            await post(client, f"{stack['ingest']}/v1/interactions", interaction_body(prompt, interaction_id, content))
        bodies = [body for iid, up, down in votes for body in thumb_bodies(iid, up, down)]
        await post(client, f"{stack['feedback']}/v1/votes/batch", bodies)
    return time.monotonic()


async def wait_for(reader: OutputReader, check: Any) -> Any:
    deadline = time.monotonic() + READ_TIMEOUT_S
    while time.monotonic() < deadline:
        await reader.poll()
        found = check()
        if found:
            return found
    return None


async def run(stack: dict[str, Any], within_s: float) -> list[str]:
    problems: list[str] = []
    run_id = uuid.uuid4().hex[:8]
    reader = OutputReader(stack["kafka"], stack.get("topic_prefix", ""))
    await reader.start()
    try:
        prompt = f"Which answer is better? (run {run_id}, clear)"
        key = prompt_key(APP_ID, [Message(role="user", content=prompt)])
        good, bad = f"good-{run_id}", f"bad-{run_id}"
        sent_at = await send_scenario(stack, prompt, [(good, 5, 0), (bad, 0, 5)])
        live = await wait_for(reader, lambda: reader.live_pairs(key))
        if not live:
            problems.append(f"no preference pair within {READ_TIMEOUT_S:g} s")
        else:
            ((pair, seen_at),) = live.values()
            latency = max(seen_at - sent_at, 0.0)
            print(
                f"pair {pair['pair_id']}: chosen={pair['chosen']['interaction_id']} "
                f"rejected={pair['rejected']['interaction_id']} confidence={pair['confidence']} "
                f"method={pair['method']} after {latency * 1000:.0f} ms"
            )
            if (pair["chosen"]["interaction_id"], pair["rejected"]["interaction_id"]) != (good, bad):
                problems.append("the pair chose the wrong answer")
            if latency > within_s:
                problems.append(f"the pair took {latency:.2f} s, more than {within_s:g} s")

        prompt = f"Which answer is better? (run {run_id}, split)"
        key = prompt_key(APP_ID, [Message(role="user", content=prompt)])
        await send_scenario(stack, prompt, [(f"x-{run_id}", 3, 2), (f"y-{run_id}", 2, 3)])
        requests = await wait_for(
            reader, lambda: [r for r, _ in reader.requests(key) if r["evidence"].get("b_down") == 3]
        )
        if not requests:
            problems.append(f"no annotation request within {READ_TIMEOUT_S:g} s for the 3-2 split")
        else:
            request = requests[-1]
            print(
                f"annotation request {request['task_id']}: kind={request['kind']} domain={request['domain']} "
                f"priority={request['priority']} reason={request['reason']} evidence={request['evidence']}"
            )
        await reader.poll()
        if reader.live_pairs(key):
            problems.append("the 3-2 split produced a preference pair")
        else:
            print("3-2 split: no preference pair (as expected)")
    finally:
        await reader.consumer.stop()
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", type=Path, default=Path(".run/stack.json"), help="written by make up")
    parser.add_argument("--within", type=float, default=1.0, help="seconds the pair may take after the last vote")
    args = parser.parse_args(argv)
    stack = json.loads(args.stack.read_text())
    problems = asyncio.run(run(stack, args.within))
    for problem in problems:
        print(f"NOT AS EXPECTED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
