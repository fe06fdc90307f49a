"""Drop-in subclasses of TRL's trainers that take their loss from the registry.

Every import of TRL internals they need stays in `trl_plus.trainers._compat`.
"""

from trl_plus.trainers.preference import DataCollatorForRankedPreference, PreferenceConfig, PreferenceTrainer
from trl_plus.trainers.unpaired import UnpairedPreferenceConfig, UnpairedPreferenceTrainer, unpaired_view

__all__ = [
    "Critic",
    "DataCollatorForRankedPreference",
    "NashConfig",
    "NashTrainer",
    "PPOConfig",
    "PPOTrainer",
    "PreferenceConfig",
    "PreferenceTrainer",
    "RewardModelConfig",
    "RewardModelTrainer",
    "UnpairedPreferenceConfig",
    "UnpairedPreferenceTrainer",
    "unpaired_view",
]


def __getattr__(name: str) -> object:
    # `trl_plus.reward_model` imports `_compat` from this package, and the reward trainer imports `reward_model`:
    # loading the reward trainer on first use keeps either import order working.
    if name in ("RewardModelConfig", "RewardModelTrainer"):
        from trl_plus.trainers import reward

        return getattr(reward, name)
    if name in ("Critic", "PPOConfig", "PPOTrainer"):  # they take reward models too: the same import order
        from trl_plus.trainers import ppo

        return getattr(ppo, name)
    if name in ("NashConfig", "NashTrainer"):  # preference sources include reward models: the same import order
        from trl_plus.trainers import nash

        return getattr(nash, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
