"""rmlib against other projects' own code: a reward model trained by TRL, and the model card's loading
recipe run as written. Real components throughout (TRL's RewardTrainer, transformers, sentence-transformers)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from rmlib.models import RewardModel
from rmlib.testing import build_tiny_llama

PROMPTS = ["What is the capital of France?", "Sort 3 1 2.", "Say hi", "Convert 10 meters to feet, please."]
CHOSEN = ["Paris.", "1 2 3", "hi there!", "About 32.8 feet."]
REJECTED = ["London.", "3 2 1", "go away", "About 3 feet."]


@pytest.fixture(scope="module")
def trl_model(tmp_path_factory):
    """A tiny Llama whose tokenizer has pad == eos, trained 4 steps by TRL's RewardTrainer (fp32, CPU), and
    TRL's own rewards of the training pairs: its collator's batch through the trained model, as
    ``RewardTrainer.compute_loss`` computes them."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer
    from trl.trainer.reward_trainer import DataCollatorForPreference

    root = tmp_path_factory.mktemp("trl")
    src = build_tiny_llama(root / "base", pad_equals_eos=True)
    tok = AutoTokenizer.from_pretrained(src)
    assert tok.pad_token_id == tok.eos_token_id
    rows = [{"prompt": [{"role": "user", "content": p}], "chosen": [{"role": "assistant", "content": c}],
             "rejected": [{"role": "assistant", "content": r}]} for p, c, r in zip(PROMPTS, CHOSEN, REJECTED)]
    args = RewardConfig(output_dir=str(root / "run"), max_steps=4, per_device_train_batch_size=4, learning_rate=5e-3,
                        report_to=[], save_strategy="no", logging_steps=1, use_cpu=True, bf16=False, seed=0,
                        disable_tqdm=True)
    trainer = RewardTrainer(model=AutoModelForSequenceClassification.from_pretrained(src, num_labels=1), args=args,
                            train_dataset=Dataset.from_list(rows), processing_class=tok)
    trainer.train()
    out = root / "trl_rm"
    trainer.save_model(str(out))
    ds = trainer.train_dataset
    batch = DataCollatorForPreference(pad_token_id=tok.pad_token_id)([ds[i] for i in range(len(rows))])
    trainer.model.eval()
    with torch.no_grad():
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    chosen, rejected = logits.squeeze(-1).float().cpu().chunk(2)
    return out, chosen, rejected


@pytest.mark.slow  # TRL import + 4 training steps (about 10 s)
def test_trl_trained_pad_eq_eos_model_is_read_where_trl_trained_it(trl_model, tmp_path, caplog):
    """TRL pools with transformers' rule, the rightmost token that is not ``config.pad_token_id``: with pad ==
    eos the token before the final eos. rmlib detects the checkpoint (pad == eos in its config, no rmlib.json)
    and reads it there: the same rewards as TRL's own computation within 1e-4 (fp32; batch composition differs),
    through padded, packed and shared-prompt batches."""
    out, trl_chosen, trl_rejected = trl_model
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["pad_token_id"] == cfg["eos_token_id"] and not (out / "rmlib.json").exists()
    with caplog.at_level("WARNING"):
        rm = RewardModel.from_pretrained(out)
    assert rm.reward_token == "last_non_pad" and "reward_token='end'" in caplog.text
    chosen, rejected = rm.score_pairs(PROMPTS, CHOSEN, REJECTED)
    torch.testing.assert_close(chosen, trl_chosen, atol=1e-4, rtol=0)
    torch.testing.assert_close(rejected, trl_rejected, atol=1e-4, rtol=0)
    both = torch.cat([trl_chosen, trl_rejected])
    torch.testing.assert_close(rm.score(PROMPTS * 2, CHOSEN + REJECTED, packing=True), both, atol=1e-4, rtol=0)
    torch.testing.assert_close(rm.score(PROMPTS * 2, CHOSEN + REJECTED, shared_prompt=True), both, atol=1e-4, rtol=0)

    # the option named in the warning reads the final eos: rewards move (what rmlib did before, silently)
    at_end = RewardModel.from_pretrained(out, reward_token="end")
    assert at_end.reward_token == "end"
    assert (at_end.score(PROMPTS, CHOSEN) - trl_chosen).abs().max() > 1e-2

    # saving would write an rmlib checkpoint read at the end token: refused, naming the option
    with pytest.raises(ValueError, match="reward_token='end'"):
        rm.save_pretrained(tmp_path / "resaved")

    # a checkpoint rmlib trained (rmlib.json beside it) is read at its end token, or as rmlib.json says
    marked = tmp_path / "marked"
    shutil.copytree(out, marked)
    (marked / "rmlib.json").write_text(json.dumps({"summary": {}}))
    assert RewardModel.from_pretrained(marked).reward_token == "end"
    (marked / "rmlib.json").write_text(json.dumps({"reward_token": "last_non_pad"}))
    assert RewardModel.from_pretrained(marked).reward_token == "last_non_pad"
    # a new head (other attributes) was never trained anywhere: rmlib's end token
    assert RewardModel.from_pretrained(out, attributes=["a", "b"]).reward_token == "end"
    with pytest.raises(ValueError, match="reward_token must be one of"):
        RewardModel.from_pretrained(out, reward_token="first")


