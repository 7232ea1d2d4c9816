"""Scale-out through a real router: problems per minute at several concurrency levels.

Starts two workers that speak SGLang's native protocol with real llama.cpp inference behind them
(``tests/servers/fake_sglang_server.py`` on the embedded SmolLM2; an SGLang server needs a GPU),
then the registry's ``sglang-router`` (``python -m sglang_router.launch_router``, the Rust SGLang
Model Gateway) in front of them on 127.0.0.1, and runs ``specs bench --concurrency K`` through
the router and, for comparison, against one worker directly, for each K. Prints one row per
(target, K): problems per minute, mean latency per problem, and how the router spread the
prompts over the workers.

    python benchmarks/router_scaleout.py                  # GSM8K, 16 problems, K = 1, 2, 4, 8
    python benchmarks/router_scaleout.py --problems 8 --levels 1,4 --out results.json

Needs ``pip install sglang-router`` (it installs from the registry and routes without a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from specs_core import Specs  # noqa: E402
from specs_core.eval.datasets import load_dataset  # noqa: E402
from specs_core.eval.runner import run_bench  # noqa: E402
from specs_core.eval.sweep import bench_spec  # noqa: E402
from specs_core.resolution import resolve_config  # noqa: E402

from servers.launch import ServerProcess, smollm2_path, start_fake_sglang  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_router(workers: list[str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [
        sys.executable, "-m", "sglang_router.launch_router",
        "--host", "127.0.0.1", "--port", str(port),
        "--worker-urls", *workers,
        "--policy", "cache_aware",
        "--prometheus-port", str(free_port()),
        "--log-level", "warn",
    ]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    body = {"text": "Hello", "sampling_params": {"max_new_tokens": 1, "temperature": 0}}
    while time.monotonic() < deadline:  # the router adds workers once their /health answers
        if process.poll() is not None:
            raise SystemExit(f"the router exited: {log.read_text()[-2000:]}")
        try:
            if httpx.post(f"{url}/generate", json=body, timeout=30).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit(f"the router never served a request: {log.read_text()[-2000:]}")


def run(url: str, problems: list[Any], concurrency: int, out: Path, tokens: int) -> dict[str, Any]:
    config = resolve_config(
        {
            # one prompt per request, its text a string: what the router's typed API accepts
            "target": {"backend": "sglang", "url": url, "timeout_s": 600, "single_prompt": True},
            "policy": {"name": "greedy", "max_solution_tokens": tokens},
        },
        None,
        [],
    )
    spec = bench_spec(config, "gsm8k", problems, limit=None, sample_seed=0)
    with Specs(config) as specs:
        start = time.perf_counter()
        summary = run_bench(specs, spec, out, progress=False, warmup=False, concurrency=concurrency)
        wall = time.perf_counter() - start
    return {
        "problems": summary["n"],
        "errors": summary["n_errors"],
        "wall_s": wall,
        "problems_per_min": 60 * summary["n"] / wall,
        "mean_latency_s": summary["latency_s"]["mean"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--levels", default="1,2,4,8")
    parser.add_argument("--tokens", type=int, default=48, help="max_solution_tokens")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()
    if not _router_installed():
        raise SystemExit("pip install sglang-router (the registry's SGLang router)")
    problems = load_dataset("gsm8k")[: args.problems]
    levels = [int(x) for x in args.levels.split(",")]
    work = Path(tempfile.mkdtemp(prefix="specs-router-"))
    model = smollm2_path()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    workers: list[ServerProcess] = [start_fake_sglang(work, model=model) for _ in range(2)]
    router = None
    rows = []
    try:
        router, router_url = start_router([w.url for w in workers], work / "router.log")
        for concurrency in levels:
            for target, url in (("one worker", workers[0].url), ("router, 2 workers", router_url)):
                for w in workers:
                    w.reset()
                figures = run(
                    url, problems, concurrency, work / f"{target}-{concurrency}", args.tokens
                )
                spread = [sum(w.stats()["questions"].values()) for w in workers]
                rows.append({"target": target, "concurrency": concurrency, **figures,
                             "prompts_per_worker": spread})  # fmt: skip
                print(
                    f"{target:>18} K={concurrency}: {figures['problems_per_min']:.1f} "
                    f"problems/min, mean {figures['mean_latency_s']:.2f} s, "
                    f"prompts per worker {spread}",
                    flush=True,
                )
    finally:
        if router is not None:
            router.terminate()
            router.wait(timeout=30)
        for w in workers:
            w.stop()
    print(f"\n{args.problems} GSM8K problems, greedy, {args.tokens} tokens, SmolLM2-135M workers")
    print("| target | K | problems/min | mean latency s | prompts per worker | errors |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['target']} | {r['concurrency']} | {r['problems_per_min']:.1f} | "
            f"{r['mean_latency_s']:.2f} | {r['prompts_per_worker']} | {r['errors']} |"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"problems": args.problems, "rows": rows}, indent=2) + "\n")


def _router_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("sglang_router") is not None


if __name__ == "__main__":
    main()
