"""Run TRL's own trainer tests with TRL's classes and with trl-plus's, offline, and print where they differ.

    python scripts/trl_conformance.py --trl-checkout PATH [--suites dpo,kto,reward] [-k EXPR] [--json out.json]

PATH is a TRL checkout (a work tree with `tests/`) or a git directory (a bare clone; `--ref` picks the commit,
default HEAD). Its `tests/test_dpo_trainer.py`, `tests/test_kto_trainer.py`, `tests/test_reward_trainer.py`, their
helpers and TRL's dataset scripts are copied to a temporary folder; nothing of TRL's is kept in this repo. Then:

1. Stand-in datasets: TRL's `scripts/generate_*_dataset.py` run with `push_to_hub` saving to the cache instead.
2. Stand-in models: a tiny random checkpoint for each Hub id the tests load (`STAND_INS`), with a tokenizer trained
   locally (`trl_plus.testing.build_tokenizer`), written in the Hub cache layout so `from_pretrained(hub_id)`
   finds it with `HF_HUB_OFFLINE=1`. Vision-language models have no stand-in: their tests fail with TRL's
   classes too and are reported as not comparable.
3. pytest runs the suites twice (deselecting TRL's `slow` and `low_priority` tests and `LEFT_OUT`): once as they
   are, once with `trl_conformance_plugin` rebinding `DPOTrainer`/`DPOConfig` → `PreferenceTrainer`/
   `PreferenceConfig`, `KTOTrainer`/`KTOConfig` → `UnpairedPreferenceTrainer`/`UnpairedPreferenceConfig` and
   `RewardTrainer`/`RewardConfig` → `RewardModelTrainer`/`RewardModelConfig` in the test modules.
4. Per trainer: tests run, passed with TRL, passed with trl-plus, and each test that passes with TRL but not with
   trl-plus, with the first line of its error; then the tests that fail with TRL's classes too (not comparable).

Stand-ins are cached under `--cache-dir` (default ~/.cache/trl-plus-conformance), so reruns start at step 3.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUITES = {
    "dpo": "tests/test_dpo_trainer.py",
    "kto": "tests/test_kto_trainer.py",
    "reward": "tests/test_reward_trainer.py",
}
TRAINER_NAMES = {"dpo": "DPOTrainer", "kto": "KTOTrainer", "reward": "RewardTrainer"}
HELPERS = ("tests/__init__.py", "tests/conftest.py", "tests/testing_utils.py", "tests/testing_constants.py")
DATASET_SCRIPTS = {  # Hub id -> TRL's script that builds it
    "trl-internal-testing/zen": "scripts/generate_zen_dataset.py",
    "trl-internal-testing/zen-image": "scripts/generate_zen_image_dataset.py",
    "trl-internal-testing/zen-multi-image": "scripts/generate_zen_multi_image_dataset.py",
    "trl-internal-testing/toolcall": "scripts/generate_toolcall_dataset.py",
    "trl-internal-testing/harmony": "scripts/generate_harmony_dataset.py",
}
REMOTE_CODE = "scripts/generate_tiny_models/for_causal_lm/_remote_code"

# Tests of the 2026-07-24 snapshot of TRL's main (1.10.0.dev0) that disagree with TRL 1.16 itself: they fail with
# TRL's own classes for a reason that is no difference of trl-plus's. Deselected, with the reason printed.
LEFT_OUT = {
    "tests/test_dpo_trainer.py::TestDPOTrainer::test_train_moe_peft_model": (
        "expects no 'ref' adapter for a LoRA on `target_parameters` (TRL issue 5222); DPOTrainer 1.16 adds one"
    ),
}

# Differences the comparison finds that are trl-plus's design, not bugs: test id prefix -> why. Printed beside the
# failures they explain; they still count as differences in the table.
_NAMES = "RewardModel names its parameters backbone.* and head.*: the test's names of TRL's parameters miss them"
KNOWN_DIFFERENCES = {
    "tests/test_dpo_trainer.py::TestDPOTrainer::test_train_with_wpo": (
        "WPO (use_weighting) needs full-vocabulary logits; PreferenceTrainer refuses it and says why"
    ),
    "tests/test_reward_trainer.py::TestRewardTrainer::test_trust_remote_code": (
        "RewardModelTrainer trains a RewardModel (backbone + head), not a *ForSequenceClassification class"
    ),
    "tests/test_reward_trainer.py::TestRewardTrainer::test_train_with_set_chat_template_from": _NAMES,  # model, path
    "tests/test_reward_trainer.py::TestRewardTrainer::test_train_dense_with_peft_config": _NAMES,
    "tests/test_reward_trainer.py::TestRewardTrainer::test_train_moe_with_peft_config": _NAMES,
    "tests/test_reward_trainer.py::TestRewardTrainer::test_train_peft_model": _NAMES,
    "tests/test_reward_trainer.py::TestRewardTrainer::test_train_with_peft_config_and_gradient_checkpointing": _NAMES,
}
_FP16 = (
    "fp16 weights at lr 0.1 overflow: TRL applies the inf gradients (every weight of the DPO model ends NaN, which "
    "the test's 'has changed' check accepts); trl-plus's finite guard stops before that step"
)
for _test in (
    "test_dpo_trainer.py::TestDPOTrainer",
    "test_kto_trainer.py::TestKTOTrainer",
    "test_reward_trainer.py::TestRewardTrainer",
):
    KNOWN_DIFFERENCES[f"tests/{_test}::test_train_model_dtype"] = _FP16


# Bump when the stand-ins change, so cached ones are rebuilt.
STAND_IN_VERSION = 2

# ChatML with tools, tool calls and reasoning ("thinking"), for every stand-in with a chat template. Written for
# the stand-ins; Qwen's and OpenAI's real templates differ in wording (no default system prompt here, for one).
# Tools are listed as `name(parameters): description`, not as their JSON schema: the stand-in tokenizers, trained on
# little text, spend about two tokens per word of JSON, and the tool-call tests cap sequences at 512 tokens.
CHATML_TEMPLATE = (
    "{%- if tools %}<|im_start|>system{{ '\\n' }}"
    "{%- if messages[0].role == 'system' %}{{ messages[0].content }}{{ '\\n\\n' }}{%- endif %}"
    "# Tools{{ '\\n' }}{%- for tool in tools %}{%- set spec = tool.function or tool %}"
    "{{ spec.name }}({{ (spec.parameters.properties or {}) | join(', ') }}): {{ spec.description }}{{ '\\n' }}"
    "{%- endfor %}<|im_end|>{{ '\\n' }}"
    "{%- elif messages[0].role == 'system' %}<|im_start|>system{{ '\\n' }}{{ messages[0].content }}<|im_end|>"
    "{{ '\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if not (loop.first and message.role == 'system') %}"
    "<|im_start|>{{ message.role }}{{ '\\n' }}"
    "{%- if message.thinking %}<think>{{ message.thinking }}</think>{{ '\\n' }}{%- endif %}"
    "{%- if message.content is string %}{{ message.content }}"
    "{%- elif message.content %}{%- for part in message.content %}{%- if part.type == 'text' %}{{ part.text }}"
    "{%- endif %}{%- endfor %}{%- endif %}"
    "{%- for call in message.tool_calls or [] %}<tool_call>{{ (call.function or call) | tojson }}</tool_call>"
    "{%- endfor %}<|im_end|>{{ '\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant{{ '\\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class StandIn:
    """A tiny random checkpoint standing in for a Hub id: `model_class` from transformers with `config` (sizes as
    small as TRL's own tiny models), and a tokenizer with `tokenizer`'s conventions from `trl_plus.testing`."""

    model_class: str | None  # None: a tokenizer only
    config: dict[str, Any] = field(default_factory=dict)
    tokenizer: str = "qwen2"
    chat_template: str | None = CHATML_TEMPLATE
    pad_token: bool = True  # False: no pad token, as Llama 3's and Pythia's tokenizers
    dtype: str = "bfloat16"
    remote_code: bool = False  # saved as TRL's `tiny-RemoteForCausalLM`: model_type "remote", code in the repo


_SMALL = {"hidden_size": 8, "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2}
_MOE = {"intermediate_size": 32, "moe_intermediate_size": 32, "num_experts_per_tok": 2}
STAND_INS: dict[str, StandIn] = {
    "trl-internal-testing/tiny-Qwen2ForCausalLM-2.5": StandIn("Qwen2ForCausalLM", {**_SMALL, "intermediate_size": 32}),
    "trl-internal-testing/tiny-Qwen2ForSequenceClassification-2.5": StandIn(
        "Qwen2ForSequenceClassification", {**_SMALL, "hidden_size": 16, "intermediate_size": 32, "num_labels": 1}
    ),
    "trl-internal-testing/tiny-Qwen3MoeForCausalLM": StandIn(
        "Qwen3MoeForCausalLM", {**_SMALL, **_MOE, "num_experts": 4}, tokenizer="qwen3"
    ),
    "trl-internal-testing/tiny-GptOssForCausalLM": StandIn(
        "GptOssForCausalLM",
        {**_SMALL, "intermediate_size": 32, "num_local_experts": 4, "num_experts_per_tok": 2, "head_dim": 2},
    ),
    "trl-internal-testing/tiny-Cohere2ForCausalLM": StandIn("Cohere2ForCausalLM", {**_SMALL, "intermediate_size": 32}),
    "trl-internal-testing/tiny-Glm4MoeForCausalLM": StandIn(
        "Glm4MoeForCausalLM", {**_SMALL, **_MOE, "head_dim": 2, "n_routed_experts": 4}
    ),
    "trl-internal-testing/tiny-NemotronHForCausalLM-nano": StandIn(
        "NemotronHForCausalLM",
        {
            "hidden_size": 16,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "intermediate_size": 32,
            "layers_block_type": ["mamba", "attention", "moe"],
            "mamba_num_heads": 8,
            "mamba_head_dim": 4,
            "mamba_n_groups": 1,
            "ssm_state_size": 16,
            "n_routed_experts": 4,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": 32,
            "moe_shared_expert_intermediate_size": 32,
            "use_mamba_kernels": False,
        },
    ),
    "trl-internal-testing/tiny-Olmo3ForCausalLM": StandIn("Olmo3ForCausalLM", {**_SMALL, "intermediate_size": 32}),
    "trl-internal-testing/tiny-Lfm2ForCausalLM": StandIn(
        "Lfm2ForCausalLM", {**_SMALL, "intermediate_size": 32, "full_attn_idxs": [1], "block_multiple_of": 8}
    ),
    "trl-internal-testing/tiny-Lfm2ForCausalLM-2.5": StandIn(
        "Lfm2ForCausalLM",
        {
            **_SMALL,
            "intermediate_size": 32,
            "layer_types": ["conv", "full_attention"],
            "block_auto_adjust_ff_dim": False,
        },
    ),
    "trl-internal-testing/tiny-LlamaForCausalLM-3.2": StandIn(
        "LlamaForCausalLM", {**_SMALL, "intermediate_size": 32}, tokenizer="llama", chat_template=None, pad_token=False
    ),
    "trl-internal-testing/tiny-RemoteForCausalLM": StandIn(
        "LlamaForCausalLM", {**_SMALL, "intermediate_size": 32}, tokenizer="llama", pad_token=False, remote_code=True
    ),
    "trl-internal-testing/tiny-GPTNeoXForCausalLM": StandIn(
        "GPTNeoXForCausalLM",
        {"hidden_size": 8, "num_attention_heads": 4, "num_hidden_layers": 2, "intermediate_size": 32},
        tokenizer="gpt2",
        chat_template=None,
        pad_token=False,
        dtype="float16",
    ),
    # `chat_template_path` reads its tokenizer (which reads its config too): a tiny model serves.
    "Qwen/Qwen3-4B": StandIn("Qwen3ForCausalLM", {**_SMALL, "intermediate_size": 32}, tokenizer="qwen3"),
}
# Columns the Hub's copy stores as JSON strings although TRL's script now writes them with the Json dtype: the
# toolcall dataset was pushed before that change, and `test_train_toolcall_data_as_json` parses the strings.
JSON_STRING_COLUMNS = {"trl-internal-testing/toolcall": ["tools"]}
# The Llama stand-ins keep trl_plus.testing's [INST] template (its `None` above means "the convention's own").


# ---- TRL's files ----------------------------------------------------------------------------------------------


class TrlSource:
    """Files of a TRL checkout: a work tree, or a git directory read at `ref`."""

    def __init__(self, path: str | Path, ref: str = "HEAD") -> None:
        self.path, self.ref = Path(path).expanduser(), ref
        self.worktree = (self.path / SUITES["dpo"]).is_file()
        if not self.worktree and not self._git("rev-parse", "--verify", f"{ref}^{{commit}}", check=False):
            raise SystemExit(
                f"--trl-checkout {str(path)!r} is neither a TRL work tree (no {SUITES['dpo']}) nor a git directory "
                f"with commit {ref!r}; clone https://github.com/huggingface/trl and pass its folder."
            )

    def _git(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(["git", "--git-dir", str(self._git_dir()), *args], capture_output=True, text=True)
        if check and result.returncode:
            raise SystemExit(f"git {' '.join(args)} failed in {self.path}: {result.stderr.strip()}")
        return result.stdout if result.returncode == 0 else ""

    def _git_dir(self) -> Path:
        return self.path / ".git" if (self.path / ".git").exists() else self.path

    def describe(self) -> str:
        if self.worktree:
            commit = self._git("rev-parse", "HEAD", check=False).strip() if (self.path / ".git").exists() else ""
            return f"{self.path} (work tree{', commit ' + commit[:12] if commit else ''})"
        commit = self._git("log", "-1", "--format=%H %cs", self.ref).strip()
        return f"{self.path} at {self.ref} (commit {commit})"

    def files(self, folder: str) -> list[str]:
        if self.worktree:
            root = self.path / folder
            return (
                sorted(str(p.relative_to(self.path)) for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
            )
        return self._git("ls-tree", "-r", "--name-only", self.ref, f"{folder}/", check=False).split()

    def read(self, relative: str) -> bytes | None:
        if self.worktree:
            path = self.path / relative
            return path.read_bytes() if path.is_file() else None
        result = subprocess.run(
            ["git", "--git-dir", str(self._git_dir()), "show", f"{self.ref}:{relative}"], capture_output=True
        )
        return result.stdout if result.returncode == 0 else None

    def copy(self, relatives: Iterable[str], dest: Path) -> list[str]:
        """Copy the files that exist to `dest`, keeping their paths; returns those that are missing."""
        missing = []
        for relative in relatives:
            content = self.read(relative)
            if content is None:
                missing.append(relative)
                continue
            (dest / relative).parent.mkdir(parents=True, exist_ok=True)
            (dest / relative).write_bytes(content)
        return missing


# ---- stand-in datasets ------------------------------------------------------------------------------------------

_GENERATE_DATASET = """
import json, runpy, sys
from pathlib import Path
import datasets
script, out, as_strings = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
def save(self, repo_id, config_name="default", **kwargs):
    data = self if isinstance(self, datasets.DatasetDict) else datasets.DatasetDict({"train": self})
    for column in as_strings:
        if column in data["train"].column_names:
            data = data.map(lambda row: {column: json.dumps(row[column])})
    data.save_to_disk(str(out / config_name))
datasets.DatasetDict.push_to_hub = datasets.Dataset.push_to_hub = save
sys.argv = [script, "--push_to_hub", "true"]
runpy.run_path(script, run_name="__main__")
"""


def build_datasets(tmp: Path, cache: Path, log: Any) -> Path:
    """Run TRL's dataset scripts (copied to `tmp`) with `push_to_hub` saving under `cache/datasets/<hub id>/`."""
    root = cache / "datasets"
    for hub_id, script in DATASET_SCRIPTS.items():
        path = tmp / script
        if not path.is_file():
            log(f"  {hub_id}: no {script} in the checkout; its tests will fail with both classes")
            continue
        digest = hashlib.sha256(path.read_bytes() + repr(JSON_STRING_COLUMNS.get(hub_id)).encode()).hexdigest()
        folder, stamp = root / hub_id, root / hub_id / ".script-sha256"
        if stamp.is_file() and stamp.read_text() == digest:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        log(f"  {hub_id}: running {script}")
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                _GENERATE_DATASET,
                str(path),
                str(folder),
                json.dumps(JSON_STRING_COLUMNS.get(hub_id, [])),
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode:
            tail = result.stderr.strip().splitlines()[-1:] or ["?"]
            log(f"  {hub_id}: {script} failed ({tail[0]}); its tests will fail with both classes")
            continue
        stamp.write_text(digest)
    return root


# ---- stand-in models --------------------------------------------------------------------------------------------


def _revision(hub_id: str, spec: StandIn, extra: bytes = b"") -> str:
    import transformers

    key = repr((STAND_IN_VERSION, hub_id, spec, transformers.__version__)).encode() + extra
    return hashlib.sha1(key).hexdigest()


def _init_tiny(model: Any) -> None:
    """Xavier-uniform linear layers, N(0, 0.02) embeddings, zero biases: gradients that move a hidden size of 8."""
    import torch
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
    del torch


def build_stand_in(hub_id: str, spec: StandIn, snapshot: Path, remote_code: dict[str, bytes]) -> None:
    import torch
    import transformers
    from transformers import GenerationConfig

    from trl_plus.testing import build_tokenizer

    tokenizer = build_tokenizer(spec.tokenizer)
    if spec.chat_template is not None:
        tokenizer.chat_template = spec.chat_template
    elif spec.tokenizer == "gpt2":
        tokenizer.chat_template = None
    if not spec.pad_token:
        tokenizer.pad_token = None
    snapshot.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(snapshot)
    if spec.model_class is None:
        return
    model_class = getattr(transformers, spec.model_class)
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    if tokenizer.pad_token_id is not None:
        ids["pad_token_id"] = tokenizer.pad_token_id
    config = model_class.config_class(vocab_size=len(tokenizer), **ids, **spec.config)
    torch.manual_seed(0)
    model = model_class(config)
    _init_tiny(model)
    model.to(getattr(torch, spec.dtype)).save_pretrained(snapshot)
    if "ForCausalLM" in spec.model_class:
        GenerationConfig(**ids).save_pretrained(snapshot)
    if spec.remote_code:  # TRL's RemoteForCausalLM is a LlamaForCausalLM under model_type "remote": same weights
        config_json = json.loads((snapshot / "config.json").read_text())
        config_json.update(
            model_type="remote",
            architectures=["RemoteForCausalLM"],
            auto_map={
                "AutoConfig": "configuration_remote.RemoteConfig",
                "AutoModel": "modeling_remote.RemoteModel",
                "AutoModelForCausalLM": "modeling_remote.RemoteForCausalLM",
                "AutoModelForSequenceClassification": "modeling_remote.RemoteForSequenceClassification",
            },
        )
        (snapshot / "config.json").write_text(json.dumps(config_json, indent=2))
        for name, content in remote_code.items():
            (snapshot / name).write_bytes(content)


def build_models(source_dir: Path, cache: Path, log: Any) -> Path:
    """Each stand-in in the Hub cache layout (`models--org--name/snapshots/<rev>`, `refs/main`) under `cache/hub`."""
    hub = cache / "hub"
    code_dir = source_dir / REMOTE_CODE
    remote_code = {p.name: p.read_bytes() for p in sorted(code_dir.glob("*.py"))} if code_dir.is_dir() else {}
    for hub_id, spec in STAND_INS.items():
        if spec.remote_code and not remote_code:
            log(f"  {hub_id}: no {REMOTE_CODE} in the checkout; its tests will fail with both classes")
            continue
        extra = b"".join(remote_code.values()) if spec.remote_code else b""
        revision = _revision(hub_id, spec, extra)
        repo = hub / ("models--" + hub_id.replace("/", "--"))
        snapshot = repo / "snapshots" / revision
        if (repo / "refs" / "main").is_file() and (repo / "refs" / "main").read_text() == revision:
            continue
        log(f"  {hub_id}: building a tiny {spec.model_class or 'tokenizer'}")
        shutil.rmtree(repo, ignore_errors=True)
        try:
            build_stand_in(hub_id, spec, snapshot, remote_code)
        except Exception as error:  # an architecture this transformers lacks: its tests fail with both classes
            log(f"  {hub_id}: could not build ({type(error).__name__}: {error}); its tests will fail with both")
            shutil.rmtree(repo, ignore_errors=True)
            continue
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(revision)
    return hub


# ---- running and comparing --------------------------------------------------------------------------------------


def run_pytest(tmp: Path, files: list[str], classes: str, env: dict[str, str], extra: list[str], log: Any) -> dict:
    report = tmp / f"report-{classes}.json"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "trl_conformance_plugin",
        "-p",
        "no:cacheprovider",
        "-c",
        str(tmp / "pytest.ini"),
        "--rootdir",
        str(tmp),
        "-m",
        "not slow and not low_priority",
        "-q",
        "--no-header",
        "-rN",
        "--tb=no",
        "--disable-warnings",
        *[f"--deselect={nodeid}" for nodeid in LEFT_OUT],
        *extra,
        *files,
    ]
    log(f"[{classes}] {' '.join(command[1:])}")
    env = {**env, "TRL_CONFORMANCE_CLASSES": classes, "TRL_CONFORMANCE_REPORT": str(report)}
    subprocess.run(command, cwd=tmp, env=env, check=False)
    if not report.is_file():
        raise SystemExit(f"pytest wrote no report with {classes}'s classes; see its output above.")
    return json.loads(report.read_text())


