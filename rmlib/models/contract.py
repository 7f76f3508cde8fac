"""The export contract of a final rmlib model: what a directory needs so that other tools load it as rmlib scores it.

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
from pathlib import Path

from rmlib.models.distribution import DISTRIBUTION_KEY, distribution_from_config

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.txt", "vocab.json", "spiece.model")


class ExportContractError(ValueError):
    """A model directory that other tools would not load or score as rmlib does."""


def expected_head_keys(config) -> dict[str, tuple[int, ...]]:
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


def _read_final_dir(d: Path) -> tuple[list[str], dict | None]:
    """What both contracts check first: no adapter files left, and the config.json (None if missing)."""
    problems: list[str] = []
    present = [f for f in ADAPTER_FILES if (d / f).exists()]
    if present:
        problems.append(f"{', '.join(present)}: adapter files in a final model; merge them with "
                        "`rmlib export ADAPTER_DIR --out DIR`")
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        return problems + [f"config.json: missing in {d}"], None
    return problems, json.loads(cfg_path.read_text())


def check_export_contract(model_dir: str | Path) -> list[str]:
    """Problems that keep ``model_dir`` from loading as rmlib scores it elsewhere (empty: none).

    Each problem names the broken field or file and the fix. Reads only JSON and safetensors
    headers (the architecture is instantiated on the meta device to learn the head's name).
    """
    d = Path(model_dir)
    problems, raw = _read_final_dir(d)
    if raw is None:
        return problems
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
    if DISTRIBUTION_KEY in raw:  # a distributional head: the declaration must parse and fit the outputs
        from types import SimpleNamespace

        try:
            distribution_from_config(SimpleNamespace(**{DISTRIBUTION_KEY: raw[DISTRIBUTION_KEY],
                                                        "num_labels": n_labels}))
        except (TypeError, ValueError) as e:
            problems.append(f"{DISTRIBUTION_KEY}: {e}")
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

            expected = expected_head_keys(AutoConfig.from_pretrained(d))
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


# -- a generative judge (the Pairwise Justifier's causal LM) -------------------------------------

def _output_layer_keys(config) -> list[str]:
    """Checkpoint names under which the architecture's output layer (``lm_head``) may be stored: the
    output weight's own name and, when tied to the input embeddings, theirs (built on the meta device)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    out = model.get_output_embeddings().weight
    return [name for name, p in model.named_parameters(remove_duplicate=False) if p is out]


def check_generative_contract(model_dir: str | Path) -> list[str]:
    """Problems that keep ``model_dir`` from loading as a plain causal LM (empty: none).

    The contract of an exported Pairwise Justifier: ``architectures`` ends in ``ForCausalLM`` (the
    class ``transformers``' ``AutoModelForCausalLM``, vLLM and SGLang generate with); no adapter files
    and no ``quantization_config`` (a merged model is dense); ``pad_token_id`` set (batched generation
    pads with it); safetensors weights holding the output layer (a reward model relabelled as a causal
    LM lacks it); and the tokenizer saved beside the weights.
    """
    d = Path(model_dir)
    problems, raw = _read_final_dir(d)
    if raw is None:
        return problems
    archs = raw.get("architectures") or []
    causal = bool(archs) and str(archs[0]).endswith("ForCausalLM")
    if not causal:
        problems.append(f"architectures: {archs} does not end in ForCausalLM; a generative judge must load as a "
                        "causal LM")
    if raw.get("pad_token_id") is None:
        problems.append("pad_token_id: not set; batched generation pads with it")
    if "quantization_config" in raw:
        problems.append("quantization_config: left in config.json after a merge; the weights are not quantized")
    stored = _stored_shapes(d)
    if stored is None:
        problems.append("model.safetensors: no safetensors weights (pickled weights are not loaded by rmlib)")
    elif causal:
        try:
            from transformers import AutoConfig

            keys = _output_layer_keys(AutoConfig.from_pretrained(d))
        except (ValueError, KeyError, OSError) as e:
            problems.append(f"config.json: transformers cannot build {archs[0]} from it ({str(e).splitlines()[0]})")
            keys = None
        if keys is not None and not any(k in stored for k in keys):
            problems.append(f"{keys[0]}: the output layer {archs[0]} loads is not in the checkpoint; it would be "
                            "initialised at random at load")
    if not (d / "tokenizer_config.json").is_file() or not any((d / f).is_file() for f in TOKENIZER_FILES):
        problems.append(f"tokenizer: tokenizer_config.json and one of {TOKENIZER_FILES} must be saved beside the "
                        "weights")
    return problems


def require_generative_contract(model_dir: str | Path) -> None:
    """Raise :class:`ExportContractError` listing every broken field of a generative judge's ``model_dir``."""
    problems = check_generative_contract(model_dir)
    if problems:
        raise ExportContractError(f"{model_dir} breaks the generative-judge export contract:\n  - "
                                  + "\n  - ".join(problems))
