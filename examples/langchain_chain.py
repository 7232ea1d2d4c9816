"""A LangChain chain that solves a math question with SPECS: prompt | SpecsRunnable | parser.

The prompt template writes the system and human messages, ``SpecsRunnable`` runs the search (the
last human message is the question, the system message is the models' system prompt), and an
output parser normalises the answer. A callback handler prints each reasoning step as the policy
commits it, with the draft/target decision, then the latency and tokens of the search.

Run it on the default configuration (the embedded Qwen2.5-Coder models) or on a smaller one::

    python examples/langchain_chain.py
    python examples/langchain_chain.py --config examples/configs/smollm2.yaml
    python examples/langchain_chain.py --config examples/configs/toy.yaml --question "3 + 8?"
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import SystemMessage
from langchain_core.output_parsers import BaseOutputParser
from langchain_core.prompts import ChatPromptTemplate
from specs_core.errors import SpecsError
from specs_core.text import DEFAULT_SYSTEM_PROMPT

from specs_langchain import RESULT_EVENT, STEP_EVENT, SpecsRunnable

QUESTION = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in "
    "May. How many clips did Natalia sell altogether in April and May?"
)


class AnswerParser(BaseOutputParser[str]):
    """Normalises a final answer: drops ``\\text{}``, dollar signs, thousands commas and a final
    period, so that ``"$1,200."`` becomes ``"1200"``."""

    def parse(self, text: str) -> str:
        answer = re.sub(r"\\text\{([^}]*)\}", r"\1", text).strip()
        answer = answer.replace("$", "").replace("\\", "").rstrip(".").strip()
        return re.sub(r"(?<=\d),(?=\d{3}\b)", "", answer)


class PrintSearch(BaseCallbackHandler):
    """Prints each committed step as it happens, then the cost of the search."""

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        if name == STEP_EVENT:
            reward = "n/a" if data["reward"] is None else f"{data['reward']:.2f}"
            text = " ".join(data["text"].split())
            print(f"step {data['index']} [{data['source']}: {data['decision']}, reward {reward}]")
            print(f"    {text}", flush=True)
        elif name == RESULT_EVENT:
            latency = data["latency_s"]
            phases = ", ".join(
                f"{phase} {seconds:.2f}s"
                for phase, seconds in latency.items()
                if phase != "total" and seconds > 0
            )
            print(f"search: {latency['total']:.2f}s ({phases})")
            for model, counts in data["tokens"].items():
                print(
                    f"  {model}: {counts['prompt']} prompt tokens ({counts['cached']} cached), "
                    f"{counts['generated']} generated, {counts['calls']} calls"
                )
            print(
                f"  drafts accepted at {data['accepted_draft_steps']} steps, rejected at "
                f"{data['rejected_draft_steps']}, switches to draft: {data['switches']}"
            )


def build_chain(specs: SpecsRunnable) -> Any:
    """The chain: a chat prompt template, the SPECS search, and the answer parser."""
    # a message object is taken literally: the braces of \boxed{ANSWER} are not template fields
    prompt = ChatPromptTemplate.from_messages(
        [SystemMessage(DEFAULT_SYSTEM_PROMPT), ("human", "{question}")]
    )
    return prompt | specs | AnswerParser()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="a specs YAML config (default: the embedded default)")
    parser.add_argument("--question", default=QUESTION, help="the question to solve")
    args = parser.parse_args(argv)
    try:
        with SpecsRunnable.from_config(args.config) as specs:
            chain = build_chain(specs)
            print(f"question: {args.question}", flush=True)
            answer = chain.invoke(
                {"question": args.question}, config={"callbacks": [PrintSearch()]}
            )
    except SpecsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"answer: {answer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
