"""N-gram speculative decoding in the transformers generation loop.

Every pass feeds each live row its pending token (the last one it emitted) followed by the tokens
the n-gram drafter proposes for it, right-padded to the longest proposal of the batch, in one
forward pass over the batched KV cache. Each row then draws its next token position by position
(:func:`~specs_transformers.sampling.choose_tokens`, the same tempered and nucleus-truncated
draw as plain decoding) and keeps the proposal's tokens while the draws equal them
(:func:`specs_core.backend_kit.ngram.accept_by_sampling`): the emitted tokens follow the model's own
distribution whatever was proposed. Each row has its own generator and draws once per emitted
token, so a seed gives the same samples whatever the drafter proposes (plain decoding, which
shares one generator across the batch, draws other samples from the same distribution). The
cache is shared by rows of different lengths, so cells of rejected or padding tokens are not
removed but masked out (attention mask 0); trailing columns masked in every row are cropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from specs_core.backend_kit.ngram import NgramSession, accept_by_sampling

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
    generators: Sequence[torch.Generator],
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
        generators: the random source of each row.
        emit: ``emit(row, token, logprob)`` appends a token; ``False`` when the row finished.
        rooms: ``rooms(row)``: how many more tokens the row may emit.
        drafters: the drafter of each row.
        pad_id: the token fed after a short proposal (masked out).

    Returns:
        The drafting counts of each row.
    """
    torch = engine().torch
    counts = [SpeculativeCounts() for _ in drafters]

    def draw(r: int, row_logits: Any) -> tuple[int, float]:
        token, logprob = choose_tokens(
            row_logits.unsqueeze(0),
            temperature=temperature,
            top_p=top_p,
            generator=generators[r],
        )
        return int(token[0]), float(logprob[0])

    firsts = [draw(r, logits[r]) for r in range(len(drafters))]
    active = [r for r, (token, logprob) in enumerate(firsts) if emit(r, token, logprob)]
    if not active:
        return counts
    select = torch.tensor(active, device=mask.device)
    cache.batch_select_indices(select)
    mask, positions = mask[select], positions[select]
    pending = torch.tensor([firsts[r][0] for r in active], device=mask.device)
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
        keep: list[int] = []
        for k, (r, proposal) in enumerate(zip(active, proposals, strict=True)):
            rows_of_k = scores[k]

            def draw_at(i: int, r: int = r, rows: Any = rows_of_k) -> tuple[int, float]:
                return draw(r, rows[i])

            got, last, alive = _verify_row(r, proposal, draw_at, emit)
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
    row: int, proposal: Sequence[int], draw_at: Callable[[int], tuple[int, float]], emit: Emit
) -> tuple[int, int, bool]:
    """Run the acceptance rule along one row, drawing at each position only when reached.

    Returns:
        ``(accepted, last emitted token, still alive)``.
    """
    last: list[tuple[int, float]] = []
    alive = [True]

    def draw(i: int) -> int:
        last[:] = [draw_at(i)]
        return last[0][0]

    def emit_row(token: int) -> bool:
        alive[0] = emit(row, token, last[0][1])
        return alive[0]

    got = accept_by_sampling(proposal, draw, emit_row)
    return got, last[0][0], alive[0]
