"""feedback's CPU per vote under bench.load, for comparing two checkouts of the pipeline run one after the other.

`python -m bench.feedback_cpu [TREE ...] [--rate 1000] [--rounds 1]` runs `python -m bench.load --seconds 60
--rate RATE` in each TREE (a checkout with its .venv; default: this one), alternating trees each round.
From the first vote feedback accepts (t0, its `events_accepted_total` for the votes stream on /metrics),
it reads the feedback process's user + system CPU (/proc/PID/stat) and its accepted votes at t0 + 20 s
and t0 + 50 s, and prints CPU ms per vote over that window (the steady part of the load) and the
annotation-requests it consumed meanwhile. The 2 cores are shared: compare the ratio of two trees
measured alternately, not the absolute figures. `--py-spy PATH` also records feedback with py-spy
(raw, 200 Hz) over the window, into /tmp/feedback-<tree name>-<round>.txt. Each run of bench.load
rewrites its tree's bench/results/load.json and load.md.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import time
import urllib.request
from pathlib import Path

FROM_S, TO_S = 20.0, 50.0
TICKS = os.sysconf("SC_CLK_TCK")
VOTES = re.compile(r'^events_accepted_total\{[^}]*stream="votes"[^}]*\} (\S+)$', re.M)
REQUESTS = re.compile(r"^annotation_requests_total\{[^}]*\} (\S+)$", re.M)


def feedback_of(tree: Path) -> tuple[int, str] | None:
    """The pid and HTTP port of the feedback process started from `tree`, if it runs."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"services.feedback" not in args or Path(os.readlink(f"/proc/{pid}/cwd")) != tree:
                continue
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        ports = [e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"FEEDBACK_HTTP_PORT=")]
        if ports:
            return int(pid), ports[0]
    return None


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def counts(port: str) -> tuple[float, float]:
    """(votes accepted, annotation-requests consumed) from feedback's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(map(float, VOTES.findall(text))), sum(map(float, REQUESTS.findall(text)))


def wait_for_votes(port: str, load: subprocess.Popen) -> float:
    while load.poll() is None:
        try:
            if counts(port)[0] > 0:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError("bench.load ended before feedback accepted a vote")


def measure(tree: Path, rate: int, py_spy: str | None, profile: Path) -> dict[str, float]:
    command = [str(tree / ".venv/bin/python"), "-m", "bench.load", "--seconds", "60", "--rate", str(rate)]
    load = subprocess.Popen(command, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while (found := feedback_of(tree)) is None:
            if load.poll() is not None:
                raise RuntimeError(f"bench.load in {tree} ended with {load.returncode} before feedback started")
            time.sleep(0.5)
        pid, port = found
        t0 = wait_for_votes(port, load)
        time.sleep(max(0.0, t0 + FROM_S - time.monotonic()))
        cpu_from, (votes_from, requests_from) = cpu_s(pid), counts(port)
        spy = None
        if py_spy:
            record = [py_spy, "record", "--rate", "200", "--format", "raw", "-d", str(int(TO_S - FROM_S))]
            spy = subprocess.Popen([*record, "-o", str(profile), "-p", str(pid)], stdout=subprocess.DEVNULL)
        time.sleep(max(0.0, t0 + TO_S - time.monotonic()))
        cpu_to, (votes_to, requests_to) = cpu_s(pid), counts(port)
        if spy is not None:
            spy.wait()
    finally:
        load.wait()
    cpu, votes = cpu_to - cpu_from, votes_to - votes_from
    return {"cpu_s": cpu, "votes": votes, "requests": requests_to - requests_from, "ms_per_vote": 1000 * cpu / votes}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.feedback_cpu", description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="*", type=Path, help="checkouts to compare (default: this one)")
    parser.add_argument("--rate", type=int, default=1000, help="bench.load's offered events/s")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each tree, alternating")
    parser.add_argument("--py-spy", help="path of py-spy: also profile feedback over the window")
    args = parser.parse_args()
    trees = [t.resolve() for t in args.trees] or [Path(__file__).resolve().parent.parent]
    for round_ in range(1, args.rounds + 1):
        for tree in trees:
            profile = Path(f"/tmp/feedback-{tree.name}-{round_}.txt")
            result = measure(tree, args.rate, args.py_spy, profile)
            print(
                f"{tree} round {round_}: {result['ms_per_vote']:.3f} ms CPU per vote "
                f"({result['cpu_s']:.2f} s for {result['votes']:.0f} votes, "
                f"{result['requests']:.0f} annotation-requests, {result['cpu_s'] / (TO_S - FROM_S):.3f} cores)",
                flush=True,
            )


if __name__ == "__main__":
    main()
