"""Shared fixtures (offline environment, one tiny model per session) and the one list of slow tests.

The fast lane, ``pytest -m "not slow"``, runs every unit test in a few minutes on 2 CPU cores. A test
is ``slow`` when it trains end to end, launches the CLI around a training, or starts several
processes: every test marked ``distributed``, every test of :data:`SLOW_MODULES`, every test whose
node id (without parameters) is in :data:`SLOW_TESTS`, and any test marked ``slow`` in its own file.
Durations that decided the lists: ``pytest --durations=0`` over the whole suite (2 shared cores).
"""

import os

# under pytest-xdist (README runs `-n 2` on 2 cores) each worker, and every process a test starts, uses
# one thread: two workers of two torch threads each would oversubscribe the cores
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the feature cache of this test session, shared by its subprocesses, never the user's ~/.cache
os.environ.setdefault("RMLIB_CACHE", __import__("tempfile").mkdtemp(prefix="rmlib-test-cache-"))

import pytest  # noqa: E402

from rmlib.testing import build_tiny_llama  # noqa: E402

SLOW_MODULES = {
    "tests/test_examples.py",  # each example is a subprocess that trains or scores (15-30 s each)
}
"""Whole files of end-to-end tests (the distributed files are covered by their ``distributed`` mark)."""

SLOW_TESTS = {
    # three `--help` subprocesses of bench scripts (one imports torch): 24 s at load 8, 80 s at load 13
    "tests/test_bench_gpu_check.py::test_dry_run_on_cpu_checks_options_and_names_each_skip",
    # bench/serve_parity.py as a subprocess that builds a model and starts `rmlib serve` (8-15 s)
    "tests/test_bench_gpu_check.py::test_the_serve_parity_step_runs_on_cpu_and_reports_vllm_as_skipped",
    # the Arrow feature path: every format × template family, and the runs that train on features
    "tests/test_features.py::test_arrow_features_equal_the_per_example_path_token_for_token",  # 50-90
    "tests/test_features.py::test_mixed_sources_with_weights_and_named_eval_sets",  # 40
    "tests/test_features.py::test_prepare_builds_the_cache_a_training_run_then_hits",  # 20
    "tests/test_features.py::test_malformed_records_in_a_large_file_are_named_or_counted",  # 20
    "tests/test_robustness.py::test_a_second_fresh_run_into_a_used_directory_is_refused_unless_overwrite",  # 15
    "tests/test_robustness.py::test_resume_refuses_another_runs_checkpoint_and_one_past_the_end",  # 20
    "tests/test_robustness.py::test_cli_prints_rmlib_errors_as_one_line_with_status_2",  # 15, subprocesses
    "tests/test_trainer.py::test_resume_reads_no_pickle_so_a_planted_one_never_runs",  # 20
    "tests/test_trainer.py::test_warmup_steps_set_the_schedule_and_clash_with_a_ratio",  # 7, a 4-step training
    # end-to-end trainings (seconds measured on 2 shared cores)
    "tests/test_trainer.py::test_kill_during_training_then_resume_matches_uninterrupted_run",  # 118
    "tests/test_trainer.py::test_other_pairwise_losses_train",  # 20-45 per loss
    "tests/test_trainer.py::test_regression_training_and_two_stage_bt_init",  # 38
    "tests/test_trainer.py::test_bt_training_learns_and_evaluates_on_held_out_prompts",  # 26
    "tests/test_trainer.py::test_trackers_gradient_checkpointing_and_bf16_autocast",  # 7
    "tests/test_trainer.py::test_wandb_offline_run_writes_files",  # 6
    "tests/test_trainer.py::test_a_new_loss_with_a_new_label_trains_without_touching_the_trainer",  # 39
    "tests/test_shared_prompt.py::test_packed_and_shared_prompt_training_match_padded",  # 40
    "tests/test_lora.py::test_recommend_and_plan_cli",  # 21, CLI subprocesses
    "tests/test_lora.py::test_lora_trains_head_and_adapters_only_then_reloads_and_merges",  # 15
    "tests/test_lora.py::test_qlora_trains_saves_reloads_and_merges",  # 12
    "tests/test_lora.py::test_two_stage_init_with_lora",  # 10
    # these two need the LoRA training of the module fixture `lora_run` (15)
    "tests/test_lora.py::test_export_command_merges_without_the_merge_flag",
    "tests/test_lora.py::test_a_save_that_does_not_reproduce_the_model_fails_and_keeps_the_previous_output",
    # CLI subprocesses around a training run (the module fixture `trained`)
    "tests/test_cli.py::test_score_writes_rewards_in_input_order",  # 20 with the training
    "tests/test_cli.py::test_expo_and_expo_search",  # 17
    # the Pairwise Justifier: training runs of a tiny causal LM, generation, the judge feature cache
    "tests/test_justifier.py::test_training_learns_to_emit_the_right_label",  # 40 (80 steps + generation)
    "tests/test_justifier.py::test_lora_justifier_trains_adapters_and_reloads",  # 4-10
    "tests/test_justifier.py::test_judge_features_in_the_arrow_cache",  # 6
    "tests/test_justifier.py::test_generation_is_batched_left_padded_and_in_input_order",  # 5
    # evaluation CLI on trained models
    "tests/test_eval_cli.py::test_eval_cli_suite_end_to_end",
    "tests/test_eval_cli.py::test_multi_head_weights_and_per_head_audit",
    # every recipe's --smoke run end to end (a chain of rmlib subprocesses; seconds on 2 loaded cores)
    "tests/test_recipes.py::test_helpsteer2_preference_smoke",  # 461 wall on a loaded machine, 100 CPU s
    "tests/test_recipes.py::test_skywork_bt_smoke",  # 595 wall loaded, 133 CPU s
    "tests/test_recipes.py::test_diverging_preferences_smoke",  # 221 wall loaded, 143 CPU s
    "tests/test_recipes.py::test_lora_consumer_gpu_smoke",  # 146 wall loaded, 64 CPU s
    "tests/test_recipes.py::test_pairwise_justifier_smoke",  # 195 wall loaded, 45 CPU s
    "tests/test_docs_site.py::test_docs_site_builds_strict",  # 28 wall loaded, ~5 CPU s: mkdocs build of the site
    # curation: loading and running real models (seconds on 2 shared cores under load)
    "tests/test_curation.py::test_chain_dedup_decontaminate_filter_retrieve_on_the_samples",  # 15-47
    "tests/test_curation.py::test_retrieve_pairs_with_minilm",  # 22-32, MiniLM load
    "tests/test_retrieval_key.py::test_retrieve_with_the_prompt_attributes_key",  # 7, MiniLM load
    # LLM annotation and the gold set: subprocesses (a SIGKILLed annotate run, rmlib serve, the review CLI)
    "tests/test_annotate.py::test_sigkill_mid_run_then_resume_annotates_every_pair_exactly_once",  # 4-6
    "tests/test_annotate.py::test_end_to_end_against_rmlib_serve_of_a_tiny_causal_lm",  # 14
    "tests/test_review.py::test_review_cli_round_trip",  # 13
}
"""Node ids without parameters: a listed test is slow for every parameter."""


