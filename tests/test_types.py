from __future__ import annotations

import pytest
import torch

from trl_plus import LossOutput, PairedLogps, RankedLogps, UnpairedLogps


def paired(batch: int = 3, **overrides: object) -> PairedLogps:
    fields: dict[str, object] = {
        "chosen_logps": torch.full((batch,), -1.0),
        "rejected_logps": torch.full((batch,), -2.0),
        "chosen_lengths": torch.full((batch,), 4),
        "rejected_lengths": torch.full((batch,), 5),
        "ref_chosen_logps": torch.full((batch,), -1.5),
        "ref_rejected_logps": torch.full((batch,), -1.5),
    }
    fields.update(overrides)
    return PairedLogps(**fields)  # type: ignore[arg-type]


def test_paired_accepts_a_well_formed_batch() -> None:
    lp = paired()
    assert lp.batch_size == 3 and lp.has_reference and lp.kind == "paired"


def test_paired_without_reference() -> None:
    lp = paired(ref_chosen_logps=None, ref_rejected_logps=None)
    assert not lp.has_reference


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"rejected_logps": torch.zeros(4)}, r"`rejected_logps` has shape \(4,\), expected \(3,\)"),
        ({"chosen_lengths": torch.tensor([4, 0, 4])}, r"`chosen_lengths` must be positive token counts, found 0"),
        ({"ref_rejected_logps": None}, r"all-or-nothing.*ref_rejected_logps"),
        ({"ref_chosen_logps": torch.zeros(2)}, r"`ref_chosen_logps` has shape \(2,\)"),
        (
            {"chosen_logps": torch.zeros(3, 2)},
            r"`chosen_logps` must be a 1-D tensor of shape \[B\], got shape \(3, 2\)",
        ),
        ({"rejected_logps": torch.zeros(3, dtype=torch.long)}, r"`rejected_logps` must hold floating-point"),
    ],
)
def test_paired_rejects_malformed_batches(overrides: dict[str, object], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        paired(**overrides)


def test_unpaired_validation() -> None:
    ok = UnpairedLogps(
        logps=torch.zeros(2),
        lengths=torch.tensor([1, 2]),
        desirable=torch.tensor([True, False]),
        ref_logps=torch.zeros(2),
        kl_logps=torch.zeros(5),
        ref_kl_logps=torch.zeros(5),
    )
    assert ok.has_reference and ok.kind == "unpaired"
    with pytest.raises(TypeError, match="`desirable` must be a bool tensor"):
        UnpairedLogps(logps=torch.zeros(2), lengths=torch.tensor([1, 2]), desirable=torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="all-or-nothing"):
        UnpairedLogps(
            logps=torch.zeros(2),
            lengths=torch.tensor([1, 2]),
            desirable=torch.tensor([True, False]),
            kl_logps=torch.zeros(5),
        )


def test_ranked_validation() -> None:
    mask = torch.tensor([[True, True, True], [True, True, False]])
    lengths = torch.tensor([[3, 2, 1], [2, 2, 0]])  # the missing entry may have length 0
    ok = RankedLogps(logps=torch.zeros(2, 3), lengths=lengths, mask=mask)
    assert ok.batch_size == 2 and not ok.has_reference
    with pytest.raises(ValueError, match=r"row 1 is \[True, False, True\]: present completions must come first"):
        RankedLogps(
            logps=torch.zeros(2, 3),
            lengths=lengths.clamp(min=1),
            mask=torch.tensor([[True, True, True], [True, False, True]]),
        )
    with pytest.raises(ValueError, match="`lengths` must be positive"):
        RankedLogps(logps=torch.zeros(2, 3), lengths=torch.tensor([[3, 0, 1], [2, 2, 0]]), mask=mask)
    with pytest.raises(ValueError, match="must be a 2-D tensor"):
        RankedLogps(logps=torch.zeros(3), lengths=torch.ones(3), mask=torch.ones(3, dtype=torch.bool))


def test_loss_output_detaches_rewards_and_requires_unreduced_losses() -> None:
    x = torch.ones(2, requires_grad=True)
    out = LossOutput(losses=x * 2, chosen_rewards=x * 3, rejected_rewards=x * 4)
    assert out.losses.requires_grad
    assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="unreduced"):
        LossOutput(losses=(x * 2).mean())
