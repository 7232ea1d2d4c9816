"""A bounded load test of ``specs serve``: requests per second and latency percentiles.

Starts ``specs serve`` on 127.0.0.1 with a config, then for each concurrency level sends
``--requests`` chat completions (different questions, the same for every level) with at most
that many in flight, through the real ``openai`` async client, and prints one row per level:
requests per second, latency p50 / p90 / p99 and the slowest request, plus errors. Every level
runs against the same warm server (a first request loads the models and is not timed).

    python benchmarks/serve_load.py --config examples/configs/toy.yaml
    python benchmarks/serve_load.py --config examples/configs/smollm2.yaml --requests 16

Writes the figures as JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai

_LISTENING = re.compile(r"specs serve: listening on (http://[\d.]+:\d+)")


def start_server(
    config: Path, max_running: int, extra: list[str]
) -> tuple[subprocess.Popen[bytes], str]:
    specs = Path(sys.executable).parent / "specs"
    process = subprocess.Popen(
        [
            str(specs),
            "serve",
            "-c",
            str(config),
            "--port",
            "0",
            "--max-running",
            str(max_running),
            "--max-waiting",
            "1024",
            "--log-level",
            "warning",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "SPECS_API_KEY": ""},
    )
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode(errors="replace")
            match = _LISTENING.search(line)
            if match and not found:
                found.append(match.group(1))
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(120):
        process.kill()
        raise SystemExit("specs serve did not start")
    url = found[0]
    while httpx.get(f"{url}/health", timeout=5).status_code != 200:
        time.sleep(0.1)
    return process, url


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def level(
    client: openai.AsyncOpenAI, model: str, questions: list[str], concurrency: int
) -> dict[str, Any]:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    errors: list[str] = []

    async def one(question: str) -> None:
        async with gate:
            start = time.perf_counter()
            try:
                await client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": question}]
                )
            except openai.APIError as e:
                errors.append(type(e).__name__)
                return
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(one(q) for q in questions))
    wall = time.perf_counter() - start
    return {
        "concurrency": concurrency,
        "requests": len(questions),
        "errors": len(errors),
        "wall_s": wall,
        "requests_per_s": len(latencies) / wall,
        "p50_s": percentile(latencies, 50),
        "p90_s": percentile(latencies, 90),
        "p99_s": percentile(latencies, 99),
        "max_s": max(latencies),
    }


async def run(url: str, model: str, requests: int, levels: list[int]) -> list[dict[str, Any]]:
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="-", max_retries=0, timeout=3600)
    questions = [f"What is {3 * i + 2} + {i + 5}?" for i in range(requests)]
    await client.chat.completions.create(  # loads the models
        model=model, messages=[{"role": "user", "content": "What is 1 + 1?"}]
    )
    return [await level(client, model, questions, c) for c in levels]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=Path("examples/configs/toy.yaml"))
    parser.add_argument("--model", default=None, help="a policy (default: the config's own)")
    parser.add_argument("--requests", type=int, default=64, help="requests per level")
    parser.add_argument("--levels", default="1,4,16", help="concurrency levels")
    parser.add_argument("--max-running", type=int, default=4, help="the server's search slots")
    parser.add_argument("--set", action="append", default=[], help="config override (repeatable)")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()
    extra = [x for value in args.set for x in ("--set", value)]
    process, url = start_server(args.config, args.max_running, extra)
    try:
        model = args.model or args.config.stem
        levels = [int(x) for x in args.levels.split(",")]
        rows = asyncio.run(run(url, model, args.requests, levels))
    finally:
        process.terminate()
        process.wait(timeout=60)
    print(
        f"specs serve, {args.config} (model {model}), max_running {args.max_running}, "
        f"{args.requests} requests a level"
    )
    print("| concurrency | requests/s | p50 s | p90 s | p99 s | max s | errors |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['concurrency']} | {r['requests_per_s']:.2f} | {r['p50_s']:.3f} | "
            f"{r['p90_s']:.3f} | {r['p99_s']:.3f} | {r['max_s']:.3f} | {r['errors']} |"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "config": str(args.config),
            "model": model,
            "max_running": args.max_running,
            "levels": rows,
        }
        args.out.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