def _base_id(nodeid: str) -> str:
    return nodeid.split("[", 1)[0]


@pytest.hookimpl(tryfirst=True)  # before -m/-k deselect, so the whole collection is checked
def pytest_collection_modifyitems(config, items):
    slow = pytest.mark.slow
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        if (path in SLOW_MODULES or _base_id(item.nodeid) in SLOW_TESTS
                or item.get_closest_marker("distributed") is not None):
            item.add_marker(slow)
    # a renamed or deleted test must not silently drop out of the list: when a listed file was collected
    # in full (no node ids or -k on the command line), every listed test of it must exist
    if config.args_source != pytest.Config.ArgsSource.TESTPATHS and not all(
            "::" not in a for a in config.args):
        return
    collected = {_base_id(i.nodeid) for i in items}
    files = {i.nodeid.split("::", 1)[0] for i in items}
    stale = sorted(t for t in SLOW_TESTS if t.split("::", 1)[0] in files and t not in collected)
    stale += sorted(m for m in SLOW_MODULES if config.args_source == pytest.Config.ArgsSource.TESTPATHS
                    and m not in files)
    if stale:
        raise pytest.UsageError("tests/conftest.py lists slow tests that do not exist: " + ", ".join(stale))


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    """A random-init Llama reward model with one output and a trained BPE tokenizer."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(scope="session")
def tiny_llama_5(tmp_path_factory):
    """Five outputs named like HelpSteer2's attributes (a regression model)."""
    names = ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]
    return build_tiny_llama(tmp_path_factory.mktemp("tiny_llama_5"), num_labels=5, id2label=dict(enumerate(names)))
