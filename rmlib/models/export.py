"""The export contract of a final rmlib model, its model card, and the upload to the Hugging Face Hub.

A final model (a full fine-tune, a merged LoRA or QLoRA run, an ExPO output) is a directory that
``transformers``, vLLM's pooling runner (``--task classify`` / ``--runner pooling``) and SGLang
(``--is-embedding``) load as a sequence classifier without conversion.
:func:`check_export_contract` lists every field that breaks this, naming it:

* ``architectures`` ends in ``ForSequenceClassification`` (vLLM and SGLang pick the model class
  from it; a ``*ForCausalLM`` name is served as a text generator);
* ``num_labels`` equals the number of heads, and the names in ``id2label`` are the attributes
  (not transformers' ``LABEL_0`` placeholders);
* the head weight is stored under the name the architecture expects (``score.weight`` for
  Llama/Qwen/Gemma, ``classifier.weight`` for BERT), with ``num_labels`` rows: a head stored under
  another name is silently re-initialised at load;
* ``pad_token_id`` is set (sequence classifiers locate the last token of each row with it);
* ``problem_type`` is ``"regression"``: transformers' ``TextClassificationPipeline`` and vLLM's
  classify runner apply a sigmoid (softmax for several labels) to classifiers otherwise, which
  saturates large rewards into ties;
* no adapter files (``adapter_config.json``) and no ``quantization_config`` left after a merge;
* the tokenizer (and, for decoders, its chat template) is saved beside the weights.

vLLM's pooling-model documentation (https://docs.vllm.ai/en/latest/models/pooling_models.html)
and transformers' sequence-classification configs
(https://huggingface.co/docs/transformers/main_classes/configuration) describe these fields.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rmlib.io import write_text

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.txt", "vocab.json", "spiece.model")
CARD = "README.md"


class ExportContractError(ValueError):
    """A model directory that other tools would not load or score as rmlib does."""


def _expected_head_keys(config) -> dict[str, tuple[int, ...]]:
    """The head parameters the architecture's ``from_pretrained`` looks for, with their shapes.

    The class is built on the meta device (no memory, no weights), and the head is every top-level
    child of the ``*ForSequenceClassification`` other than its backbone, so no model name is read.
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
    prefix = model.base_model_prefix
    return {f"{child}.{name}": tuple(p.shape) for child, mod in model.named_children() if child != prefix
            for name, p in mod.named_parameters()}


def _stored_shapes(d: Path) -> dict[str, tuple[int, ...]] | None:
    """Every tensor name → shape in the directory's safetensors files (None: no safetensors)."""
    from rmlib.models.safetensors_io import weight_entries

    try:
        return {name: tuple(e.shape) for name, e in weight_entries(d).items()}
    except (FileNotFoundError, ValueError):
        return None


def check_export_contract(model_dir: str | Path) -> list[str]:
    """Problems that keep ``model_dir`` from loading as rmlib scores it elsewhere (empty: none).

    Each problem names the broken field or file and the fix. Reads only JSON and safetensors
    headers (the architecture is instantiated on the meta device to learn the head's name).
    """
    d = Path(model_dir)
    problems: list[str] = []
    present = [f for f in ADAPTER_FILES if (d / f).exists()]
    if present:
        problems.append(f"{', '.join(present)}: adapter files in a final model; merge them with "
                        "`rmlib export ADAPTER_DIR --out DIR`")
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        return problems + [f"config.json: missing in {d}"]
    raw = json.loads(cfg_path.read_text())
    archs = raw.get("architectures") or []
    if not archs or not str(archs[0]).endswith("ForSequenceClassification"):
        problems.append(f"architectures: {archs} does not end in ForSequenceClassification; servers would load "
                        "another model class")
    id2label = {int(k): v for k, v in (raw.get("id2label") or {}).items()}
    n_labels = raw.get("num_labels", len(id2label) or None)
    if sorted(id2label) != list(range(len(id2label))) or not id2label:
        problems.append(f"id2label: {raw.get('id2label')} must name every head 0..n-1")
    elif n_labels is not None and n_labels != len(id2label):
        problems.append(f"num_labels: {n_labels} but id2label names {len(id2label)} heads")
    placeholders = [v for k, v in sorted(id2label.items()) if v == f"LABEL_{k}"]
    if placeholders:
        problems.append(f"id2label: {placeholders} are transformers placeholders, not attribute names")
    if raw.get("pad_token_id") is None:
        problems.append("pad_token_id: not set; sequence classifiers find each row's last token with it")
    if raw.get("problem_type") != "regression":
        problems.append(f"problem_type: {raw.get('problem_type')!r}, must be 'regression' (otherwise servers apply "
                        "a sigmoid/softmax to the rewards)")
    if "quantization_config" in raw:
        problems.append("quantization_config: left in config.json after a merge; the weights are not quantized")
    stored = _stored_shapes(d)
    head_is_decoder = False
    if stored is None:
        problems.append("model.safetensors: no safetensors weights (pickled weights are not loaded by rmlib)")
    elif archs and str(archs[0]).endswith("ForSequenceClassification"):
        try:
            from transformers import AutoConfig

            expected = _expected_head_keys(AutoConfig.from_pretrained(d))
        except (ValueError, KeyError, OSError) as e:
            problems.append(f"config.json: transformers cannot build {archs[0]} from it ({str(e).splitlines()[0]})")
            expected = {}
        head_is_decoder = any(k.startswith("score.") for k in expected)
        for key, shape in expected.items():
            if key not in stored:
                near = sorted(k for k in stored if k.endswith(key.split(".", 1)[-1]) and "layers" not in k)[:3]
                problems.append(f"{key}: the head weight {archs[0]} loads is not in the checkpoint"
                                + (f" (found {near})" if near else "") + "; it would be re-initialised at load")
            elif stored[key] != shape:
                problems.append(f"{key}: shape {list(stored[key])}, expected {list(shape)} for num_labels={n_labels}")
    tok_cfg = d / "tokenizer_config.json"
    if not tok_cfg.is_file() or not any((d / f).is_file() for f in TOKENIZER_FILES):
        problems.append(f"tokenizer: tokenizer_config.json and one of {TOKENIZER_FILES} must be saved beside the "
                        "weights")
    elif head_is_decoder:
        has_template = (d / "chat_template.jinja").is_file() or (d / "chat_template.json").is_file() \
            or bool(json.loads(tok_cfg.read_text()).get("chat_template"))
        if not has_template:
            problems.append("chat_template: not saved with the tokenizer; servers would format prompts differently")
    return problems


