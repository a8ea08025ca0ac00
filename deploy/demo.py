"""`python -m deploy.demo` (what `make demo` runs): the stack of `make up`, full of simulated traffic, until Ctrl-C.

Starts the pipeline as `make up` does (deploy.up's settings, start, summary and stop order), issues two
annotator tokens through feedback's admin route, prints both web UIs' addresses with the tokens, then
sends the traffic simulator's events (bench.simulate's generator and HTTP driver) at a gentle rate: four
model versions of different quality, acme-chat's newest released a little after the start and worse than
the one it replaced (the regression alarm follows within a minute or two), a bot, a contrarian and a
ballot stuffer among honest users. Each simulated minute is followed by a fresh one (another tag: new
prompts, the same versions), with two malformed messages on the raw topics, so the dead-letter panel
has something to show. Ctrl-C or SIGTERM (or `--seconds`) stops the traffic, then the stack.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import structlog
from aiokafka import AIOKafkaProducer

from bench.simulate import Scenario, VersionSpec, drive_http, generate
from deploy.stack import Stack, StackError
from deploy.up import StackSettings, _summary, forget_local_state, stack_from
from shared.kafka_security import kafka_client_kwargs
from shared.logging import configure_logging
from shared.settings import PipelineSettings
from shared.topics import FEEDBACK_RAW, INTERACTIONS_RAW, topic

log = structlog.get_logger(__name__)

APP_ID = "demo-helpdesk"
DEMO_VERSIONS = (
    VersionSpec("acme-chat", "2026-10-15", 0.8),
    # Released 20 s into each simulated minute, and worse: the regression alarm's case.
    VersionSpec("acme-chat", "2026-11-01", 0.35, released_at_s=20.0),
    VersionSpec("acme-mini", "2026-09-30", 0.5),
    VersionSpec("acme-pro", "2026-11-10", 0.9),
)
# Annotators of the demo and their domains (the simulator's prompts route to these; see domain_rules.json).
ANNOTATORS = {"demo-medical": ("medical", "general"), "demo-code": ("code", "legal")}
POISON = ((INTERACTIONS_RAW, b"{this is not json"), (FEEDBACK_RAW, b'{"schema_version": 1, "kind": "thumb"}'))
HTTP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class DemoOptions:
    rate: float
    minute_s: float
    seconds: float | None
    seed: int


def scenario(options: DemoOptions, round_: int, tag: str) -> Scenario:
    """One simulated stretch of `minute_s` seconds at `rate` events/s: fresh prompts and users each round."""
    return Scenario.for_rate(
        options.rate,
        options.minute_s,
        seed=options.seed + round_,
        tag=f"{tag}r{round_}-",
        apps=(APP_ID,),
        versions=DEMO_VERSIONS,
        min_answers=2,
        max_answers=3,
        ab_share=0.8,
        honest_users=max(20, round(options.rate * 4)),
        noise_min=0.05,
        noise_max=0.2,
        bots=1,
        bot_votes=15,
        contrarians=1,
        contrarian_votes=15,
        stuffers=1,
        stuff_repeats=10,
    )


async def issue_tokens(stack: Stack) -> dict[str, str]:
    """An annotator token per ANNOTATORS entry, from feedback's admin route (the stack's admin token)."""
    url = stack.services["feedback"].url
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    tokens = {}
    async with httpx.AsyncClient(base_url=url, timeout=HTTP_TIMEOUT_S, trust_env=False) as client:
        for annotator, domains in ANNOTATORS.items():
            response = await client.post(
                "/v1/admin/annotators", json={"annotator_id": annotator, "domains": list(domains)}, headers=headers
            )
            response.raise_for_status()
            tokens[annotator] = response.json()["token"]
    return tokens


def demo_summary(stack: Stack, tokens: dict[str, str], options: DemoOptions) -> str:
    aggregator, feedback = stack.services["aggregator"].url, stack.services["feedback"].url
    admin = "the admin token above" if stack.is_admin_token_generated else "your ADMIN_TOKEN"
    lines = [
        "The demo:",
        f"  {'analyst UI':<13} {aggregator}/ui/   (sign in with {admin})",
        f"  {'annotator UI':<13} {feedback}/ui/   (sign in with an annotator token)",
        "  annotator tokens:",
        *(f"    {name:<13} {token}   ({', '.join(ANNOTATORS[name])})" for name, token in tokens.items()),
        f"  {'traffic':<13} {options.rate:g} events/s to {APP_ID} from bench.simulate: "
        f"{', '.join(f'{v.model} {v.model_version}' for v in DEMO_VERSIONS)};",
        f"  {'':<13} a bot, a contrarian and a ballot stuffer among honest users; acme-chat 2026-11-01 is worse"
        " than 2026-10-15 (the regression alarm follows)",
        "  The charts fill in within a minute or two. Press Ctrl-C to stop."
        if options.seconds is None
        else f"  Stops by itself after {options.seconds:g} s (or on Ctrl-C).",
        "",
    ]
    return "\n".join(lines)


async def send_poison(producer: AIOKafkaProducer, prefix: str) -> None:
    """Malformed messages on the raw topics, as a misbehaving app sends them: ingest and feedback dead-letter them."""
    for name, value in POISON:
        await producer.send_and_wait(topic(prefix, name), value, key=b"demo-poison")


async def drive_traffic(stack: Stack, options: DemoOptions) -> None:
    """Round after round of simulated traffic, sent in real time, until cancelled."""
    tag = f"demo{int(time.time())}-"
    security = {} if stack.broker is not None else kafka_client_kwargs(PipelineSettings())
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, enable_idempotence=False, **security)
    await producer.start()
    try:
        async with (
            httpx.AsyncClient(base_url=stack.services["ingest"].url, timeout=HTTP_TIMEOUT_S, trust_env=False) as ingest,
            httpx.AsyncClient(
                base_url=stack.services["feedback"].url, timeout=HTTP_TIMEOUT_S, trust_env=False
            ) as feedback,
        ):
            round_ = 0
            while True:
                sim = generate(scenario(options, round_, tag))
                await send_poison(producer, stack.topic_prefix)
                report = await drive_http(sim.rebased(datetime.now(UTC)), ingest, feedback)
                log.info("demo_round_sent", round=round_, events=report.sent, http_errors=report.http_errors)
                round_ += 1
    finally:
        await producer.stop()


async def _run(stack: Stack, options: DemoOptions) -> int:
    """Start, print, drive until a stop is asked (or the traffic fails); the caller stops the stack."""
    await stack.start()
    tokens = await issue_tokens(stack)
    print(_summary(stack, closing=""), demo_summary(stack, tokens, options), sep="", flush=True)
    loop = asyncio.get_running_loop()
    if options.seconds is not None:
        loop.call_later(options.seconds, stack.request_stop)
    traffic = asyncio.create_task(drive_traffic(stack, options), name="demo_traffic")
    supervisor = asyncio.create_task(stack.run_until_stopped(), name="demo_stack")
    try:
        await asyncio.wait({traffic, supervisor}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        traffic.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await traffic
    if traffic.done() and not traffic.cancelled() and traffic.exception() is not None:
        print(f"make demo: the traffic stopped: {traffic.exception()!r}", file=sys.stderr, flush=True)
        return 1
    failed = supervisor.result() if supervisor.done() else None
    if failed is not None:
        print(f"make demo: {failed} exited with code {stack.services[failed].returncode}", file=sys.stderr, flush=True)
        return 1
    return 0


async def _demo(settings: StackSettings, options: DemoOptions, log_format: str) -> int:
    forget_local_state(settings)
    stack = stack_from(settings, log_format=log_format)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stack.request_stop)
    try:
        return await _run(stack, options)
    except (StackError, httpx.HTTPError) as exc:
        if stack.is_stop_requested:
            return 0
        print(f"make demo failed: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        await stack.stop()
        print("The demo stopped: services, broker and database are down.", flush=True)


def parse_args(argv: list[str] | None = None) -> DemoOptions:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.demo",
        description=(
            "The whole pipeline locally (as make up) with simulated traffic, both web UIs and annotator tokens printed."
            " Reads the same environment as make up."
        ),
    )
    parser.add_argument("--rate", type=float, default=20.0, help="events per second offered (default 20)")
    parser.add_argument("--seconds", type=float, default=None, help="stop by itself after this long (default: Ctrl-C)")
    parser.add_argument("--minute-s", type=float, default=60.0, help="length of one simulated round (default 60 s)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.minute_s <= 0 or (args.seconds is not None and args.seconds <= 0):
        parser.error("--rate, --minute-s and --seconds must be positive")
    return DemoOptions(rate=args.rate, minute_s=args.minute_s, seconds=args.seconds, seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    log_format = "console" if sys.stdout.isatty() else "json"
    configure_logging(log_format)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return asyncio.run(_demo(StackSettings(), options, log_format))


if __name__ == "__main__":
    sys.exit(main())