@pytest.mark.slow  # shares the TRL training; two `rmlib score` subprocesses
def test_the_command_line_reads_a_trl_model_where_it_was_trained_or_where_told(trl_model, tmp_path):
    """`rmlib score` (like `rmlib eval reward_token=...` and `rmlib serve --reward-token`) takes the same rule."""
    from tests.helpers import run_cli

    out, trl_chosen, _ = trl_model
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n"
                            for p, c, r in zip(PROMPTS, CHOSEN, REJECTED)))
    got = {}
    for token in ("auto", "end"):
        run_cli("score", str(out), str(data), "--out", str(tmp_path / f"{token}.jsonl"), "--reward-token", token)
        got[token] = torch.tensor([json.loads(line)["chosen"] for line in (tmp_path / f"{token}.jsonl").open()])
    torch.testing.assert_close(got["auto"], trl_chosen, atol=1e-4, rtol=0)
    assert (got["end"] - trl_chosen).abs().max() > 1e-2


def _card_code(model_dir) -> list[str]:
    """The ```python blocks of the README.md that write_model_card wrote, in order."""
    import re

    from rmlib.models.export import write_model_card

    card = write_model_card(model_dir).read_text()
    return re.findall(r"```python\n(.*?)```", card, flags=re.S)


def _run_card(model_dir) -> dict:
    ns: dict = {}
    for block in _card_code(model_dir):
        exec(compile(block, f"{model_dir}/README.md", "exec"), ns)  # the card's code as a user would run it
    return ns


def test_model_card_recipe_gives_rmlibs_reward_on_a_decoder_with_a_chat_template(tiny_llama, tmp_path):
    """A decoder with a chat template: the card's transformers code (apply_chat_template on the conversation)
    gives RewardModel.score's reward within 1e-4."""
    rm = RewardModel.from_pretrained(tiny_llama).eval()
    with torch.no_grad():
        rm.model.score.weight.normal_()  # a head that is not the random init
    out = rm.save_pretrained(tmp_path / "decoder")
    blocks = _card_code(out)
    assert len(blocks) == 1 and "apply_chat_template" in blocks[0]
    ns = _run_card(out)
    expected = rm.score([ns["prompt"]], [ns["response"]])
    torch.testing.assert_close(ns["rewards"], expected, atol=1e-4, rtol=0)


def test_model_card_recipe_gives_rmlibs_reward_on_minilm(tmp_path):
    """MiniLM has no chat template (apply_chat_template raises): the card's code passes the prompt as
    "Role: content" paragraphs and the response as a text pair, and gives RewardModel.score's reward
    within 1e-4; so does sentence-transformers' CrossEncoder with activation_fn=Identity, while its
    default (a sigmoid for one output) does not."""
    pytest.importorskip("sentence_transformers")
    rm = RewardModel.from_pretrained("minilm-l6", attributes=["reward"]).eval()
    with torch.no_grad():
        rm.model.classifier.weight.normal_()
    out = rm.save_pretrained(tmp_path / "encoder")
    with pytest.raises(ValueError):
        rm.tokenizer.apply_chat_template([{"role": "user", "content": "q"}], tokenize=False)
    blocks = _card_code(out)
    assert len(blocks) == 2 and not any("apply_chat_template" in b for b in blocks)
    ns = _run_card(out)
    expected = rm.score([ns["prompt"]], [ns["response"]])
    torch.testing.assert_close(ns["rewards"], expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.as_tensor(ns["ce_rewards"]).reshape(-1), expected, atol=1e-4, rtol=0)
    default = ns["CrossEncoder"](str(out))  # the card's claim: the default squashes with a sigmoid
    squashed = torch.as_tensor(default.predict([(ns["prompt_text"], ns["response"])])).reshape(-1)
    torch.testing.assert_close(squashed, torch.sigmoid(expected), atol=1e-4, rtol=0)
    assert (squashed - expected).abs().max() > 1e-2
    # a two-turn prompt with a system message: the card's code with the example's lines replaced
    code = "\n".join(line for line in blocks[0].splitlines() if not line.startswith(("prompt = ", "response = ")))
    ns2 = {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
           "response": "Hello."}
    exec(compile(code, "README.md", "exec"), ns2)
    assert ns2["prompt_text"] == "System: Be brief.\n\nUser: Hi"
    torch.testing.assert_close(ns2["rewards"], rm.score([ns2["prompt"]], [ns2["response"]]), atol=1e-4, rtol=0)


def test_eval_config_takes_the_reward_token_rule():
    from rmlib.config import ConfigError
    from rmlib.eval.config import load_eval_config

    assert load_eval_config("pairs", None, ["reward_token=end"]).reward_token == "end"
    assert load_eval_config("pairs").reward_token == "auto"
    with pytest.raises(ConfigError, match="reward_token.*one of"):
        load_eval_config("pairs", None, ["reward_token=first"])
