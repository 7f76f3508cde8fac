"""Reward functions that ask a running ``rmlib serve`` for rewards, in the shapes RL loops call.

* TRL: ``GRPOTrainer(reward_funcs=trl_reward)``, or ``trl grpo --reward_funcs rmlib.serve.client.trl_reward``;
* verl: ``reward.custom_reward_function.path=<this file> reward.custom_reward_function.name=verl_compute_score``;
* OpenRLHF: ``--reward.remote_url <this file>`` (it calls :func:`reward_func`); without a token,
  ``--reward.remote_url http://HOST:PORT/get_reward`` needs no function at all.

Why a file of the standard library only: verl and OpenRLHF load a reward function by its path and
execute the file alone, in processes where rmlib may not be installed, so it imports nothing from
rmlib and can be copied anywhere (``python -c "import rmlib.serve.client as c; print(c.__file__)"``
prints its path). The server's address is ``RMLIB_URL`` (default ``http://127.0.0.1:8000``) and its
key, with ``--api-key-file``, the file ``RMLIB_API_KEY_FILE`` names; both are read when a function
is first called, not at import. A failed request raises (urllib's ``HTTPError`` carries the
server's message): a reward is never silently replaced by a default.
"""

from __future__ import annotations

import json
import os
import urllib.request
from functools import lru_cache
from typing import Any

__all__ = ["reward_func", "score", "trl_reward", "verl_compute_score"]


@lru_cache(maxsize=4)
def _key(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        key = f.read().strip()
    if not key:
        raise ValueError(f"RMLIB_API_KEY_FILE={path}: the file is empty")
    return key


def _post(route: str, body: Any, timeout: float = 300.0) -> Any:
    url = os.environ.get("RMLIB_URL", "http://127.0.0.1:8000").rstrip("/") + route
    headers = {"content-type": "application/json"}
    if os.environ.get("RMLIB_API_KEY_FILE"):
        headers["authorization"] = "Bearer " + _key(os.environ["RMLIB_API_KEY_FILE"])
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read())


def score(prompts: list, responses: list[str]) -> list[float]:
    """Rewards of (prompt, response) pairs through ``POST /score``: a prompt is a string or a list of
    ``{"role", "content"}`` messages, as ``RewardModel.score`` takes it."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")
    if not prompts:
        return []
    rows = _post("/score", [{"prompt": p, "response": r} for p, r in zip(prompts, responses)])
    return [float(row["reward"]) for row in rows]


def trl_reward(prompts: list, completions: list, **kwargs: Any) -> list[float]:
    """TRL ``GRPOTrainer`` reward function: standard (strings) or conversational (message lists, the
    completion's last message being the response) prompts and completions."""
    return score(list(prompts), [c[-1]["content"] if isinstance(c, list) else c for c in completions])


def verl_compute_score(data_source: str, solution_str: str, ground_truth: Any = None,
                       extra_info: dict | None = None, **kwargs: Any) -> float:
    """verl custom reward function: ``solution_str`` is the decoded response, and the prompt is
    ``extra_info["question"]`` (verl's data preprocessing scripts write it there); a row without it is
    an error naming the key, since a reward without its prompt is not the reward the model gives."""
    if not extra_info or "question" not in extra_info:
        raise KeyError("verl_compute_score needs the prompt in extra_info['question'] (write it when preparing "
                       "the parquet files, as verl's examples/data_preprocess scripts do)")
    return score([extra_info["question"]], [solution_str])[0]


def reward_func(queries: list[str], prompts: list[str], labels: Any = None) -> dict[str, Any]:
    """OpenRLHF reward function file (``--reward.remote_url``): ``queries`` are prompt + response as
    rendered by the chat template, sent to ``POST /get_reward`` with their ``prompts``."""
    import torch  # OpenRLHF's processes have it; the other functions do not need it

    out = _post("/get_reward", {"query": list(queries), "prompts": list(prompts)})
    rewards = torch.tensor(out["rewards"], dtype=torch.float32)
    logs = {name: torch.tensor(values) for name, values in (out.get("extra_logs") or {}).items()}  # per head
    return {"rewards": rewards, "scores": rewards, "extra_logs": logs}
