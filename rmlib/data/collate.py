"""Features → tensors: padded pair batches, padding-free packed batches, pointwise batches.

Every batch records how many positions it computes and how many of them are real tokens, so the
padding fraction of a run is measured rather than guessed. Rows are ordered chosen-first:
``rewards[:num_pairs]`` are the chosen rewards and ``rewards[num_pairs:]`` the rejected ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from functools import partial

import numpy as np
import torch

from rmlib.data.tokenize import Encoded, ListFeatures, PairFeatures, RatedFeatures


@dataclass
class Batch:
    """Tensors the model reads, plus the labels the loss reads.

    ``end_index`` indexes the flattened (rows × length) token grid: the reward of sequence k is
    read from the hidden state at ``end_index[k]``. One field serves padded rows (one sequence per
    row) and packed rows (many sequences per row, told apart by ``position_ids`` restarting at 0).
    """

    input_ids: torch.Tensor
    end_index: torch.Tensor
    attention_mask: torch.Tensor | None = None
    position_ids: torch.Tensor | None = None
    token_type_ids: torch.Tensor | None = None
    num_pairs: int = 0  # pairwise batches: sequences are [chosen..., rejected...]
    # what the loss consumes, by the names its class declares (``margin``, ``target_prob``,
    # ``targets`` (B, A) with NaN = missing, ...): filled by :func:`stack_labels` only
    labels: dict[str, torch.Tensor] = field(default_factory=dict)
    n_tokens: int = 0
    n_positions: int = 0
    # shared-prompt rows: (first row, end row, length) of each model call; rows are ordered
    # longest first and a call runs its rows trimmed to the length of its first (longest) row
    row_calls: list[tuple[int, int, int]] | None = None

    @property
    def num_items(self) -> int:
        """Pairs for pairwise batches, rows for pointwise ones (the loss's count unit)."""
        return self.num_pairs if self.num_pairs else int(self.end_index.numel())

    @property
    def padding_fraction(self) -> float:
        return 1.0 - self.n_tokens / self.n_positions if self.n_positions else 0.0

    def to(self, device) -> Batch:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                setattr(self, f.name, v.to(device))
        self.labels = {k: v.to(device) for k, v in self.labels.items()}
        return self


def stack_labels(feats: Sequence[PairFeatures | RatedFeatures]) -> dict[str, torch.Tensor]:
    """The one place features' labels become batch tensors (float32, one row per item).

    Every feature of a dataset carries the same label names (those its loss declared); a label
    holding a list per item (``targets``, a list's ``scores``) becomes a (B, A) matrix, NaN-padded on
    the right when the lists differ in length (lists of k responses, k varying).
    """
    if not feats:
        return {}
    out = {}
    for name in feats[0].labels:
        values = [f.labels[name] for f in feats]
        if isinstance(values[0], (list, tuple)):
            width = max(len(v) for v in values)
            values = [list(v) + [math.nan] * (width - len(v)) for v in values]
        out[name] = torch.tensor(values, dtype=torch.float32)
    return out


def _pad(seqs: Sequence[Encoded], pad_id: int, multiple: int | None) -> dict[str, torch.Tensor]:
    length = max(len(s.ids) for s in seqs)
    if multiple:
        length = math.ceil(length / multiple) * multiple
    ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    types = torch.zeros((len(seqs), length), dtype=torch.long) if seqs[0].type_ids is not None else None
    for row, s in enumerate(seqs):
        n = len(s.ids)
        ids[row, :n] = torch.tensor(s.ids)
        mask[row, :n] = 1
        if types is not None:
            types[row, :n] = torch.tensor(s.type_ids)
    ends = torch.tensor([row * length + len(s.ids) - 1 for row, s in enumerate(seqs)])
    out = {"input_ids": ids, "attention_mask": mask, "end_index": ends}
    if types is not None:
        out["token_type_ids"] = types
    return out


def _pack(seqs: Sequence[Encoded]) -> dict[str, torch.Tensor]:
    """All sequences in one row; position ids restart at 0 so attention stays block-diagonal."""
    if seqs[0].type_ids is not None:
        raise ValueError("padding-free packing needs a decoder backbone; this tokenizer uses segment ids "
                         "(an encoder). Set data.packing=false.")
    ids, pos, ends, offset = [], [], [], 0
    for s in seqs:
        ids += s.ids
        pos += range(len(s.ids))
        offset += len(s.ids)
        ends.append(offset - 1)
    return {"input_ids": torch.tensor([ids]), "position_ids": torch.tensor([pos]), "end_index": torch.tensor(ends)}


def _tokens(seqs: Sequence[Encoded]) -> int:
    return sum(len(s.ids) for s in seqs)


def collate_pairs(feats: Sequence[PairFeatures], pad_id: int, *, packing: bool = False,
                  pad_to_multiple_of: int | None = None) -> Batch:
    seqs = [f.chosen for f in feats] + [f.rejected for f in feats]
    tensors = _pack(seqs) if packing else _pad(seqs, pad_id, pad_to_multiple_of)
    return Batch(**tensors, num_pairs=len(feats), labels=stack_labels(feats),
                 n_tokens=_tokens(seqs), n_positions=tensors["input_ids"].numel())


def collate_rated(feats: Sequence[RatedFeatures], pad_id: int, *, packing: bool = False,
                  pad_to_multiple_of: int | None = None) -> Batch:
    seqs = [f.seq for f in feats]
    tensors = _pack(seqs) if packing else _pad(seqs, pad_id, pad_to_multiple_of)
    return Batch(**tensors, labels=stack_labels(feats), n_tokens=_tokens(seqs),
                 n_positions=tensors["input_ids"].numel())


def collate_judge(feats: Sequence, pad_id: int, *, packing: bool = False,
                  pad_to_multiple_of: int | None = None) -> Batch:
    """Judge sequences (:class:`rmlib.data.judge.JudgeFeatures`: original and flipped order) for the
    next-token loss on their target tokens only.

    Rows are padded or packed exactly as for the other kinds; then ``end_index`` lists the flat
    positions whose logits predict a target token (from ``prompt_len - 1`` to the second-to-last
    token of each sequence) and ``labels["target_ids"]`` the tokens they predict, so the model computes
    the output layer only there and prompt tokens never enter the loss. ``labels["n_target"]`` holds
    each item's target-token count (what the loss's ``count`` reads).
    """
    seqs = [s for f in feats for s in f.seqs]
    tensors = _pack(seqs) if packing else _pad(seqs, pad_id, pad_to_multiple_of)
    width = tensors["input_ids"].shape[1]
    pos, targets, offset = [], [], 0
    for row, s in enumerate(seqs):
        start = offset if packing else row * width
        pos.append(torch.arange(start + s.prompt_len - 1, start + len(s.ids) - 1))
        targets += s.ids[s.prompt_len:]
        offset += len(s.ids)
    tensors["end_index"] = torch.cat(pos) if pos else torch.zeros(0, dtype=torch.long)
    labels = {"target_ids": torch.tensor(targets, dtype=torch.long),
              "n_target": torch.tensor([float(f.n_target) for f in feats])}
    return Batch(**tensors, labels=labels, n_tokens=_tokens(seqs), n_positions=tensors["input_ids"].numel())


def collate_sequences(seqs: Sequence[Encoded], pad_id: int, *, packing: bool = False) -> Batch:
    """Unlabelled sequences, for scoring."""
    tensors = _pack(seqs) if packing else _pad(seqs, pad_id, None)
    return Batch(**tensors, n_tokens=_tokens(seqs), n_positions=tensors["input_ids"].numel())


def global_batches(lengths: Sequence[int], global_size: int, *, seed: int, epoch: int,
                   group_by_length: bool = True, mega: int = 32) -> list[np.ndarray]:
    """Shuffled global batches of indices; with length grouping, similar lengths share a batch.

    Grouping sorts within shuffled "mega-chunks" of ``mega`` global batches and then shuffles the
    batch order, so batches stay random across the epoch (a global sort would make early and late
    steps systematically different). The last global batch may be smaller.

    Why numpy: at tens of millions of pairs a plan of Python ints costs gigabytes per rank (28 bytes
    an int plus the lists); here it is one int64 array and a view per batch.
    """
    lengths = np.asarray(lengths)
    rng = np.random.default_rng([seed % 2**32, epoch])
    order = rng.permutation(len(lengths))
    if group_by_length:
        # longest first within each chunk, in place; a stable sort keeps equal lengths in shuffled
        # order. One chunk at a time: a whole-array sort needs several temporaries of the full size
        span = global_size * mega
        for i in range(0, len(order), span):
            part = order[i:i + span]
            part[:] = part[np.argsort(-lengths[part], kind="stable")]
    batches = [order[i:i + global_size] for i in range(0, len(order), global_size)]
    if group_by_length and batches:
        last = batches.pop() if len(batches[-1]) < global_size else None
        batches = [batches[k] for k in rng.permutation(len(batches))]
        if last is not None:
            batches.append(last)
    return batches


def split_global_batch(batch: Sequence[int], lengths: Sequence[int], parts: int) -> list[np.ndarray] | None:
    """Split a global batch into ``parts`` non-empty micro-batches of similar token counts.

    Returns None when there are fewer items than parts (every process must get work, or a
    collective would hang). Items are sorted by length so each micro-batch pads little; the first
    ``len % parts`` micro-batches hold one item more.
    """
    if len(batch) < parts:
        return None
    batch = np.asarray(batch)
    items = batch[np.argsort(-np.asarray(lengths)[batch], kind="stable")]
    return np.array_split(items, parts)


def iterate_in_length_order(lengths: Sequence[int], max_tokens: int, max_items: int, *,
                            max_padding: float | None = None) -> Iterator[list[int]]:
    """Batches for inference: sorted by length, bounded by padded token count and item count.

    ``max_padding`` also closes a batch before its pad positions would exceed that fraction of
    what it computes: sorting alone leaves the long tail of a length distribution padding heavily
    (a batch of 16 spanning 600..250 tokens), and those are the most expensive batches.
    """
    order = sorted(range(len(lengths)), key=lambda k: lengths[k], reverse=True)
    batch: list[int] = []
    real = 0
    for k in order:
        longest = lengths[batch[0]] if batch else lengths[k]
        width = longest * (len(batch) + 1)
        if batch and (len(batch) + 1 > max_items or width > max_tokens
                      or (max_padding is not None and 1 - (real + lengths[k]) / width > max_padding)):
            yield batch
            batch, real = [], 0
        batch.append(k)
        real += lengths[k]
    if batch:
        yield batch


# -- shared-prompt packing -------------------------------------------------------------------


def _prompt_groups(groups: Sequence[Sequence[Encoded]]) -> list[tuple[list[int], list[tuple[int, list[int]]]]]:
    """Split each group into units (prompt ids, [(sequence number, response ids)]).

    Sequences are numbered in input order (group by group). Responses of a group whose prompts
    tokenized differently (left truncation depends on the response's length) get units of their
    own, so the shared encoding always computes exactly the tokens separate encoding would.
    """
    units: list[tuple[list[int], list[tuple[int, list[int]]]]] = []
    k = 0
    for group in groups:
        by_prompt: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
        for s in group:
            if s.type_ids is not None:
                raise ValueError("shared-prompt packing needs a decoder backbone; this tokenizer uses segment "
                                 "ids (an encoder). Set data.shared_prompt=false.")
            by_prompt.setdefault(tuple(s.ids[:s.prompt_len]), []).append((k, s.ids[s.prompt_len:]))
            k += 1
        units += [(list(p), rs) for p, rs in by_prompt.items()]
    return units


def _fill_rows(sizes: Sequence[int], row_tokens: int | None) -> list[list[int]]:
    """First-fit-decreasing bin packing of units into rows of ``row_tokens`` tokens.

    ``0``: everything in one row. ``None``: rows as long as the largest unit. A row is never
    shorter than the largest unit, so every unit fits somewhere.
    """
    if row_tokens == 0:
        return [list(range(len(sizes)))]
    cap = max(row_tokens or 0, max(sizes, default=1))
    rows: list[list[int]] = []
    room: list[int] = []
    for u in sorted(range(len(sizes)), key=lambda u: sizes[u], reverse=True):
        for r, left in enumerate(room):
            if sizes[u] <= left:
                rows[r].append(u)
                room[r] -= sizes[u]
                break
        else:
            rows.append([u])
            room.append(cap - sizes[u])
    return rows


# Most padding a model call over several shared-prompt rows may carry (pad positions / positions).
CALL_PADDING = 0.05


def _calls(row_lengths: Sequence[int], max_padding: float) -> list[tuple[int, int, int]]:
    """Group rows (sorted longest first) into model calls whose padding stays within ``max_padding``.

    Why: one call per row computes no pad token, but on CPU (and for small models on GPU) the
    per-call overhead dominates; one call for all rows pads every row to the longest. Rows of
    similar length share a call, so the batch pads at most ``max_padding`` of what it computes.
    """
    calls, start = [], 0
    while start < len(row_lengths):
        width, end, real = row_lengths[start], start + 1, row_lengths[start]
        while end < len(row_lengths) and 1 - (real + row_lengths[end]) / (width * (end + 1 - start)) <= max_padding:
            real += row_lengths[end]
            end += 1
        calls.append((start, end, width))
        start = end
    return calls


def collate_shared_prompt(groups: Sequence[Sequence[Encoded]], pad_id: int, *,
                          row_tokens: int | None = None, max_padding: float = CALL_PADDING) -> Batch:
    """Each group's prompt once, followed by all its responses, in packed rows with a block mask.

    Layout of one unit: ``[prompt][response 1][response 2]...``. Prompt tokens attend causally to
    the prompt; each response attends to the whole prompt and causally to itself, never to a
    sibling response, and its position ids continue the prompt's (``prompt_len, prompt_len+1,
    ...``). So every response sees exactly what it would see encoded alone, while the prompt is
    computed once per group instead of once per response: a pair costs ``p + c + r`` tokens
    instead of ``2p + c + r``. The mask is a boolean ``(rows, 1, L, L)`` tensor (True = attend)
    that transformers passes to the attention kernel unchanged; rows are right-padded to the
    longest row, and pad positions attend only to themselves (no NaN rows in the softmax).

    Rows: ``row_tokens=None`` (default) packs units into rows as long as the largest unit, so the
    dense mask costs sum(row²) instead of (all tokens)²: on CPU a block mask is computed in full,
    so one long row would make attention quadratic in the batch's total length. Rows are ordered
    longest first and grouped into model calls (``row_calls``) of rows of similar length, each
    call trimmed to its longest row, so pad positions stay within ``max_padding`` of the computed
    positions (``max_padding=0``: one call per row, no pad token at all). ``row_tokens=0`` puts
    everything in one row (one kernel call, e.g. for flex_attention on GPU, whose BlockMask skips
    the masked tiles).

    ``end_index[k]`` is the flat position of sequence k's last token, sequences numbered in input
    order (group by group).
    """
    units = _prompt_groups(groups)
    sizes = [len(p) + sum(len(r) for _, r in rs) for p, rs in units]
    rows = sorted(_fill_rows(sizes, row_tokens), key=lambda row: -sum(sizes[u] for u in row))
    length = max(sum(sizes[u] for u in row) for row in rows)
    n_seqs = sum(len(rs) for _, rs in units)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    pos = torch.zeros((len(rows), length), dtype=torch.long)
    seg = torch.empty((len(rows), length), dtype=torch.long)  # one id per prompt / response / pad token
    unit_of = torch.empty((len(rows), length), dtype=torch.long)
    is_prompt = torch.zeros((len(rows), length), dtype=torch.bool)
    ends = torch.empty(n_seqs, dtype=torch.long)
    next_seg = 0
    for r, row in enumerate(rows):
        o = 0
        for u in row:
            prompt, responses = units[u]
            p = len(prompt)
            ids[r, o:o + p] = torch.tensor(prompt, dtype=torch.long)
            pos[r, o:o + p] = torch.arange(p)
            seg[r, o:o + p] = next_seg
            unit_of[r, o:o + sizes[u]] = u
            is_prompt[r, o:o + p] = True
            next_seg += 1
            o += p
            for k, resp in responses:
                n = len(resp)
                ids[r, o:o + n] = torch.tensor(resp, dtype=torch.long)
                pos[r, o:o + n] = torch.arange(p, p + n)
                seg[r, o:o + n] = next_seg
                next_seg += 1
                ends[k] = r * length + (o + n - 1 if n else o - 1)
                o += n
        tail = length - o  # padding: each pad token is its own segment and unit
        seg[r, o:] = torch.arange(next_seg, next_seg + tail)
        unit_of[r, o:] = -1 - torch.arange(next_seg, next_seg + tail)
        next_seg += tail
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    same_seg = seg[:, :, None] == seg[:, None, :]
    sees_prompt = (unit_of[:, :, None] == unit_of[:, None, :]) & is_prompt[:, None, :]
    mask = (causal & (same_seg | sees_prompt))[:, None]
    calls = _calls([sum(sizes[u] for u in row) for row in rows], max_padding)
    return Batch(input_ids=ids, end_index=ends, attention_mask=mask, position_ids=pos, n_tokens=sum(sizes),
                 n_positions=sum((end - start) * width for start, end, width in calls),
                 row_calls=calls if len(calls) > 1 else None)


def collate_pairs_shared(feats: Sequence[PairFeatures], pad_id: int, *, row_tokens: int | None = None,
                         max_padding: float = CALL_PADDING) -> Batch:
    """Pairs with the prompt computed once per pair; rows ordered chosen-first like ``collate_pairs``."""
    b = collate_shared_prompt([(f.chosen, f.rejected) for f in feats], pad_id, row_tokens=row_tokens,
                              max_padding=max_padding)
    n = len(feats)
    b.end_index = torch.cat([b.end_index[0:2 * n:2], b.end_index[1:2 * n:2]])
    b.num_pairs = n
    b.labels = stack_labels(feats)
    return b


def collate_lists(feats: Sequence[ListFeatures], pad_id: int, *, shared_prompt: bool = True, packing: bool = False,
                  row_tokens: int | None = None, max_padding: float = CALL_PADDING) -> Batch:
    """Ranked lists: sequences list by list (list 0's k responses, then list 1's, ...), the layout
    listwise losses read; ``labels["scores"]`` is (lists, longest k), NaN-padded.

    ``shared_prompt`` (decoders): each list's prompt once, then its k responses, in packed rows with the
    block mask of :func:`collate_shared_prompt` (each response sees the prompt and itself), so a list
    costs ``p + r_1 + ... + r_k`` tokens instead of ``k·p + r_1 + ... + r_k``. Otherwise every response
    is its own sequence, padded (or ``packing``: padding-free), as encoders need.
    """
    if shared_prompt:
        b = collate_shared_prompt([f.seqs for f in feats], pad_id, row_tokens=row_tokens, max_padding=max_padding)
    else:
        seqs = [s for f in feats for s in f.seqs]
        tensors = _pack(seqs) if packing else _pad(seqs, pad_id, None)
        b = Batch(**tensors, n_tokens=_tokens(seqs), n_positions=tensors["input_ids"].numel())
    b.labels = stack_labels(feats)
    return b


Collator = Callable[[Sequence, int], Batch]


def collator_for(kind: str, *, shared_prompt: bool = False, packing: bool = False) -> Collator:
    """The batch builder for a data kind (a loss's ``data_kind``) and the data options.

    Why here: the trainer must not know which collator goes with which loss family; it asks for
    the one matching its data. Combinations that cannot work are refused by name.
    """
    if kind == "pairs":
        if shared_prompt:
            return collate_pairs_shared
        return partial(collate_pairs, packing=packing)
    if kind == "lists":
        return partial(collate_lists, shared_prompt=shared_prompt, packing=packing)
    if kind == "ratings":
        if shared_prompt:
            raise ValueError("data.shared_prompt=true needs preference pairs (a prompt with two responses)")
        return partial(collate_rated, packing=packing)
    if kind == "judge":
        if shared_prompt:
            raise ValueError("data.shared_prompt=true needs preference pairs (a prompt with two responses)")
        return partial(collate_judge, packing=packing)
    raise ValueError(f"no collator for data kind {kind!r}")
