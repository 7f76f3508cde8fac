"""The per-example featurizer rmlib used before the Arrow feature path (frozen copy, test oracle).

Token-for-token parity tests compare the batched, prompt-once, cached features against it.
"""

from __future__ import annotations

from collections.abc import Sequence

from rmlib.data.tokenize import DEFAULT_PROMPT_FORMAT, Encoded

Message = dict


class OldFeaturizer:
    """Tokenizes prompts and responses the same way for training, evaluation and scoring."""

    def __init__(self, tokenizer, max_length: int = 1024, keep_system: bool = True):
        if max_length < 8:
            raise ValueError(f"max_length must be at least 8, got {max_length}")
        self.tok = tokenizer
        self.max_length = max_length
        self.keep_system = keep_system
        self.has_template = bool(getattr(tokenizer, "chat_template", None))
        self.truncated_prompts = 0
        if not self.has_template:
            self._learn_pair_template()

    # -- rendering -------------------------------------------------------------------------

    def _ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def _learn_pair_template(self) -> None:
        """Find where the tokenizer's own pair encoding puts special tokens around two segments.

        transformers 5 no longer exposes ``build_inputs_with_special_tokens``, so we encode a
        probe pair of single-token strings and read off the prefix, middle and suffix.
        """
        a, b = self._ids("a"), self._ids("b")
        enc = self.tok("a", "b")
        ids = enc["input_ids"]
        if len(a) != 1 or len(b) != 1 or ids.count(a[0]) != 1 or ids.count(b[0]) != 1:
            raise ValueError("cannot infer the pair template of a tokenizer without a chat template; "
                             "give the tokenizer a chat_template")
        i, j = ids.index(a[0]), ids.index(b[0])
        self._prefix, self._middle, self._suffix = ids[:i], ids[i + 1:j], ids[j + 1:]
        if not self._suffix and self.tok.eos_token_id is not None:
            self._suffix = [self.tok.eos_token_id]
        types = enc.get("token_type_ids")
        self._types = None if types is None or len(set(types)) == 1 else (types[0], types[j])

    def render_prompt_text(self, prompt: Sequence[Message]) -> str:
        return "\n\n".join(DEFAULT_PROMPT_FORMAT.format(role=m["role"].capitalize(), content=m["content"])
                           for m in prompt)

    def _split(self, prompt: Sequence[Message], response: str) -> tuple[list[int], list[int], list[int]]:
        """(head, prompt body, response part): head holds tokens that truncation must keep."""
        if self.has_template:
            msgs = list(prompt)
            p_text = self.tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            full = self.tok.apply_chat_template(msgs + [{"role": "assistant", "content": response}],
                                                tokenize=False)
            if not full.startswith(p_text):
                raise ValueError("the chat template renders the prompt differently with and without the "
                                 "response, so the response boundary is unknown; use another template")
            p_ids, r_ids = self._ids(p_text), self._ids(full[len(p_text):])
            head = 0
            while head < len(p_ids) and p_ids[head] in self.tok.all_special_ids and head < 4:
                head += 1
            if self.keep_system and msgs and msgs[0]["role"] == "system":
                sys_text = self.tok.apply_chat_template(msgs[:1], tokenize=False)
                if p_text.startswith(sys_text):
                    head = max(head, len(self._ids(sys_text)))
            return p_ids[:head], p_ids[head:], r_ids
        p_ids = self._ids(self.render_prompt_text(prompt))
        if not self._middle:  # no separator token in the pair template (GPT-2 style): mark the turn
            response = "\n\nAssistant: " + response
        head = 0
        if self.keep_system and prompt and prompt[0]["role"] == "system":
            head = len(self._ids(self.render_prompt_text(prompt[:1])))
        return (self._prefix + p_ids[:head], p_ids[head:],
                self._middle + self._ids(response) + self._suffix)

    def encode(self, prompt: Sequence[Message], response: str, *, budget: int | None = None) -> Encoded | None:
        """Token ids for prompt + response, or None when the response alone cannot fit."""
        limit = self.max_length if budget is None else budget
        head, body, resp = self._split(prompt, response)
        room = limit - len(head) - len(resp)
        if room < 0 or (room == 0 and body):
            return None
        if len(body) > room:
            body = body[len(body) - room:] if room else []
            self.truncated_prompts += 1
        ids = head + body + resp
        prompt_len = len(head) + len(body)
        types = None
        if not self.has_template and self._types is not None:
            n_first = prompt_len + len(self._middle)
            types = [self._types[0]] * n_first + [self._types[1]] * (len(ids) - n_first)
        return Encoded(ids, prompt_len, types)

