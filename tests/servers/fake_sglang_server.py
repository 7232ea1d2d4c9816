"""A protocol test double of an SGLang server, with REAL inference behind it.

SGLang needs a CUDA GPU, so the test suite talks to this stand-in instead: a FastAPI app that
speaks the subset of SGLang's native protocol and of the OpenAI completions protocol the specs
backends use, answered by a real llama.cpp model (the embedded SmolLM2 by default):

- ``GET /get_model_info``, ``/health``, ``/v1/models``;
- ``POST /generate``: ``text`` or ``input_ids`` (one or a batch), ``sampling_params`` (one or a
  list: ``max_new_tokens`` (0 = prefill only), ``temperature``, ``top_p``, ``top_k``, ``stop``,
  ``n``, ``sampling_seed``, ``no_stop_trim``), ``return_logprob``, ``logprob_start_len``,
  ``top_logprobs_num``, ``return_text_in_logprobs``; SGLang's response shape and ``n`` order;
- ``POST /v1/tokenize`` and ``/tokenize`` (unless ``--no-tokenize``);
- ``POST /v1/completions``: ``prompt`` (text, ids, or lists), ``n``, ``max_tokens`` (0 allowed),
  ``temperature``, ``top_p``, ``stop``, ``logprobs``, ``echo``, ``seed``, ``no_stop_trim`` and
  vLLM's ``return_tokens_as_token_ids``; choices carry SGLang's ``matched_stop``;
- ``POST /classify``: a stand-in for a PRM served with ``--is-embedding``: the "reward" of a
  text is P(Yes) / (P(Yes) + P(No)) for the model's next token (real inference, not a trained PRM);
- vLLM's pooling-model endpoints, the same stand-in at every token: ``POST /pooling`` (token ids
  in; per input ``data``: one ``[p_neg, p_pos]`` row per token, as ``token_classify`` answers for
  Qwen2.5-Math-PRM) and ``POST /v1/embeddings`` (one value per token, the logit of P(Yes), as a
  Skywork-style value head); with ``pool_step_tag_id`` set (``/admin/faults``) only the rows at
  that token, as vLLM's STEP pooling does with a ``step_tag_id`` in ``--pooler-config``.

Like SGLang, generation log-probabilities follow the temperature unless the server runs with
``--original-logprob`` (SGLang: ``SGLANG_RETURN_ORIGINAL_LOGPROB=1``).

Fault injection for tests (never applied to ``/admin`` paths): ``POST /admin/faults`` with
``delay_s`` (sleep before answering), ``fail_next`` + ``fail_status`` (answer the next k requests
with that status), ``malformed_next`` + ``malformed_kind`` (``json``: a body that is not JSON;
``schema``: JSON of the wrong shape; ``nan``: a log-probability ``NaN``), ``die_next`` (exit
without answering), ``trickle_next`` (answer the next k requests with a body of spaces, one
every ``trickle_every_s`` seconds, for a minute), ``huge_next`` + ``huge_mb`` (answer with a
JSON body of that size); ``POST /admin/reset``; ``GET /admin/stats`` (requests per path,
failures, the most requests seen in flight at once, and the user messages of the ``/generate``
prompts served, for routing tests).

Run: ``python tests/servers/fake_sglang_server.py --model FILE.gguf [--port 0]``; it prints
``LISTENING <port>`` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from llama_inference import LlamaInference

Json = dict[str, Any]


class Faults:
    """Injected faults and request statistics (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.delay_s = 0.0
            self.fail_next = 0
            self.fail_status = 503
            self.malformed_next = 0
            self.malformed_kind = "json"
            self.die_next = False
            self.trickle_next = 0
            self.trickle_every_s = 0.2
            self.huge_next = 0
            self.huge_mb = 1.0
            # vLLM's STEP pooling with a step_tag_id in --pooler-config returns only the rows at
            # that token; without it, one row per token (see pooling_rows)
            self.pool_step_tag_id: int | None = None
            self.requests: Counter[str] = Counter()
            self.questions: Counter[str] = Counter()  # user messages of the prompts served
            self.failed = 0
            self.malformed = 0
            self.in_flight = 0
            self.max_in_flight = 0

    def stats(self) -> Json:
        with self.lock:
            return {
                "requests": dict(self.requests),
                "total": sum(self.requests.values()),
                "failed": self.failed,
                "malformed": self.malformed,
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "questions": dict(self.questions),
            }


_USER = re.compile(r"user\n(.*?)(?:<\|im_end\|>|\n(?:<\|im_start\|>)?assistant)", re.S)


def _as_list(value: Any, size: int, default: Any) -> list[Any]:
    if isinstance(value, list):
        if len(value) != size:
            raise HTTPException(400, f"expected {size} per-request values, got {len(value)}")
        return value
    return [default if value is None else value] * size


def build_app(
    engine: LlamaInference, served_path: str, tokenize: bool, flavor: str = "sglang"
) -> FastAPI:
    """The FastAPI app serving ``engine``."""
    app = FastAPI()
    faults = Faults()

    @app.middleware("http")
    async def inject(request: Request, call_next: Any) -> Response:
        path = request.url.path
        if path.startswith("/admin"):
            return await call_next(request)
        with faults.lock:
            faults.requests[path] += 1
            faults.in_flight += 1
            faults.max_in_flight = max(faults.max_in_flight, faults.in_flight)
            die, delay = faults.die_next, faults.delay_s
            fail = faults.fail_next > 0
            if fail:
                faults.fail_next -= 1
                faults.failed += 1
            malformed = not fail and faults.malformed_next > 0
            if malformed:
                faults.malformed_next -= 1
                faults.malformed += 1
            trickle = not (fail or malformed) and faults.trickle_next > 0
            if trickle:
                faults.trickle_next -= 1
            huge = not (fail or malformed or trickle) and faults.huge_next > 0
            if huge:
                faults.huge_next -= 1
            every, size = faults.trickle_every_s, int(faults.huge_mb * 2**20)
        try:
            if die:
                os._exit(17)
            if delay:
                await asyncio.sleep(delay)
            if fail:
                return Response("injected failure", status_code=faults.fail_status)
            if trickle:

                async def drip() -> Any:
                    for _ in range(int(60 / every)):
                        yield b" "
                        await asyncio.sleep(every)

                return StreamingResponse(drip(), media_type="application/json")
            if huge:
                return Response(b'{"text": "' + b"x" * size + b'"}', media_type="application/json")
            if malformed:
                if faults.malformed_kind == "schema":
                    return JSONResponse({"unexpected": "shape"})
                if faults.malformed_kind == "nan":  # what a broken model's server can send
                    body = '{"text": "4", "meta_info": {"output_token_logprobs": [[NaN, 19, "4"]]}}'
                    return Response(body, media_type="application/json")
                return Response('{"text": "truncated', media_type="application/json")
            return await call_next(request)
        finally:
            with faults.lock:
                faults.in_flight -= 1

    @app.post("/admin/faults")
    def set_faults(body: Json) -> Json:
        with faults.lock:
            for key in (
                "delay_s",
                "fail_next",
                "fail_status",
                "malformed_next",
                "malformed_kind",
                "die_next",
                "trickle_next",
                "trickle_every_s",
                "huge_next",
                "huge_mb",
                "pool_step_tag_id",
            ):
                if key in body:
                    setattr(faults, key, body[key])
        return {"ok": True}

    @app.post("/admin/reset")
    def reset() -> Json:
        faults.reset()
        return {"ok": True}

    @app.get("/admin/stats")
    def stats() -> Json:
        return faults.stats()

    @app.get("/health")
    def health() -> Response:
        return Response(status_code=200)

    @app.get("/get_model_info")
    def model_info() -> Json:
        return {"model_path": served_path, "tokenizer_path": served_path, "is_generation": True}

    @app.get("/v1/models")
    def models() -> Json:
        card = {"id": served_path, "object": "model", "owned_by": flavor, "root": served_path}
        return {"object": "list", "data": [card]}

    def tokenize_body(body: Json) -> Json:
        special = bool(body.get("add_special_tokens", True))
        prompt = body.get("prompt")
        with engine.lock:
            if isinstance(prompt, str):
                ids: Any = engine.tokenize(prompt, special)
                count: Any = len(ids)
            elif isinstance(prompt, list):
                ids = [engine.tokenize(str(p), special) for p in prompt]
                count = [len(r) for r in ids]
            else:
                raise HTTPException(400, "prompt must be a string or a list of strings")
        return {"tokens": ids, "count": count, "max_model_len": engine.n_ctx}

    if tokenize:
        app.post("/v1/tokenize")(tokenize_body)
        app.post("/tokenize")(tokenize_body)

    def entries(values: list[float | None], ids: list[int], prev: list[int], text: bool) -> list:
        out = []
        for i, (v, t) in enumerate(zip(values, ids, strict=True)):
            out.append([v, t, engine.piece(t, prev + ids[:i]) if text else None])
        return out

    def top_entries(tops: list[list[tuple[float, int]]], text: bool) -> list:
        return [[[v, t, engine.piece(t, []) if text else None] for v, t in row] for row in tops]

    def run_one(
        ids: list[int], sp: Json, want_logprob: bool, start: int, top_n: int, text_in_lp: bool
    ) -> list[Json]:
        n = int(sp.get("n") or 1)
        max_new = int(sp.get("max_new_tokens", 128))
        seed = sp.get("sampling_seed")
        seeds = [
            None if seed is None else (int(seed) if n == 1 else int(seed) * 1000 + j)
            for j in range(n)
        ]
        stop = sp.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        t0 = time.perf_counter()
        input_meta: Json = {}
        if want_logprob and start >= 0:
            values, tops, cached = engine.input_logprobs(ids, min(start, len(ids) - 1), top_n)
            span = ids[min(start, len(ids) - 1) :]
            input_meta = {
                "input_token_logprobs": entries(
                    values, span, ids[: len(ids) - len(span)], text_in_lp
                )
            }
            if top_n:
                input_meta["input_top_logprobs"] = top_entries(tops, text_in_lp)
        if max_new == 0:
            if not input_meta:
                _, cached = engine.next_token_logprobs(ids)
            gens = [None] * n
        else:
            gens, cached = engine.generate(
                ids,
                max_new_tokens=max_new,
                temperature=float(sp.get("temperature", 1.0)),
                top_p=float(sp.get("top_p", 1.0)),
                top_k=int(sp.get("top_k", -1)),
                stop=stop,
                seeds=seeds,
                keep_stop=bool(sp.get("no_stop_trim", False)),
                top_logprobs=top_n,
            )
        outs = []
        for g in gens:
            meta: Json = {
                "id": uuid.uuid4().hex,
                "prompt_tokens": len(ids),
                "cached_tokens": cached,
                "completion_tokens": 0 if g is None else len(g.token_ids),
                "finish_reason": {"type": "length", "length": 0} if g is None else g.finish,
                "e2e_latency": time.perf_counter() - t0,
            }
            if want_logprob:
                meta.update(input_meta or {"input_token_logprobs": []})
                meta["output_token_logprobs"] = (
                    [] if g is None else entries(g.logprobs, g.token_ids, ids, text_in_lp)
                )
                if top_n:
                    tops_out = [] if g is None else top_entries(g.top, text_in_lp)
                    meta["output_top_logprobs"] = tops_out
            outs.append({"text": "" if g is None else g.text, "meta_info": meta})
        return outs

    @app.post("/generate")
    def generate(body: Json) -> Any:
        if body.get("stream"):
            raise HTTPException(400, "this test double does not stream")
        text, input_ids = body.get("text"), body.get("input_ids")
        with engine.lock:
            if text is not None:
                batch = isinstance(text, list)
                prompts = [engine.tokenize(t) for t in (text if batch else [text])]
            elif input_ids is not None:
                batch = bool(input_ids) and isinstance(input_ids[0], list)
                prompts = [list(map(int, p)) for p in (input_ids if batch else [input_ids])]
            else:
                raise HTTPException(400, "either text or input_ids must be given")
            size = len(prompts)
            sps = _as_list(body.get("sampling_params"), size, {})
            lps = _as_list(body.get("return_logprob"), size, False)
            starts = _as_list(body.get("logprob_start_len"), size, -1)
            tops = _as_list(body.get("top_logprobs_num"), size, 0)
            text_lp = bool(body.get("return_text_in_logprobs", False))
            outs: list[Json] = []
            for ids in prompts:  # which questions this replica served (routing tests)
                found = _USER.search(engine.detokenize(ids))
                if found:
                    with faults.lock:
                        faults.questions[found.group(1)] += 1
            for ids, sp, lp, start, top in zip(prompts, sps, lps, starts, tops, strict=True):
                if not ids:
                    raise HTTPException(400, "the input is empty")
                if len(ids) + int(sp.get("max_new_tokens", 128)) > engine.n_ctx:
                    raise HTTPException(400, "the request exceeds the context window")
                outs += run_one(ids, sp, bool(lp), int(start), int(top), text_lp)
        return outs if batch or len(outs) > 1 else outs[0]

    @app.post("/classify")
    def classify(body: Json) -> Any:
        text = body.get("text")
        texts = text if isinstance(text, list) else [text]
        yes = engine.tokenize("Yes", False)[0]
        no = engine.tokenize("No", False)[0]
        outs = []
        with engine.lock:
            for t in texts:
                ids = engine.tokenize(str(t))
                logp, cached = engine.next_token_logprobs(ids)
                top = max(logp[yes], logp[no])
                p_yes, p_no = (math.exp(float(v - top)) for v in (logp[yes], logp[no]))
                outs.append(
                    {
                        "embedding": [p_yes / (p_yes + p_no)],
                        "meta_info": {
                            "id": uuid.uuid4().hex,
                            "prompt_tokens": len(ids),
                            "cached_tokens": cached,
                        },
                    }
                )
        return outs if isinstance(text, list) else outs[0]

    # -- vLLM's pooling-model endpoints (a PRM double: P(correct) = P(Yes) over {Yes, No}) -----

    def p_yes_per_token(ids: list[int]) -> list[float]:
        """P(Yes | the text up to and including each token), from one prefill."""
        yes = engine.tokenize("Yes", False)[0]
        no = engine.tokenize("No", False)[0]
        rows, _ = engine.prefill(ids, 0)
        out = []
        for pos in range(len(ids)):
            logits = rows[pos]
            top = max(logits[yes], logits[no])
            p_yes, p_no = (math.exp(float(v - top)) for v in (logits[yes], logits[no]))
            out.append(p_yes / (p_yes + p_no))
        return out

    def id_lists(value: Any) -> list[list[int]]:
        if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
            return [value]
        if isinstance(value, list) and all(
            isinstance(v, list) and all(isinstance(t, int) for t in v) for v in value
        ):
            return value
        if isinstance(value, str):
            return [engine.tokenize(value)]
        raise HTTPException(400, "input must be token ids, lists of token ids or a string")

    @app.post("/pooling")
    def pooling(body: Json) -> Json:
        # vLLM's PoolingResponse for token_classify: per input, [p_neg, p_pos] rows
        data = []
        prompt_tokens = 0
        with engine.lock:
            for i, ids in enumerate(id_lists(body.get("input"))):
                probs = p_yes_per_token(ids)
                rows = [[1.0 - p, p] for p in probs]
                if faults.pool_step_tag_id is not None:
                    rows = [
                        r for r, t in zip(rows, ids, strict=True) if t == faults.pool_step_tag_id
                    ]
                data.append({"index": i, "object": "pooling", "data": rows})
                prompt_tokens += len(ids)
        usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
        return {
            "id": f"pool-{uuid.uuid4().hex}",
            "object": "list",
            "created": int(time.time()),
            "model": served_path,
            "data": data,
            "usage": usage,
        }

    @app.post("/v1/embeddings")
    def embeddings(body: Json) -> Json:
        # a value head as vLLM serves it through the embeddings API: one value per token (the
        # logit of P(correct)); with a step tag configured, only the tag positions
        data = []
        prompt_tokens = 0
        with engine.lock:
            for i, ids in enumerate(id_lists(body.get("input"))):
                probs = p_yes_per_token(ids)
                values = [math.log(p / (1.0 - p)) for p in probs]
                if faults.pool_step_tag_id is not None:
                    values = [
                        v for v, t in zip(values, ids, strict=True) if t == faults.pool_step_tag_id
                    ]
                data.append({"index": i, "object": "embedding", "embedding": values})
                prompt_tokens += len(ids)
        usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
        return {"object": "list", "model": served_path, "data": data, "usage": usage}

    @app.post("/v1/completions")
    def completions(body: Json) -> Json:
        if flavor == "vllm":
            # vLLM's SamplingParams._verify_args: "max_tokens must be at least 1, got 0."
            max_tokens = body.get("max_tokens")
            if max_tokens is not None and int(max_tokens) < 1:
                message = f"max_tokens must be at least 1, got {max_tokens}."
                error = {"object": "error", "message": message, "type": "BadRequestError"}
                return JSONResponse({**error, "code": 400}, status_code=400)
        return openai_completions(engine, body, served_path, flavor)

    return app


def openai_completions(
    engine: LlamaInference, body: Json, served_path: str, flavor: str = "sglang"
) -> Json:
    """``POST /v1/completions`` in the OpenAI protocol (with SGLang's and vLLM's extensions).

    As vLLM (``flavor="vllm"``; vllm/entrypoints/openai/protocol.py, ``CompletionRequest`` and
    ``CompletionResponseChoice``): ``include_stop_str_in_output`` keeps the matched stop string
    in the text, each choice reports ``stop_reason`` (the matched stop string, or ``None`` at an
    end-of-sequence token or the length limit), and ``prompt_logprobs: k`` returns, per choice,
    one entry per prompt token: ``None`` for the first, then ``{token_id: {"logprob", "rank",
    "decoded_token"}}`` holding the prompt token (and the k most likely ones).
    """
    raw = body.get("prompt", "")
    n = int(body.get("n") or 1)
    max_tokens = int(body.get("max_tokens", 16) if body.get("max_tokens") is not None else 16)
    echo = bool(body.get("echo", False))
    logprobs = body.get("logprobs")
    as_ids = bool(body.get("return_tokens_as_token_ids", False))
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else list(stop)
    seed = body.get("seed")
    prompt_logprobs = body.get("prompt_logprobs") if flavor == "vllm" else None
    keep_stop = bool(body.get("no_stop_trim", False))
    if flavor == "vllm":
        keep_stop = bool(body.get("include_stop_str_in_output", False))
    choices: list[Json] = []
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0}
    with engine.lock:
        if isinstance(raw, str):
            prompts: list[Any] = [raw]
        elif raw and isinstance(raw[0], int):
            prompts = [raw]
        else:
            prompts = list(raw)
        for p_index, prompt in enumerate(prompts):
            ids = engine.tokenize(prompt) if isinstance(prompt, str) else list(map(int, prompt))
            prompt_text = prompt if isinstance(prompt, str) else engine.detokenize(ids)
            echo_lp: list[float | None] = []
            if echo and logprobs is not None:
                echo_lp, _, _ = engine.input_logprobs(ids, 0)
            prompt_entries: list[Any] | None = None
            if prompt_logprobs is not None:
                values, tops, _ = engine.input_logprobs(ids, 0, int(prompt_logprobs))
                prompt_entries = [None]
                for i in range(1, len(ids)):
                    entry = {
                        str(t): {"logprob": lp, "rank": r + 1, "decoded_token": engine.piece(t, [])}
                        for r, (lp, t) in enumerate(tops[i])
                    }
                    entry[str(ids[i])] = {
                        "logprob": values[i],
                        "rank": 1 + sum(1 for lp, _ in tops[i] if lp > (values[i] or 0.0)),
                        "decoded_token": engine.piece(ids[i], ids[:i]),
                    }
                    prompt_entries.append(entry)
            if max_tokens > 0:
                seeds = [None if seed is None else int(seed) * 1000 + j for j in range(n)]
                gens, cached = engine.generate(
                    ids,
                    max_new_tokens=max_tokens,
                    temperature=float(body.get("temperature", 1.0)),
                    top_p=float(body.get("top_p", 1.0)),
                    stop=stop,
                    seeds=seeds,
                    keep_stop=keep_stop,
                )
            else:
                _, cached = engine.next_token_logprobs(ids)
                gens = []
            usage["prompt_tokens"] += len(ids)
            usage["cached_tokens"] += cached
            for j in range(n):
                g = gens[j] if gens else None
                gen_ids = [] if g is None else [t for t in g.token_ids if not engine.is_eog(t)]
                gen_lp = [] if g is None else g.logprobs[: len(gen_ids)]
                text = "" if g is None else g.text
                all_ids = (ids if echo else []) + gen_ids
                all_lp = (echo_lp if echo else []) + gen_lp
                pieces = [engine.piece(t, all_ids[:i]) for i, t in enumerate(all_ids)]
                offsets, at = [], 0
                for piece in pieces:
                    offsets.append(at)
                    at += len(piece)
                lp_obj = None
                if logprobs is not None:
                    lp_obj = {
                        "tokens": [f"token_id:{t}" for t in all_ids] if as_ids else pieces,
                        "token_logprobs": all_lp,
                        "text_offset": offsets,
                        "top_logprobs": [None] * len(all_ids),
                    }
                finish = "length" if g is None or g.finish.get("type") == "length" else "stop"
                matched = None if g is None else g.finish.get("matched")
                choice: Json = {
                    "index": p_index * n + j,
                    "text": (prompt_text if echo else "") + text,
                    "logprobs": lp_obj,
                    "finish_reason": finish,
                }
                if flavor == "vllm":
                    choice["stop_reason"] = matched if isinstance(matched, str) else None
                    choice["prompt_logprobs"] = prompt_entries
                else:
                    choice["matched_stop"] = matched
                choices.append(choice)
                usage["completion_tokens"] += len(gen_ids)
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": served_path,
        "choices": choices,
        "usage": {
            "prompt_tokens": usage["prompt_tokens"],
            "completion_tokens": usage["completion_tokens"],
            "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"],
            "prompt_tokens_details": {"cached_tokens": usage["cached_tokens"]},
        },
    }


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, load the model, listen, and print ``LISTENING <port>``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a GGUF file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--served-model-path", default=None, help="model_path to report")
    parser.add_argument(
        "--original-logprob",
        action="store_true",
        help="report untempered generation log-probabilities",
    )
    parser.add_argument("--no-tokenize", action="store_true", help="serve no tokenize endpoint")
    parser.add_argument(
        "--flavor",
        choices=("sglang", "vllm"),
        default="sglang",
        help="whose OpenAI completions dialect to speak (and report as owned_by)",
    )
    args = parser.parse_args(argv)
    engine = LlamaInference(args.model, n_ctx=args.n_ctx, original_logprobs=args.original_logprob)
    app = build_app(engine, args.served_model_path or args.model, not args.no_tokenize, args.flavor)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(64)
    print(f"LISTENING {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
