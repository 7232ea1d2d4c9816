"""Tiny randomly initialised transformers models and an in-memory tokenizer (no download).

Every builder takes milliseconds. The tokenizer is a byte-level BPE trained in memory on a few
math sentences and wrapped in ``PreTrainedTokenizerFast`` with a ChatML chat template; the
models are ``LlamaForCausalLM``, ``Qwen2ForCausalLM`` and ``Qwen2ForTokenClassification`` built
from small configs with a fixed seed.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<extra_0>")

CORPUS = [
    "Step 1: 2 + 3 = 5. ки\nStep 2: So the answer is 5. ки",
    "What is 12 * 4? Twelve times four is 48.\n\nTherefore, the final answer is $\\boxed{48}$.",
    "Let x be the number of apples. Then x - 7 = 10, so x = 17.\n\nThe answer is 17.",
    "Solve the math problem efficiently and clearly. Think step by step.",
    "We compute (3 + 4) / 7 = 1, and 9 - 8 = 1 + 0; the sum is 2, good + bad - fine.",
]


@functools.lru_cache(maxsize=4)
def tiny_tokenizer(char_level: bool = False) -> Any:
    """A byte-level BPE tokenizer with a ChatML template.

    Args:
        char_level: no merges (one token per character), so that any generated text tokenizes
            back to exactly the generated tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    if char_level:  # printable ASCII only: every generated text is valid and round-trips
        corpus = ["".join(chr(c) for c in range(32, 127)) + "\n"]
        trainer = trainers.BpeTrainer(
            vocab_size=1, special_tokens=list(SPECIALS), show_progress=False
        )
    else:
        corpus = CORPUS
        trainer = trainers.BpeTrainer(
            vocab_size=420,
            special_tokens=list(SPECIALS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    core.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHATML,
    )


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread: tiny models gain nothing from more, and on a busy machine every
    multi-threaded op of a tiny model waits for a time slice of the other thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _common(tokenizer: Any, **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": False,
    }
    settings.update(overrides)
    return settings


def _seeded(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def tiny_llama(tokenizer: Any, seed: int = 0, **overrides: Any) -> Any:
    """A 2-layer ``LlamaForCausalLM`` (hidden 32) with random weights, in eval mode."""
    from transformers import LlamaConfig, LlamaForCausalLM

    _seeded(seed)
    return LlamaForCausalLM(LlamaConfig(**_common(tokenizer, **overrides))).eval()


def tiny_qwen2(tokenizer: Any, seed: int = 0, **overrides: Any) -> Any:
    """A 2-layer ``Qwen2ForCausalLM`` (hidden 32) with random weights, in eval mode."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    _seeded(seed)
    return Qwen2ForCausalLM(Qwen2Config(**_common(tokenizer, **overrides))).eval()


def tiny_qwen2_classifier(tokenizer: Any, num_labels: int, seed: int = 0) -> Any:
    """A 2-layer ``Qwen2ForTokenClassification`` with ``num_labels`` outputs per token."""
    from transformers import Qwen2Config, Qwen2ForTokenClassification

    _seeded(seed)
    config = Qwen2Config(**_common(tokenizer), num_labels=num_labels)
    return Qwen2ForTokenClassification(config).eval()
