"""rmlib.serve.client, the reward functions docs/serving.md gives TRL, verl and OpenRLHF, against a real
server with a bearer token: each returns RewardModel.score's rewards (1e-5), imported and loaded from its
file path alone (as verl and OpenRLHF load a reward function); a wrong key fails loudly."""

from __future__ import annotations

import importlib.util
import urllib.error

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from rmlib.models import RewardModel  # noqa: E402
from rmlib.serve import ServeOptions, create_app  # noqa: E402
from tests.test_serve import PROMPTS, RESPONSES, rendered, running  # noqa: E402


@pytest.fixture(scope="module")
def llama(tiny_llama):
    return RewardModel.from_pretrained(tiny_llama, max_length=256).eval()


def _from_file():
    """The module as verl (custom_reward_function.path) and OpenRLHF (--reward.remote_url FILE) load it."""
    import rmlib.serve.client as c

    spec = importlib.util.spec_from_file_location("reward_func", c.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_rl_loop_reward_functions_give_the_model_rewards(llama, tmp_path, monkeypatch):
    import rmlib.serve.client as imported

    key = tmp_path / "rm.key"
    key.write_text("k3y\n")
    expected = llama.score(PROMPTS, RESPONSES)
    messages = [[{"role": "user", "content": p}] for p in PROMPTS]
    with running(create_app(llama, ServeOptions(api_key="k3y"))) as url:
        monkeypatch.setenv("RMLIB_URL", url)
        monkeypatch.setenv("RMLIB_API_KEY_FILE", str(key))
        for client in (imported, _from_file()):
            # TRL: standard (strings) and conversational (messages) datasets
            got = client.trl_reward(prompts=PROMPTS, completions=RESPONSES, completion_ids=[[1]] * 4)
            torch.testing.assert_close(torch.tensor(got), expected, atol=1e-5, rtol=0)
            got = client.trl_reward(prompts=messages, completions=[[{"role": "assistant", "content": r}]
                                                                   for r in RESPONSES])
            torch.testing.assert_close(torch.tensor(got), expected, atol=1e-5, rtol=0)
            # verl: one response per call, its prompt in extra_info["question"]
            got = [client.verl_compute_score(data_source="gsm8k", solution_str=r, ground_truth="x",
                                             extra_info={"question": p, "index": 0}) for p, r in zip(PROMPTS, RESPONSES)]
            torch.testing.assert_close(torch.tensor(got), expected, atol=1e-5, rtol=0)
            with pytest.raises(KeyError, match="extra_info\\['question'\\]"):
                client.verl_compute_score("gsm8k", "4", "4", {"index": 0})
            # OpenRLHF: rendered prompt + response queries, with their prompts
            queries = [rendered(llama, p, r) for p, r in zip(PROMPTS, RESPONSES)]
            prompts = [llama.tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
                       for m in messages]
            out = client.reward_func(queries, prompts, ["label"] * 4)
            torch.testing.assert_close(out["rewards"], expected, atol=1e-5, rtol=0)
            assert torch.equal(out["scores"], out["rewards"]) and out["extra_logs"] == {}
        key.write_text("another\n")
        imported._key.cache_clear()
        with pytest.raises(urllib.error.HTTPError) as e:  # a wrong key fails loudly, never a default reward
            imported.trl_reward(prompts=PROMPTS[:1], completions=RESPONSES[:1])
        assert e.value.code == 401
