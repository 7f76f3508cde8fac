"""A final model's card and its upload to the Hugging Face Hub, after the export contract.

The contract itself (:func:`check_export_contract`, :func:`require_export_contract`) lives in
:mod:`rmlib.models.contract` and is re-exported here. Imports go one way: ``export`` → ``lora`` →
``contract`` (the merge that training's push needs is imported from :mod:`rmlib.models.lora`;
``lora`` checks merged directories against the contract module, never against this one).
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rmlib.io import write_text
from rmlib.models.contract import (  # noqa: F401 - re-exported: the contract's public home for users
    ADAPTER_FILES,
    TOKENIZER_FILES,
    ExportContractError,
    check_export_contract,
    require_export_contract,
)
from rmlib.models.distribution import DISTRIBUTION_KEY

CARD = "README.md"


# -- the model card ----------------------------------------------------------------------------

def _metric_lines(metrics: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in metrics.items():
        if isinstance(v, Mapping):
            out += _metric_lines(v, f"{prefix}{k}.")
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out.append(f"| {prefix}{k} | {v:.4g} |")
    return out


def _read_eval_report(path: Path) -> dict | None:
    p = path / "report.json" if path.is_dir() else path
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and "suite" in data else None


def model_card(model_dir: str | Path, *, repo_id: str | None = None, config_yaml: str | None = None,
               summary: Mapping[str, Any] | None = None, eval_reports: Sequence[str | Path] = ()) -> str:
    """The README.md text of a model directory: what it is, how it was trained, how to use it."""
    d = Path(model_dir)
    raw = json.loads((d / "config.json").read_text()) if (d / "config.json").is_file() else {}
    labels = [v for _, v in sorted(((int(k), v) for k, v in (raw.get("id2label") or {}).items()))]
    info = json.loads((d / "rmlib.json").read_text()) if (d / "rmlib.json").is_file() else {}
    if summary is None:
        summary = info.get("summary")
    labels = labels or list((info.get("lora") or {}).get("attributes") or [])  # an adapter has no config.json
    name = repo_id or str(d)
    from rmlib.models.causal import is_causal_lm_dir

    parts = _judge_card_intro(d, name, raw) if is_causal_lm_dir(d) else _reward_card_intro(d, name, raw, labels)
    if summary:
        parts += ["## Training", ""]
        facts = [(k, summary.get(k)) for k in ("steps", "num_processes", "train_seconds", "eval_source")]
        parts += [f"- {k}: {v}" for k, v in facts if v is not None]
        for key, title in (("eval_before", "held-out before training"), ("eval", "held-out after training")):
            if summary.get(key):
                parts += [f"- {title}: " + ", ".join(f"{k}={v:.4g}" for k, v in summary[key].items()
                                                     if isinstance(v, (int, float)))]
        report = summary.get("data_report")
        if report:
            parts += ["", "Data report:", "", "```json", json.dumps(report, indent=2, default=str), "```"]
        parts.append("")
    if config_yaml:
        parts += ["### Training config", "", "```yaml", config_yaml.rstrip(), "```", ""]
    rows = []
    for p in eval_reports:
        rep = _read_eval_report(Path(p))
        if rep is None:
            raise ValueError(f"{p}: not an rmlib evaluation report (report.json written by `rmlib eval`)")
        rows += [line.replace("| ", f"| {rep['suite']} | ", 1) for line in _metric_lines(rep.get("metrics") or {})]
    if rows:
        parts += ["## Evaluation", "", "Written by `rmlib eval`:", "", "| suite | metric | value |", "|---|---|---|",
                  *rows, ""]
    return "\n".join(parts)


def has_chat_template(d: Path) -> bool:
    """Whether the tokenizer saved in ``d`` has a chat template (``chat_template.jinja``, or the key in
    ``tokenizer_config.json``): it decides how rmlib formats inputs (:mod:`rmlib.data.tokenize`)."""
    if (d / "chat_template.jinja").is_file():
        return True
    try:
        cfg = json.loads((d / "tokenizer_config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return bool(isinstance(cfg, dict) and cfg.get("chat_template"))


def _chat_recipe(name: str) -> list[str]:
    """transformers code giving rmlib's reward of a model with a chat template: the conversation with
    the response as the assistant turn, rendered and tokenized by the template (``Featurizer``)."""
    return ["```python", "import torch",
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer", "",
            f'tok = AutoTokenizer.from_pretrained("{name}")',
            f'model = AutoModelForSequenceClassification.from_pretrained("{name}")',
            'prompt = [{"role": "user", "content": "What is 2 + 2?"}]',
            'response = "4"',
            "# the chat template renders the whole conversation, the response as the assistant turn",
            'ids = tok.apply_chat_template(prompt + [{"role": "assistant", "content": response}],',
            "                              return_tensors='pt', return_dict=True)",
            "with torch.no_grad():",
            "    rewards = model(**ids).logits[0]  # one value per output, in id2label order", "```", ""]


def _pair_recipe(name: str) -> list[str]:
    """transformers and sentence-transformers code giving rmlib's reward of a model without a chat
    template (BERT-style encoders): the prompt as "Role: content" paragraphs and the response, passed
    as a text pair (``Featurizer.render_prompt_text`` and the tokenizer's own pair encoding)."""
    return ["This model has no chat template (`apply_chat_template` raises): rmlib writes the prompt as "
            '"Role: content" paragraphs (`User: ...`, blank line between messages) and passes it with the '
            "response as a text pair, `[CLS] prompt [SEP] response [SEP]`, segment ids included.", "",
            "```python", "import torch",
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer", "",
            f'tok = AutoTokenizer.from_pretrained("{name}")',
            f'model = AutoModelForSequenceClassification.from_pretrained("{name}")',
            'prompt = [{"role": "user", "content": "What is 2 + 2?"}]',
            'response = "4"',
            "prompt_text = \"\\n\\n\".join(f\"{m['role'].capitalize()}: {m['content']}\" for m in prompt)",
            "ids = tok(prompt_text, response, return_tensors='pt')  # a text pair",
            "with torch.no_grad():",
            "    rewards = model(**ids).logits[0]  # one value per output, in id2label order", "```", "",
            "With sentence-transformers' `CrossEncoder`, give it the same pair, and ask for the raw output: "
            "its default activation is a sigmoid for a one-output model, which squashes rewards into (0, 1).",
            "", "```python", "from sentence_transformers import CrossEncoder", "",
            f'ce = CrossEncoder("{name}", activation_fn=torch.nn.Identity())  # the raw reward, no sigmoid',
            "ce_rewards = ce.predict([(prompt_text, response)])", "```", ""]


def _reward_line(d: Path, labels: list[str]) -> str:
    """The card's line saying which output is the reward. RL clients read one output of a sequence
    classifier, each its own (TRL's GRPO the first, verl the last), so a model with several outputs has
    no one reward until its heads are folded (:func:`export_model`)."""
    info = json.loads((d / "rmlib.json").read_text()) if (d / "rmlib.json").is_file() else {}
    spec = _declared_distribution(d)  # a LoRA run declares it in rmlib.json: its directory has no config.json
    if isinstance(spec, Mapping) and spec.get("kind") == "mean_var":
        return ("**The reward is output 0 (`reward`), the predicted mean**; output 1 (`log_variance`) gives its spread, "
                f"σ = sqrt({spec.get('min_std', 0.05):g}² + exp(log_variance)) (config.json `{DISTRIBUTION_KEY}`). "
                "TRL's GRPO reads output 0, the mean; verl reads the last output, which is not a reward here: serve it "
                "with `rmlib serve` (`/get_reward` returns the mean and `std`) or read output 0.")
    if isinstance(spec, Mapping) and spec.get("kind") == "rating_ce":
        return (f"**The reward is the expected rating**, softmax(logits) · {list(spec.get('levels', []))}: the "
                f"{len(labels)} outputs are the logits of the rating levels (config.json `{DISTRIBUTION_KEY}`), so no "
                "single output is the reward and RL clients that read one output (TRL's GRPO, verl) read a logit. "
                "Serve it with `rmlib serve` (`/get_reward` returns the expected rating and its `std`).")
    folded = info.get("folded_heads")
    if folded:
        terms = " + ".join(f"{w:g}·`{h}`" for h, w in folded["weights"].items() if w)
        return (f"**The reward is output 0 (`{labels[0] if labels else 'reward'}`), the only output**: {terms}, the "
                f"heads of `{folded['from']}` folded into one linear output (weights from {folded['source']}), so "
                "every RL client (TRL's GRPO reads the first output, verl the last) reads the same reward.")
    if len(labels) > 1:
        return (f"**Which output is the reward**: none alone. This model has {len(labels)} outputs, and RL clients "
                f"read one each: TRL's GRPO the first (`{labels[0]}`), verl the last (`{labels[-1]}`). For RL, "
                f"export a one-output model: `rmlib export {d} --out ONE_DIR --heads {labels[0]}=1` (or "
                "`--head-weights w1,w2,...`, or `--one-output` for the weights of a RewardBench grid search).")
    return "**The reward is output 0**, the only output: every client reads the same value."


def _reward_card_intro(d: Path, name: str, raw: Mapping[str, Any], labels: list[str]) -> list[str]:
    """A reward model's card up to its training section: what it is, transformers, vLLM and SGLang.

    The loading recipe follows the model's kind: the chat template's rendering for a model that has
    one, the text pair for one that has not (an encoder); each gives ``RewardModel.score``'s rewards
    (tests/test_interop.py runs the card's code).
    """
    arch = (raw.get("architectures") or ["sequence-classification"])[0]
    chat = has_chat_template(d)
    where = ("read at the last token of prompt + response" if chat else
             "read from the encoder's pooled first token of the (prompt, response) text pair")
    parts = ["---", "library_name: transformers", "pipeline_tag: text-classification", "tags:",
             "  - reward-model", "  - rmlib", "---", "", f"# Reward model `{name}`", "",
             f"A `{arch}` reward model trained with rmlib: {len(labels) or 1} output(s) "
             f"({', '.join(f'`{x}`' for x in labels) or '`reward`'}), {where}. " + (
                 "The outputs are a distribution's raw parameters (`problem_type: regression`, nothing applied)."
                 if _declared_distribution(d) is not None else
                 "The outputs are raw rewards (`problem_type: regression`); higher is better."),
             "", _reward_line(d, labels), ""]
    if any((d / f).exists() for f in ADAPTER_FILES):
        parts += ["This directory is a LoRA adapter with its full reward head (rmlib loads it as is). Merge it "
                  f"into a plain model first for the lines below: `rmlib export {d} --out MERGED_DIR`.", ""]
    parts += ["## Use with transformers", ""]
    parts += _chat_recipe(name) if chat else _pair_recipe(name)
    parts += ["With a pipeline, ask for the raw logits: `pipeline(\"text-classification\", model=..., "
              "function_to_apply=\"none\", top_k=None)`; its default applies a sigmoid or softmax, which squashes "
              "rewards into (0, 1) and turns close ones into ties.", "",
              "With rmlib (batched, length-sorted scoring, the same inputs): "
              f'`rmlib.RewardModel.from_pretrained("{name}").score(prompts, responses)`; '
              f"as an HTTP server for RL loops: `rmlib serve {name}` (see rmlib's docs/serving.md).", ""]
    fmt = ("Format requests with that chat template, the assistant turn included." if chat else
           "Send the prompt text and the response as a text pair, as above.")
    parts += ["## Serve with vLLM or SGLang", "", "```bash",
              f"vllm serve {name} --runner pooling --convert classify   # POST /classify or /pooling",
              f"python -m sglang.launch_server --model-path {name} --is-embedding",
              "```", "",
              "Both load the directory as it is: `architectures` ends in `ForSequenceClassification`, "
              "`problem_type` is `regression` (raw logits, no sigmoid), `pad_token_id` is set"
              + (", and the chat template is saved with the tokenizer. " if chat else ". ") + fmt, ""]
    return parts


def _judge_card_intro(d: Path, name: str, raw: Mapping[str, Any]) -> list[str]:
    """A Pairwise Justifier's card up to its training section: a causal LM that writes its verdict."""
    arch = (raw.get("architectures") or ["causal-LM"])[0]
    parts = ["---", "library_name: transformers", "pipeline_tag: text-generation", "tags:",
             "  - reward-model", "  - generative-judge", "  - rmlib", "---", "", f"# Pairwise Justifier `{name}`", "",
             f"A `{arch}` generative judge trained with rmlib (HelpSteer2-Preference's Pairwise Justifier, "
             "arXiv 2410.01257): given a prompt and two responses it writes why one is better, ending in a "
             "statement \"@Response N is ... better\".", ""]
    if any((d / f).exists() for f in ADAPTER_FILES):
        parts += ["This directory is a LoRA adapter (rmlib, and transformers with peft, load it as is). Merge it "
                  f"into a plain model first for other servers: `rmlib export {d} --out MERGED_DIR`.", ""]
    parts += ["## Use", "",
              "The user turn is `{prompt} @Response 1:\\n{response_1}\\n@Response 2:\\n{response_2}\\nBetween "
              "@Response 1 and @Response 2, which is better?`, rendered with the saved chat template; decode "
              "greedily.", "",
              "```python", "import rmlib", "",
              f'judge = rmlib.JustifierModel.from_pretrained("{name}")',
              "result = rmlib.judge_pairs(judge, prompts, chosen, rejected, both_orders=True)", "```", "",
              f"`rmlib score {name} PAIRS.jsonl --out verdicts.jsonl` writes each pair's verdicts, and "
              f"`rmlib serve {name}` (or `vllm serve {name}`) answers OpenAI chat completions at "
              "`POST /v1/chat/completions` (see rmlib's docs/justifier.md).", ""]
    return parts


def write_model_card(model_dir: str | Path, **kwargs: Any) -> Path:
    """Write (or rewrite) ``README.md`` in ``model_dir`` from :func:`model_card`."""
    return write_text(model_card(model_dir, **kwargs), Path(model_dir) / CARD)


# -- merging and checking by kind -----------------------------------------------------------------

def require_contract(model_dir: str | Path) -> None:
    """The contract of the directory's kind: a generative judge's (a causal LM,
    :func:`~rmlib.models.contract.require_generative_contract`) or a reward model's
    (:func:`require_export_contract`). A reward model relabelled as a causal LM still fails: it lacks
    the output layer the generative contract asks for."""
    from rmlib.models.causal import is_causal_lm_dir
    from rmlib.models.contract import require_generative_contract

    (require_generative_contract if is_causal_lm_dir(model_dir) else require_export_contract)(model_dir)


def model_heads(model_dir: str | Path) -> list[str]:
    """The output names of a model directory (``config.json``'s ``id2label``; an adapter's ``rmlib.json``)."""
    d = Path(model_dir)
    raw = json.loads((d / "config.json").read_text()) if (d / "config.json").is_file() else {}
    labels = [v for _, v in sorted((int(k), v) for k, v in (raw.get("id2label") or {}).items())]
    if not labels and (d / "rmlib.json").is_file():
        labels = list((json.loads((d / "rmlib.json").read_text()).get("lora") or {}).get("attributes") or [])
    return labels


def grid_search_weights(run_dir: str | Path) -> tuple[dict[str, float], Path] | None:
    """The head weights the evaluator's grid search found for this model, and the report they are in.

    ``rmlib eval RUN_DIR --suite rewardbench heads.search=true`` writes them to
    ``RUN_DIR/eval-rewardbench/report.json`` (``meta.head_search``); every ``RUN_DIR/*/report.json`` is
    read. None when there is none; two reports with different weights are an error naming both.
    """
    found: list[tuple[dict[str, float], Path]] = []
    for path in sorted(Path(run_dir).glob("*/report.json")):
        search = ((_read_eval_report(path) or {}).get("meta") or {}).get("head_search")
        if isinstance(search, dict) and search.get("weights") and search.get("heads"):
            found.append((dict(zip(search["heads"], (float(x) for x in search["weights"]))), path))
    if len({tuple(w.items()) for w, _ in found}) > 1:
        raise ValueError("several grid searches found different head weights: "
                         + "; ".join(f"{p}: {w}" for w, p in found) + ". Give --heads or --head-weights")
    return found[0] if found else None


def _declared_distribution(d: Path) -> dict | None:
    """The distribution a model directory declares: its config.json's, or a LoRA run's (its rmlib.json entry,
    through :func:`rmlib.models.lora.read_info`: the base's config.json does not know the head)."""
    from rmlib.models.lora import read_info
    from rmlib.models.merge import is_adapter_dir

    if (d / "config.json").is_file():
        spec = json.loads((d / "config.json").read_text()).get(DISTRIBUTION_KEY)
        if spec is not None:
            return spec
    return read_info(d).get("distribution") if is_adapter_dir(d) else None


def export_model(model_dir: str | Path, out_dir: str | Path, *, heads: Mapping[str, float] | None = None,
                 head_weights: Sequence[float] | None = None, one_output: bool = False, dtype: str | None = None,
                 device: str | None = None, max_shard_size: int | str = "5GB") -> dict[str, Any]:
    """``rmlib export``: merge a LoRA run into a plain directory, and/or fold a multi-head model's heads
    into one output (:func:`rmlib.models.fold.fold_heads`), so that every RL client reads one reward.

    The fold's weights: ``heads`` ({name: weight}, unnamed heads 0), ``head_weights`` (one per head), or
    with ``one_output`` alone the grid search's (:func:`grid_search_weights`). They are checked against
    the model's heads before anything is merged. A LoRA run is merged first (the probe-checked merge),
    then folded; a plain directory is folded as stored. Returns the merge's and the fold's results.
    """
    from rmlib.models.causal import is_causal_lm_dir
    from rmlib.models.fold import fold_heads, head_weight_vector
    from rmlib.models.merge import is_adapter_dir

    d, out = Path(model_dir), Path(out_dir)
    if heads is not None and head_weights is not None:
        raise ValueError("give --heads or --head-weights, not both")
    fold = heads is not None or head_weights is not None or one_output
    adapter = is_adapter_dir(d)
    if not fold:
        if not adapter:
            raise ValueError(f"{d} is not a LoRA adapter directory (no adapter_config.json): there is nothing to "
                             "merge. To write a one-output model give --heads, --head-weights or --one-output")
        return merge_for_export(d, out, dtype=dtype, device=device, max_shard_size=max_shard_size)
    if is_causal_lm_dir(d):
        raise ValueError(f"{d} is a generative judge (a causal LM): it has no reward heads to fold")
    spec = _declared_distribution(d)
    if spec is not None:
        raise ValueError(f"{d} is a {spec.get('kind')} model: its outputs are a distribution's parameters, not "
                         "attribute heads, and no weighted sum of them is its reward; serve it with `rmlib serve`, "
                         "which answers the mean and its spread")
    names = model_heads(d)
    if heads is not None:
        weights, source = dict(heads), "--heads " + ",".join(f"{k}={v:g}" for k, v in heads.items())
    elif head_weights is not None:
        weights, source = list(head_weights), "--head-weights " + ",".join(f"{v:g}" for v in head_weights)
    else:
        found = grid_search_weights(d)
        if found is None:
            raise ValueError(f"--one-output: no head-weight grid search in {d}/*/report.json; run `rmlib eval {d} "
                             "--suite rewardbench --data ... heads.search=true` first, or give --heads or --head-weights")
        weights, source = found[0], f"the RewardBench head-weight grid search in {found[1]}"
    head_weight_vector(weights, names)  # fail before any merge
    if not adapter:
        if dtype is not None:
            raise ValueError(f"--dtype converts a LoRA merge's weights; {d} is a plain directory and is folded in "
                             "its stored dtypes")
        folded = fold_heads(d, out, weights, source=source, max_shard_size=max_shard_size, device=device)
        return {"out": folded["out"], "fold": folded}
    merged = out.with_name(out.name + ".merged")
    try:
        merge = merge_for_export(d, merged, dtype=dtype, device=device, max_shard_size=max_shard_size)
        folded = fold_heads(merged, out, weights, source=source, max_shard_size=max_shard_size, device=device)
    finally:
        shutil.rmtree(merged, ignore_errors=True)
    return {**merge, "out": folded["out"], "fold": folded}


def merge_for_export(adapter_dir: str | Path, out_dir: str | Path, *, dtype: str | None = None,
                     device: str | None = None, max_shard_size: int | str = "5GB") -> dict[str, Any]:
    """``rmlib export``: the probe-checked merge of a LoRA run's output into a plain directory, by kind.

    A reward model's adapter + head goes through :func:`rmlib.models.lora.merge_adapter` (an
    ``AutoModelForSequenceClassification``); a Pairwise Justifier's ``CAUSAL_LM`` adapter through
    :func:`rmlib.models.causal.merge_causal_adapter` (an ``AutoModelForCausalLM``). Both stream the
    one LoRA merge of :mod:`rmlib.models.merge`, check the contract and reload before publishing.
    """
    from rmlib.models.causal import is_causal_lm_dir, merge_causal_adapter
    from rmlib.models.lora import merge_adapter

    merge = merge_causal_adapter if is_causal_lm_dir(adapter_dir) else merge_adapter
    return merge(adapter_dir, out_dir, dtype=dtype, device=device, max_shard_size=max_shard_size)


# -- upload ------------------------------------------------------------------------------------

def push_model(model_dir: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
               revision: str | None = None, commit_message: str = "Upload reward model with rmlib") -> str:
    """Upload a model directory that meets the contract to the Hub; returns the commit URL.

    The directory is checked first (:func:`require_contract`), so nothing that other tools
    cannot load is uploaded. ``huggingface_hub`` creates the repository if needed and uploads the
    folder in one commit, as ``Trainer.push_to_hub`` in transformers/TRL does.
    """
    from huggingface_hub import HfApi

    require_contract(model_dir)
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    info = api.upload_folder(folder_path=str(model_dir), repo_id=repo_id, repo_type="model", revision=revision,
                             commit_message=commit_message, ignore_patterns=["*.tmp", "*.tmp/*"])
    return str(getattr(info, "commit_url", info))


def finish_training_output(model_dir: str | Path, *, config_yaml: str, summary: Mapping[str, Any],
                           push_to_hub: str | None = None) -> Path:
    """What follows a training run's final save: the model card, then the upload if asked.

    A LoRA run's output is an adapter directory; it is merged first (``<model_dir>-merged``, the
    one LoRA merge, probe-checked) because the Hub copy must load without rmlib. Returns the
    directory that meets the contract (or the adapter directory when nothing is pushed).
    """
    from rmlib.models.merge import is_adapter_dir

    d = Path(model_dir)
    write_model_card(d, repo_id=push_to_hub, config_yaml=config_yaml, summary=summary)
    if not push_to_hub:
        return d
    if is_adapter_dir(d):
        from rmlib.runtime import without_zero3_init

        merged = d.with_name(d.name + "-merged")
        with without_zero3_init():  # the main process alone loads the model, even inside a ZeRO-3 run
            merge_for_export(d, merged)
        write_model_card(merged, repo_id=push_to_hub, config_yaml=config_yaml, summary=summary)
        d = merged
    push_model(d, push_to_hub)
    return d
