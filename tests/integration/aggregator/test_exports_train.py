"""TRL trains on an export: two steps each of DPOTrainer, KTOTrainer, RewardTrainer and SFTTrainer. Opt-in.

`RUN_TRAIN=1 .venv/bin/python -m pytest tests/integration/aggregator/test_exports_train.py` makes a
separate virtualenv under .run/ (once; keyed by the pins below) with TRL and torch's CPU wheel
(`torch==2.13.0` is the CPU build this machine keeps on disk; a bare `torch` would fetch a CUDA one),
exports each kind from a run of votes on the real broker and database with the exporter CLI, and
runs train_tiny.py there: a tiny randomly initialised Llama and a tokenizer built locally, nothing
downloaded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.integration.aggregator.export_flow import REPO_ROOT, Served, export_folder, served

TRAIN_REQUIREMENTS = (
    "torch==2.13.0",
    "trl==1.16.0",
    "transformers==5.24.0",
    "accelerate==1.15.0",
    "datasets==5.2.0",
    "tokenizers==0.23.3",
)
TRAIN_SCRIPT = Path(__file__).with_name("train_tiny.py")
INSTALL_TIMEOUT_S = 1200
TRAIN_TIMEOUT_S = 900

pytestmark = [
    pytest.mark.timeout(INSTALL_TIMEOUT_S + TRAIN_TIMEOUT_S + 120),
    pytest.mark.skipif(
        os.environ.get("RUN_TRAIN") != "1",
        reason="opt-in with RUN_TRAIN=1: installs TRL and torch (CPU) into .run/ and trains two steps per trainer",
    ),
]
__all__ = ["served"]  # the module-scoped fixture, imported


def train_python() -> Path:
    """The interpreter of the training virtualenv, made once per set of pins."""
    digest = hashlib.sha256("\n".join(TRAIN_REQUIREMENTS).encode()).hexdigest()[:10]
    folder = REPO_ROOT / ".run" / f"train-venv-{digest}"
    python = folder / "bin" / "python"
    if not (folder / ".installed").exists():
        venv.create(folder, with_pip=True, clear=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *TRAIN_REQUIREMENTS],
            check=True,
            timeout=INSTALL_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
        (folder / ".installed").write_text("\n".join(TRAIN_REQUIREMENTS) + "\n")
    return python


async def test_trl_trains_two_steps_of_each_trainer_on_an_export(served: Served, tmp_path: Path) -> None:
    app = served.scenario.app_id
    folders = {}
    for kind in ("dpo", "kto", "reward", "sft"):
        await export_folder(served, tmp_path / kind, kind, "--app-id", app, "--test-size", "0")
        folders[kind] = str(tmp_path / kind)
    python = await asyncio.to_thread(train_python)
    process = await asyncio.create_subprocess_exec(
        str(python),
        str(TRAIN_SCRIPT),
        json.dumps(folders),
        str(tmp_path / "runs"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "cache")},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), TRAIN_TIMEOUT_S)
    assert process.returncode == 0, stderr.decode()[-4000:]
    results = json.loads(stdout.decode().strip().splitlines()[-1])
    print(json.dumps(results, indent=2), file=sys.stderr)
    assert set(results) == {"dpo", "kto", "reward", "sft"}
    for kind, result in results.items():
        assert result["steps"] == 2, (kind, result)
        assert len(result["losses"]) == 2, (kind, result)
        assert result["rows_checked_with_trl_utils"] == result["rows"], (kind, result)
    assert results["kto"]["rows"] == 12 and results["dpo"]["rows"] == 5
