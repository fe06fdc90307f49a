"""One step of PreferenceTrainer against TRL's DPOTrainer: same tiny model, data, seed and reference.

The reference is a perturbed copy of the policy, so the log-ratios are not zero at step 1 and every term of
every loss is exercised. On the `fused` path PreferenceTrainer runs TRL's own fused head, so only the loss formulas
differ (written independently, they round differently); the `chunked` path is trl-plus's own log-prob. Both must
give TRL's loss to 1e-5 relative and its gradients to 1e-5 of each tensor's largest entry.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from trl import DPOConfig, DPOTrainer

from trl_plus.synthetic import get_task
from trl_plus.testing import first_step, max_relative_difference, perturbed_copy
from trl_plus.trainers import PreferenceConfig, PreferenceTrainer

TRL_LOSS_TYPES = [
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sft",
    "sigmoid_norm",
]
# TRL's defaults, except where a loss needs a value: exo_pair rejects ε = 0, robust is plain DPO at ε = 0.
LABEL_SMOOTHING = {"exo_pair": 1e-3, "robust": 0.1}


@pytest.fixture(scope="module")
def pairs() -> Any:
    return get_task("transitive", seed=0).preference_dataset(8, seed=0)


def _steps(
    loss_type: str, llama: Path, pairs: Any, training_args: Callable[..., dict[str, Any]], path: str
) -> tuple[Any, Any]:
    smoothing = LABEL_SMOOTHING.get(loss_type, 0.0)
    trl = first_step(
        lambda: DPOTrainer(
            str(llama),
            ref_model=perturbed_copy(llama),
            args=DPOConfig(loss_type=[loss_type], label_smoothing=smoothing, **training_args()),
            train_dataset=pairs,
        )
    )
    ours = first_step(
        lambda: PreferenceTrainer(
            str(llama),
            ref_model=perturbed_copy(llama),
            args=PreferenceConfig(
                loss_type=[loss_type], beta=0.1, label_smoothing=smoothing, logprob_path=path, **training_args()
            ),
            train_dataset=pairs,
        )
    )
    return trl, ours


@pytest.mark.parametrize("loss_type", TRL_LOSS_TYPES)
@pytest.mark.parametrize("path", ["fused", "chunked"])
def test_one_step_matches_dpo_trainer(loss_type: str, path: str, llama: Path, pairs: Any, training_args: Any) -> None:
    trl, ours = _steps(loss_type, llama, pairs, training_args, path)
    assert ours.loss == pytest.approx(trl.loss, rel=1e-5, abs=1e-7)
    assert max_relative_difference(trl.grads, ours.grads) < 1e-5


@pytest.mark.parametrize(
    "options",
    [
        {"f_divergence_type": "forward_kl"},
        {"f_divergence_type": "js_divergence"},
        {"f_divergence_type": "alpha_divergence", "f_alpha_divergence_coef": 0.5},
        {"ld_alpha": 0.3},
        {"ld_alpha": 0.3, "f_divergence_type": "js_divergence"},
    ],
    ids=["forward_kl", "js", "alpha", "ld_alpha", "ld_alpha+js"],
)
@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_f_divergences_and_ld_alpha_match_dpo_trainer(
    options: dict[str, Any], loss_type: str, llama: Path, training_args: Any
) -> None:
    """f-DPO and LD-DPO change how log-probs become scores, before any loss: TRL's first step with them. The pairs
    have completions of different lengths, so LD-DPO's down-weighted tail is not empty."""
    from transformers import AutoTokenizer

    pairs = get_task("transitive", seed=0).preference_dataset(8, seed=0)
    # Answers of one task have one length; make every pair's lengths differ, the longer side alternating.
    longer = ["chosen", "rejected"]
    pairs = pairs.map(lambda row, i: {longer[i % 2]: row[longer[i % 2]] + " and a rope too"}, with_indices=True)
    tokenizer = AutoTokenizer.from_pretrained(llama)
    lengths = [
        (len(tokenizer(c)["input_ids"]), len(tokenizer(r)["input_ids"]))
        for c, r in zip(pairs["chosen"], pairs["rejected"], strict=True)
    ]
    assert all(c != r for c, r in lengths)
    trl = first_step(
        lambda: DPOTrainer(
            str(llama),
            ref_model=perturbed_copy(llama),
            args=DPOConfig(loss_type=[loss_type], **options, **training_args()),
            train_dataset=pairs,
        )
    )
    ours = first_step(
        lambda: PreferenceTrainer(
            str(llama),
            ref_model=perturbed_copy(llama),
            args=PreferenceConfig(loss_type=[loss_type], beta=0.1, **options, **training_args()),
            train_dataset=pairs,
        )
    )
    assert ours.loss == pytest.approx(trl.loss, rel=1e-5, abs=1e-7)
    assert max_relative_difference(trl.grads, ours.grads) < 1e-5