@dataclass
class SuiteResult:
    """One trainer's comparison. `run`: tests that ran (not skipped) with TRL's classes."""

    trainer: str
    run: int = 0
    pass_trl: int = 0
    pass_plus: int = 0
    differing: dict[str, str] = field(default_factory=dict)  # pass with TRL, not with trl-plus: first error line
    plus_only: dict[str, str] = field(default_factory=dict)  # pass with trl-plus, not with TRL: TRL's error
    not_comparable: dict[str, str] = field(default_factory=dict)  # fail with TRL's classes: TRL's error
    known: dict[str, str] = field(default_factory=dict)  # differing tests that `known` explains: why


def known_reason(nodeid: str, known: dict[str, str]) -> str | None:
    """The reason for the first prefix of `nodeid` in `known` (a parametrised test shares its function's)."""
    return next((reason for prefix, reason in known.items() if nodeid.startswith(prefix)), None)


PASSING = ("passed", "xfailed")  # an expected failure that fails as expected is a pass


def compare(
    trl: dict[str, dict], plus: dict[str, dict], suites: dict[str, str], known: dict[str, str] | None = None
) -> list[SuiteResult]:
    """Outcomes per test id (`{"outcome", "message"}`, as the plugin writes them) → one `SuiteResult` per suite;
    `known` (default `KNOWN_DIFFERENCES`) explains some differences."""
    known = KNOWN_DIFFERENCES if known is None else known
    results = []
    for name, path in suites.items():
        result = SuiteResult(TRAINER_NAMES.get(name, name))
        for nodeid in sorted(n for n in trl if n.split("::")[0] == path):
            ours = plus.get(nodeid, {"outcome": "missing", "message": "not run with trl-plus's classes"})
            theirs = trl[nodeid]
            if theirs["outcome"] == "skipped":
                continue
            result.run += 1
            trl_ok, plus_ok = theirs["outcome"] in PASSING, ours["outcome"] in PASSING
            result.pass_trl += trl_ok
            result.pass_plus += plus_ok
            short = nodeid.split("::", 1)[-1]
            if trl_ok and not plus_ok:
                result.differing[short] = ours["message"] or ours["outcome"]
                reason = known_reason(nodeid, known)
                if reason:
                    result.known[short] = reason
            elif plus_ok and not trl_ok:
                result.plus_only[short] = theirs["message"] or theirs["outcome"]
            if not trl_ok:
                result.not_comparable[short] = theirs["message"] or theirs["outcome"]
        results.append(result)
    return results


