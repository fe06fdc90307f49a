"""Loss state kept by a trainer between steps (`LossState`, e.g. BCO's running reward baseline).

One state object per stateful loss. Before each call of the loss, the state fills the hyperparameters it provides;
it moves only in training steps. It is written next to the optimizer state in every checkpoint and read back when
training resumes from one, so a resumed run continues from the same baseline.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from trl_plus.registry import LossSpec
from trl_plus.types import LogpsInput, LossOutput, LossState

if TYPE_CHECKING:
    from transformers import Trainer as _Base
else:
    _Base = object

LOSS_STATE_FILE = "trl_plus_loss_state.json"


class LossStateMixin(_Base):
    """Holds `loss_states`, calls losses with their state's hyperparameters, and checkpoints the states."""

    loss_states: dict[str, LossState]

    def _init_loss_states(self, specs: Sequence[LossSpec]) -> None:
        self.loss_states = {spec.name: spec.state() for spec in specs if spec.state is not None}

    def _call_loss(self, spec: LossSpec, loss_input: LogpsInput, kwargs: dict[str, Any], training: bool) -> LossOutput:
        state = self.loss_states.get(spec.name)
        if state is not None:
            provided = state.step(loss_input, {**spec.defaults(), **kwargs}, update=training, mean=self._process_mean)
            kwargs = {**kwargs, **provided}
        return spec(loss_input, **kwargs)

    def _process_mean(self, value: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(value.detach(), reduction="mean")  # type: ignore[no-any-return]

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if self.loss_states and self.args.should_save:
            with open(os.path.join(output_dir, LOSS_STATE_FILE), "w") as f:
                json.dump({name: state.state_dict() for name, state in self.loss_states.items()}, f, indent=2)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None or not self.loss_states:
            return
        path = os.path.join(checkpoint, LOSS_STATE_FILE)
        if not os.path.isfile(path):
            warnings.warn(
                f"The checkpoint {checkpoint} has no {LOSS_STATE_FILE}: the states of {sorted(self.loss_states)} "
                "start afresh.",
                stacklevel=2,
            )
            return
        with open(path) as f:
            saved = json.load(f)
        for name, state in self.loss_states.items():
            if name in saved:
                state.load_state_dict(saved[name])
