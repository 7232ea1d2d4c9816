"""What a SPECS step costs on this hardware: a cost table for ``specs replay``.

Builds randomly initialised models with the paper's architectures from their configurations (no
download, no weights: the cost of a forward pass does not depend on the weights' values):
Qwen2.5-1.5B-Instruct (draft), Qwen2.5-7B-Instruct (target) and a 7B PRM with a 2-class token
head (Qwen2.5-Math-PRM-7B's shape), with a word-level tokenizer covering their whole vocabulary.
Then it measures, through the project's own transformers backend (``TransformersModel``,
``ClassificationPRM``), on the chosen device:

- ``draft_generate`` / ``target_generate``: one step, ``n`` candidates of ``L`` tokens after a
  prompt of ``P`` tokens (greedy, no stop string: random weights do not stop by themselves, so
  the step length is fixed; the generated token count is recorded);
- ``target_verify``: the target's prefill of ``n`` drafted steps of ``L`` tokens after the same
  prefix of ``P`` tokens (``logprobs``, the prefix's KV shared);
- ``prm_score``: the PRM scoring ``n`` candidates of one step each (``L`` tokens) after ``P``.

for ``n`` in {4, 8}, ``L`` in {64, 256}, ``P`` in {256, 1024}: the median of ``--repeats`` runs
after one warm-up, written as JSON (``specs-step-costs/1``). ``--tiny`` uses tiny configurations
and a small grid (``n`` {2, 4}, ``L`` {16, 32}, ``P`` {32, 128}); it runs on a CPU in well under
a minute, which is how it is tested.

    python benchmarks/gpu_step_costs.py --device cuda --out costs-h200.json
    python benchmarks/gpu_step_costs.py --tiny --out /tmp/costs.json

``--llamacpp MODEL`` measures the same calls through the llama.cpp backend on an embedded GGUF
(draft and target both that model, no PRM) on this CPU, with real weights: the table that checks
``specs replay`` against a run measured on the same machine. Its prompts ask the model to count,
so that it does not stop before ``L`` tokens (the generated counts are recorded).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

FORMAT = "specs-step-costs/1"

QWEN25_1_5B = {
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "tie_word_embeddings": True,
}
QWEN25_7B = {
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "tie_word_embeddings": False,
}
TINY_DRAFT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 4096,
    "tie_word_embeddings": True,
}
TINY_TARGET = {**TINY_DRAFT, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4}

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<extra_0>")
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def word_tokenizer(vocab_size: int) -> Any:
    """A word-level tokenizer over the whole vocabulary: ``w<i>`` is token ``i``, specials last,
    so any id a random model generates decodes (and a text of k words is k tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = vocab_size - len(SPECIALS)
    vocab = {f"w{i}": i for i in range(words)}
    vocab.update({s: words + k for k, s in enumerate(SPECIALS)})
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="w0"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<extra_0>"],
        chat_template=CHATML,
    )


def build(shape: dict[str, Any], device: str, dtype: Any, head: str = "lm", seed: int = 0) -> Any:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2ForTokenClassification

    torch.manual_seed(seed)
    config = Qwen2Config(
        **shape, max_position_embeddings=32768, rope_theta=1e6, attn_implementation="sdpa"
    )
    config.num_labels = 2
    cls = Qwen2ForCausalLM if head == "lm" else Qwen2ForTokenClassification
    with torch.device(device):
        model = cls(config)
    return model.to(dtype=dtype).eval()


def words(count: int, offset: int) -> str:
    return " ".join(f"w{10 + (offset + i) % 3000}" for i in range(count))


