"""Two training steps of TRL's DPO, KTO, Reward and SFT trainers on export folders, with a tiny model built here.

Run by tests/integration/aggregator/test_exports_train.py in its own virtualenv (torch, TRL): nothing
is downloaded. The tokenizer is a byte-level BPE trained on the exported text with the `tokenizers`
library and wrapped in PreTrainedTokenizerFast with a chat template; the models are randomly
initialised two-layer Llama saved locally. Usage: `python train_tiny.py '{"dpo": DIR, "kto": DIR, ...}' OUT_DIR`.
Prints one JSON object: per kind, the rows, the steps done and the losses logged.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, load_dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from trl import (
    DPOConfig,
    DPOTrainer,
    KTOConfig,
    KTOTrainer,
    RewardConfig,
    RewardTrainer,
    SFTConfig,
    SFTTrainer,
    is_conversational,
    maybe_apply_chat_template,
    maybe_extract_prompt,
    unpair_preference_dataset,
)

SPECIAL = ["<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _messages(row: dict[str, Any]) -> Iterator[str]:
    for column in ("prompt", "chosen", "rejected", "completion", "messages"):
        for message in row.get(column) or []:
            yield message["content"]


def build_tokenizer(datasets: dict[str, Dataset]) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    corpus = [text for dataset in datasets.values() for row in dataset for text in _messages(row)]
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus, trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def tiny_config(tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def _common(out: Path, kind: str) -> dict[str, Any]:
    return {
        "output_dir": str(out / kind),
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "report_to": "none",
        "save_strategy": "no",
        "use_cpu": True,
        "seed": 0,
    }


def save_tiny_model(tokenizer: PreTrainedTokenizerFast, folder: Path) -> str:
    """A random two-layer Llama saved with its tokenizer: the trainers load it (and their reference) from here."""
    torch.manual_seed(0)
    LlamaForCausalLM(tiny_config(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


TRAINERS = {
    "dpo": (DPOTrainer, DPOConfig),
    "kto": (KTOTrainer, KTOConfig),
    "reward": (RewardTrainer, RewardConfig),
    "sft": (SFTTrainer, SFTConfig),
}


def train(kind: str, dataset: Dataset, model: str, tokenizer: PreTrainedTokenizerFast, out: Path) -> dict[str, Any]:
    """Two steps of the kind's trainer (the reward model gets a fresh one-label score head on the tiny Llama)."""
    torch.manual_seed(0)
    trainer_class, config_class = TRAINERS[kind]
    trainer = trainer_class(
        model=model, args=config_class(**_common(out, kind)), train_dataset=dataset, processing_class=tokenizer
    )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {"rows": dataset.num_rows, "steps": trainer.state.global_step, "losses": losses}


def check_formats(datasets: dict[str, Dataset], tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    """TRL's own data utilities on whole rows (provenance included): rows checked per kind."""
    for kind, dataset in datasets.items():
        for row in dataset:
            assert is_conversational(row), kind
            # apply_chat_template raises KeyError unless the TRL keys are exactly one dataset type's.
            templated = maybe_apply_chat_template(row, tokenizer)
            assert all(isinstance(value, str) for key, value in templated.items() if key != "label"), kind
            if kind == "dpo":
                assert maybe_extract_prompt(row) == row, "an explicit prompt is left alone"
            if kind == "reward":
                assert maybe_extract_prompt(row)["prompt"] == row["chosen"][:-1], "the implicit prompt is found"
    if "dpo" in datasets and "kto" in datasets:
        # Our kto rows from pairs are what TRL's unpairing of our dpo rows gives.
        unpaired = unpair_preference_dataset(datasets["dpo"].select_columns(["prompt", "chosen", "rejected"]))
        from_pairs = datasets["kto"].filter(lambda row: row["origin"] == "pair")
        ours = from_pairs.select_columns(["prompt", "completion", "label"])
        assert sorted(map(_key, unpaired)) == sorted(map(_key, ours))
    return {kind: dataset.num_rows for kind, dataset in datasets.items()}


def _key(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True)


def main() -> None:
    folders, out = json.loads(sys.argv[1]), Path(sys.argv[2])
    datasets = {kind: load_dataset(folder, split="train") for kind, folder in folders.items()}
    tokenizer = build_tokenizer(datasets)
    model = save_tiny_model(tokenizer, out / "tiny-llama")
    checked = check_formats(datasets, tokenizer)
    results = {kind: train(kind, dataset, model, tokenizer, out) for kind, dataset in datasets.items()}
    for kind, rows in checked.items():
        results[kind]["rows_checked_with_trl_utils"] = rows
    assert all(math.isfinite(loss) for result in results.values() for loss in result["losses"])
    print(json.dumps(results))


if __name__ == "__main__":
    main()