def require_export_contract(model_dir: str | Path) -> None:
    """Raise :class:`ExportContractError` listing every broken field of ``model_dir``."""
    problems = check_export_contract(model_dir)
    if problems:
        raise ExportContractError(f"{model_dir} breaks the export contract:\n  - " + "\n  - ".join(problems))


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
    arch = (raw.get("architectures") or ["sequence-classification"])[0]
    parts = ["---", "library_name: transformers", "pipeline_tag: text-classification", "tags:",
             "  - reward-model", "  - rmlib", "---", "", f"# Reward model `{name}`", "",
             f"A `{arch}` reward model trained with rmlib: {len(labels) or 1} output(s) "
             f"({', '.join(f'`{x}`' for x in labels) or '`reward`'}), read at the last token of "
             "prompt + response. The outputs are raw rewards (`problem_type: regression`); higher is better.", ""]
    if any((d / f).exists() for f in ADAPTER_FILES):
        parts += ["This directory is a LoRA adapter with its full reward head (rmlib loads it as is). Merge it "
                  f"into a plain model first for the lines below: `rmlib export {d} --out MERGED_DIR`.", ""]
    parts += ["## Use with transformers", "", "```python", "import torch",
              "from transformers import AutoModelForSequenceClassification, AutoTokenizer", "",
              f'tok = AutoTokenizer.from_pretrained("{name}")',
              f'model = AutoModelForSequenceClassification.from_pretrained("{name}")',
              'messages = [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"}]',
              "ids = tok.apply_chat_template(messages, return_tensors='pt', return_dict=True)",
              "with torch.no_grad():",
              "    rewards = model(**ids).logits[0]  # one value per output, in id2label order", "```", "",
              "With a pipeline, ask for the raw logits: `pipeline(\"text-classification\", model=..., "
              "function_to_apply=\"none\", top_k=None)`; its default applies a sigmoid or softmax, which squashes "
              "rewards into (0, 1) and turns close ones into ties.", "",
              "With rmlib (batched, length-sorted scoring): "
              f'`rmlib.RewardModel.from_pretrained("{name}").score(prompts, responses)`; '
              f"as an HTTP server for RL loops: `rmlib serve {name}` (see rmlib's docs/serving.md).", ""]
    parts += ["## Serve with vLLM or SGLang", "", "```bash",
              f"vllm serve {name} --runner pooling --convert classify   # POST /classify or /pooling",
              f"python -m sglang.launch_server --model-path {name} --is-embedding",
              "```", "",
              "Both load the directory as it is: `architectures` ends in `ForSequenceClassification`, "
              "`problem_type` is `regression` (raw logits, no sigmoid), `pad_token_id` is set, and the chat "
              "template is saved with the tokenizer. Format requests with that chat template, the "
              "assistant turn included.", ""]
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


def write_model_card(model_dir: str | Path, **kwargs: Any) -> Path:
    """Write (or rewrite) ``README.md`` in ``model_dir`` from :func:`model_card`."""
    return write_text(model_card(model_dir, **kwargs), Path(model_dir) / CARD)


# -- upload ------------------------------------------------------------------------------------

def push_model(model_dir: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
               revision: str | None = None, commit_message: str = "Upload reward model with rmlib") -> str:
    """Upload a model directory that meets the contract to the Hub; returns the commit URL.

    The directory is checked first (:func:`require_export_contract`), so nothing that other tools
    cannot load is uploaded. ``huggingface_hub`` creates the repository if needed and uploads the
    folder in one commit, as ``Trainer.push_to_hub`` in transformers/TRL does.
    """
    from huggingface_hub import HfApi

    require_export_contract(model_dir)
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
        from rmlib.models.lora import merge_adapter
        from rmlib.runtime import without_zero3_init

        merged = d.with_name(d.name + "-merged")
        with without_zero3_init():  # the main process alone loads the model, even inside a ZeRO-3 run
            merge_adapter(d, merged)
        write_model_card(merged, repo_id=push_to_hub, config_yaml=config_yaml, summary=summary)
        d = merged
    push_model(d, push_to_hub)
    return d