def timed(fn: Callable[[], Any], repeats: int, sync: Callable[[], None]) -> float:
    fn()  # warm-up (allocations, kernels, the prefix cache filled as in a search)
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_llamacpp(args: argparse.Namespace) -> dict[str, Any]:
    """The draft and target calls through the llama.cpp backend on one embedded model."""
    from specs_core.types import Prompt, SamplingParams

    from specs_llamacpp.model import LlamaCppModel
    from specs_llamacpp.options import LlamaCppOptions

    model = LlamaCppModel(LlamaCppOptions(model=args.llamacpp, n_threads=args.threads, n_ctx=8192))
    entries: list[dict[str, Any]] = []
    for n in args.n:
        for length in args.L:
            for prefix in args.P:
                # a counting task: the model keeps going, so steps have their full length
                filler = " ".join(str(i) for i in range(max(0, prefix // 2 - 20)))
                question = f"Here are numbers: {filler}. Now count from 1 to 5000, one per line."
                prompt = Prompt(question)
                params = SamplingParams(n=n, temperature=0.0, max_tokens=length, stop=(), seed=0)
                drafted = [c.text for c in model.generate([prompt], params)[0]]
                calls: dict[str, Callable[[], Any]] = {
                    "draft_generate": lambda p=prompt, s=params: model.generate([p], s),
                    "target_verify": lambda p=prompt, k=n, c=drafted: model.logprobs([p] * k, c),
                }
                for op, fn in calls.items():
                    seconds = timed(fn, args.repeats, lambda: None)
                    for name in (op, "target_generate") if op == "draft_generate" else (op,):
                        row: dict[str, Any] = {"op": name, "n": n, "L": length, "P": prefix}
                        row["seconds"] = seconds
                        if op == "draft_generate":
                            out = model.generate([prompt], params)[0]
                            row["generated_tokens"] = sum(c.completion_tokens for c in out)
                        entries.append(row)
                    print(
                        f"{op:>16} n={n} L={length:>4} P={prefix:>5}: {seconds:.4f} s", flush=True
                    )
    model.close()
    return {
        "format": FORMAT,
        "source": "measured",
        "device": f"CPU, llama.cpp, {args.threads} threads ({platform.machine()})",
        "dtype": "GGUF",
        "models": {"draft": args.llamacpp, "target": args.llamacpp},
        "grid": {"n": args.n, "L": args.L, "P": args.P},
        "entries": entries,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from specs_core.types import Prompt, SamplingParams

    from specs_transformers.model import TransformersModel
    from specs_transformers.prms import ClassificationPRM

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = {"auto": torch.bfloat16 if device.startswith("cuda") else torch.float32,
             "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[
        args.dtype
    ]  # fmt: skip
    draft_shape, target_shape = (TINY_DRAFT, TINY_TARGET) if args.tiny else (QWEN25_1_5B, QWEN25_7B)
    vocab = target_shape["vocab_size"]
    tokenizer = word_tokenizer(vocab)
    draft_shape = {**draft_shape, "vocab_size": vocab}  # one tokenizer for all roles
    draft = TransformersModel.from_objects(
        build(draft_shape, device, dtype), tokenizer, name="draft"
    )
    target = TransformersModel.from_objects(
        build(target_shape, device, dtype, seed=1), tokenizer, name="target"
    )
    prm = ClassificationPRM.from_objects(
        build(target_shape, device, dtype, head="classifier", seed=2),
        tokenizer,
        name="prm",
        step_separator="<extra_0>",
        system_prompt=None,
    )

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    header = len(tokenizer.apply_chat_template([{"role": "user", "content": ""}], tokenize=True,
                                               add_generation_prompt=True))  # fmt: skip
    entries: list[dict[str, Any]] = []
    for n in args.n:
        for length in args.L:
            for prefix in args.P:
                question = words(max(1, prefix - header), prefix)
                prompt = Prompt(question)
                params = SamplingParams(n=n, temperature=0.0, max_tokens=length, stop=(), seed=0)
                steps = [words(length, 7 * k) for k in range(n)]
                calls: dict[str, Callable[[], Any]] = {
                    "draft_generate": lambda p=prompt, s=params: draft.generate([p], s),
                    "target_generate": lambda p=prompt, s=params: target.generate([p], s),
                    "target_verify": lambda p=prompt, k=n, c=steps: target.logprobs([p] * k, c),
                    "prm_score": lambda q=question, c=steps: prm.score(q, [[x] for x in c]),
                }
                for op, fn in calls.items():
                    seconds = timed(fn, args.repeats, sync)
                    row: dict[str, Any] = {"op": op, "n": n, "L": length, "P": prefix}
                    row["seconds"] = seconds
                    if op.endswith("generate"):
                        model = draft if op.startswith("draft") else target
                        out = model.generate([prompt], params)[0]
                        row["generated_tokens"] = sum(c.completion_tokens for c in out)
                    entries.append(row)
                    print(
                        f"{op:>16} n={n} L={length:>4} P={prefix:>5}: {seconds:.4f} s", flush=True
                    )
    return {
        "format": FORMAT,
        "source": "measured",
        "device": torch.cuda.get_device_name(0)
        if device.startswith("cuda")
        else platform.processor() or platform.machine(),
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "models": {
            "draft": "tiny" if args.tiny else "Qwen2.5-1.5B-Instruct shape",
            "target": "tiny" if args.tiny else "Qwen2.5-7B-Instruct shape",
            "prm": "tiny" if args.tiny else "7B, 2-class token head (Qwen2.5-Math-PRM-7B shape)",
        },
        "grid": {"n": args.n, "L": args.L, "P": args.P},
        "entries": entries,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    ints = lambda text: [int(x) for x in text.split(",")]  # noqa: E731
    parser.add_argument("--tiny", action="store_true", help="tiny configurations (CPU tests)")
    parser.add_argument(
        "--llamacpp", default=None, help="measure through llama.cpp on this embedded GGUF model"
    )
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument(
        "--dtype", default="auto", choices=("auto", "bfloat16", "float16", "float32")
    )
    parser.add_argument("--n", type=ints, default=None, help="candidates per step (4,8)")
    parser.add_argument("--L", type=ints, default=None, help="tokens per step (64,256)")
    parser.add_argument("--P", type=ints, default=None, help="prefix tokens (256,1024)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True, help="where the JSON table goes")
    args = parser.parse_args()
    # --tiny measures the small grid a CPU test can afford (the full one takes minutes there)
    defaults = ([2, 4], [16, 32], [32, 128]) if args.tiny else ([4, 8], [64, 256], [256, 1024])
    args.n, args.L, args.P = (
        v or d for v, d in zip((args.n, args.L, args.P), defaults, strict=True)
    )
    if args.tiny:
        import torch

        torch.set_num_threads(1)  # tiny models gain nothing from more threads
    table = measure_llamacpp(args) if args.llamacpp else measure(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table, indent=2) + "\n")
    print(f"cost table: {args.out} ({len(table['entries'])} entries, {table['device']})")


if __name__ == "__main__":
    main()
