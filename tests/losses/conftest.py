from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from trl_plus import PairedLogps


@pytest.fixture
def pair() -> Callable[..., PairedLogps]:
    """The hand-picked pair used by the formula tests: c = −1, r = −3, c_ref = r_ref = −2, |y_c| = 2, |y_r| = 4,
    so the log-ratios are x_c = 1, x_r = −1 and the DPO margin is d = 2."""

    def make(**overrides: torch.Tensor) -> PairedLogps:
        fields = {
            "chosen_logps": torch.tensor([-1.0]),
            "rejected_logps": torch.tensor([-3.0]),
            "chosen_lengths": torch.tensor([2]),
            "rejected_lengths": torch.tensor([4]),
            "ref_chosen_logps": torch.tensor([-2.0]),
            "ref_rejected_logps": torch.tensor([-2.0]),
        }
        fields.update(overrides)
        return PairedLogps(**fields)

    return make
