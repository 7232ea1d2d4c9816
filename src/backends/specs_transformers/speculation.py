"""N-gram speculative decoding in the transformers generation loop.

Every pass feeds each live row its pending token (the last one it emitted) followed by the tokens
the n-gram drafter proposes for it, right-padded to the longest proposal of the batch, in one
forward pass over the batched KV cache. Rows sample their next token at every fed position
(:func:`~specs_transformers.sampling.choose_tokens`, the same tempered and nucleus-truncated
draw as plain decoding) and keep the proposal's tokens while the draws equal them
(:func:`specs_core.speculative.accept_by_sampling`): the emitted tokens follow the model's own
distribution whatever was proposed. The cache is shared by rows of different lengths, so cells
of rejected or padding tokens are not removed but masked out (attention mask 0); trailing
columns masked in every row are cropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from specs_core.speculative import NgramSession, accept_by_sampling

from specs_transformers._engine import engine, model_output_logits
from specs_transformers.sampling import choose_tokens

if TYPE_CHECKING:
    import torch

__all__ = ["Drafter", "SpeculativeCounts", "speculative_loop"]


@dataclass
class SpeculativeCounts:
    """Proposed and accepted tokens, and verification passes with a proposal, of one row."""

    proposed: int = 0
    accepted: int = 0
    rounds: int = 0


#: The drafter of a row: its call's n-gram session and its sample index in that session.
Drafter = tuple[NgramSession, int]

#: Appends a token (with its log-probability) to a row; ``False`` once the row is finished.
Emit = Callable[[int, int, float], bool]


def speculative_loop(
    model: Any,
    cache: Any,
    mask: torch.Tensor,
    logits: torch.Tensor,
    positions: torch.Tensor,
    *,
    temperature: float,
    top_p: float,
    generator: torch.Generator,
    emit: Emit,
    rooms: Callable[[int], int],
    drafters: Sequence[Drafter],
    pad_id: int,
) -> list[SpeculativeCounts]:
    """Generate every row to its end with n-gram drafting.

    Args:
        model: the causal LM.
        cache: the batched KV cache of the prompts (one row per sample).
        mask: ``[rows, columns]`` attention mask of the cache.
        logits: ``[rows, vocab]`` next-token logits after each prompt.
        positions: ``[rows]`` position of each row's next token.
        temperature: sampling temperature (0: greedy).
        top_p: nucleus mass.
        generator: the random source.
        emit: ``emit(row, token, logprob)`` appends a token; ``False`` when the row finished.
        rooms: ``rooms(row)``: how many more tokens the row may emit.
        drafters: the drafter of each row.
        pad_id: the token fed after a short proposal (masked out).

    Returns:
        The drafting counts of each row.
    """
    torch = engine().torch
    counts = [SpeculativeCounts() for _ in drafters]
    tokens, chosen = choose_tokens(
        logits, temperature=temperature, top_p=top_p, generator=generator
    )
    firsts = zip(tokens.tolist(), chosen.tolist(), strict=True)
    active = [r for r, (token, logprob) in enumerate(firsts) if emit(r, token, logprob)]
    if not active:
        return counts
    select = torch.tensor(active, device=mask.device)
    cache.batch_select_indices(select)
    mask, positions, pending = mask[select], positions[select], tokens[select]
    while active:
        proposals = []
        for r in active:
            session, index = drafters[r]
            drafting = session.drafting(len(active))
            proposals.append(session.propose(index, rooms(r) - 1) if drafting else [])
        width = 1 + max(len(p) for p in proposals)
        ids = torch.full((len(active), width), pad_id, dtype=torch.long, device=mask.device)
        ids[:, 0] = pending
        fed = torch.zeros((len(active), width), dtype=mask.dtype, device=mask.device)
        for k, proposal in enumerate(proposals):
            if proposal:
                ids[k, 1 : 1 + len(proposal)] = torch.tensor(proposal, device=mask.device)
            fed[k, : 1 + len(proposal)] = 1
        out = model(
            input_ids=ids,
            attention_mask=torch.cat([mask, fed], dim=1),
            position_ids=positions.unsqueeze(-1) + torch.arange(width, device=mask.device),
            past_key_values=cache,
            use_cache=True,
        )
        cache = out.past_key_values
        scores = model_output_logits(out).float()
        flat, flat_lp = choose_tokens(
            scores.reshape(-1, scores.shape[-1]),
            temperature=temperature, top_p=top_p, generator=generator,
        )
        drawn = flat.reshape(len(active), width).tolist()
        drawn_lp = flat_lp.reshape(len(active), width).tolist()
        keep: list[int] = []
        for k, (r, proposal) in enumerate(zip(active, proposals, strict=True)):
            got, last, alive = _verify_row(r, proposal, drawn[k], drawn_lp[k], emit)
            fed[k, 1 + got :] = 0  # rejected proposal tokens and padding leave the context
            positions[k] += 1 + got
            if proposal:
                c = counts[r]
                c.proposed += len(proposal)
                c.accepted += got
                c.rounds += 1
                session, index = drafters[r]
                session.record(index, len(proposal), got)
            if alive:
                keep.append(k)
                pending[k] = last
        mask = torch.cat([mask, fed], dim=1)
        if len(keep) < len(active):
            if not keep:
                break
            select = torch.tensor(keep, device=mask.device)
            cache.batch_select_indices(select)
            mask, positions, pending = mask[select], positions[select], pending[select]
            active = [active[k] for k in keep]
        used = int((mask != 0).any(dim=0).nonzero().max()) + 1
        if used < mask.shape[1]:
            cache.crop(used - mask.shape[1])  # a negative count: tokens removed at the end
            mask = mask[:, :used]
    return counts


def _verify_row(
    row: int, proposal: Sequence[int], drawn: Sequence[int], drawn_lp: Sequence[float], emit: Emit
) -> tuple[int, int, bool]:
    """Run the acceptance rule along one row's draws.

    Returns:
        ``(accepted, last emitted token, still alive)``.
    """
    state = {"at": 0, "alive": True}

    def draw(i: int) -> int:
        state["at"] = i
        return int(drawn[i])

    def emit_row(token: int) -> bool:
        state["alive"] = emit(row, token, float(drawn_lp[state["at"]]))
        return bool(state["alive"])

    got = accept_by_sampling(proposal, draw, emit_row)
    return got, int(drawn[state["at"]]), bool(state["alive"])