def render(results: list[SuiteResult], *, width: int = 160) -> str:
    def clip(text: str) -> str:
        text = " ".join(text.split())
        return text if len(text) <= width else text[: width - 1] + "…"

    from trl_plus.tables import format_table

    headers = ["trainer", "tests run", "pass with TRL", "pass with trl-plus", "pass with TRL, fail with trl-plus"]
    rows = [
        [r.trainer, *(str(n) for n in (r.run, r.pass_trl, r.pass_plus, len(r.differing), len(r.known)))]
        for r in results
    ]
    lines = format_table([*headers, "of which by design"], rows, markdown=True).splitlines()
    for r in results:
        if r.differing:
            lines += ["", f"{r.trainer}: pass with TRL's classes, fail with trl-plus's ({len(r.differing)})"]
            for test, message in r.differing.items():
                lines.append(f"  {test}: {clip(message)}")
                if test in r.known:
                    lines.append(f"    by design: {clip(r.known[test])}")
    for r in results:
        if r.plus_only:
            lines += ["", f"{r.trainer}: fail with TRL's classes, pass with trl-plus's ({len(r.plus_only)})"]
            lines += [f"  {test}: {clip(message)}" for test, message in r.plus_only.items()]
    for r in results:
        if r.not_comparable:
            lines += ["", f"{r.trainer}: not comparable, fail with TRL's classes ({len(r.not_comparable)})"]
            lines += [f"  {test}: {clip(message)}" for test, message in r.not_comparable.items()]
    if LEFT_OUT:
        lines += ["", f"Left out ({len(LEFT_OUT)}): they disagree with TRL 1.16 itself"]
        lines += [f"  {nodeid.split('::', 1)[1]}: {reason}" for nodeid, reason in LEFT_OUT.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trl-checkout", required=True, help="a TRL work tree or git directory with tests/")
    parser.add_argument("--ref", default="HEAD", help="commit to read from a git directory (default HEAD)")
    parser.add_argument("--suites", default="dpo,kto,reward", help="comma-separated: dpo, kto, reward")
    parser.add_argument("--cache-dir", default="~/.cache/trl-plus-conformance", help="stand-in models and datasets")
    parser.add_argument("-k", dest="keyword", help="pytest -k expression, to run a subset")
    parser.add_argument("--json", help="also write both runs' outcomes and the comparison to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per pytest run (default 1)")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    names = [s.strip() for s in args.suites.split(",") if s.strip()]
    unknown = sorted(set(names) - set(SUITES))
    if unknown:
        parser.error(f"--suites: unknown {unknown}; choose from {sorted(SUITES)}")
    suites = {name: SUITES[name] for name in names}
    source = TrlSource(args.trl_checkout, args.ref)
    cache = Path(args.cache_dir).expanduser()
    tmp = Path(tempfile.mkdtemp(prefix="trl-conformance-"))
    try:
        log(f"TRL tests from {source.describe()}")
        needed = [*HELPERS, *suites.values(), *DATASET_SCRIPTS.values(), *source.files("tests/data")]
        missing = source.copy([*needed, *source.files(REMOTE_CODE)], tmp)
        if any(path in missing for path in suites.values()):
            raise SystemExit(f"the checkout lacks {[p for p in suites.values() if p in missing]}")
        (tmp / "pytest.ini").write_text("[pytest]\n")  # keeps this repo's pytest settings out
        log(f"Stand-ins in {cache} (built once)")
        datasets_root = build_datasets(tmp, cache, log)
        hub = build_models(tmp, cache, log)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH")])
            ),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_HUB_CACHE": str(hub),
            "HF_DATASETS_CACHE": str(tmp / "datasets-cache"),
            "HF_MODULES_CACHE": str(tmp / "modules-cache"),
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": str(args.threads),
            "TRL_CONFORMANCE_DATASETS": str(datasets_root),
        }
        extra = ["-k", args.keyword] if args.keyword else []
        files = list(suites.values())
        trl = run_pytest(tmp, files, "trl", env, extra, log)
        plus = run_pytest(tmp, files, "trl-plus", env, extra, log)
        results = compare(trl, plus, suites)
        import trl as trl_package

        print(f"TRL's tests from {source.describe()}; classes from trl {trl_package.__version__} and trl-plus")
        print(render(results))
        if args.json:
            Path(args.json).write_text(
                json.dumps({"trl": trl, "trl-plus": plus, "results": [r.__dict__ for r in results]}, indent=1)
            )
    finally:
        if args.keep:
            log(f"Kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
