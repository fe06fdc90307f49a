"""Drop-in subclasses of TRL's trainers that take their loss from the registry.

Every import of TRL internals they need stays in `trl_plus.trainers._compat`.
"""

from trl_plus.trainers.preference import DataCollatorForRankedPreference, PreferenceConfig, PreferenceTrainer
from trl_plus.trainers.unpaired import UnpairedPreferenceConfig, UnpairedPreferenceTrainer, unpaired_view

__all__ = [
    "DataCollatorForRankedPreference",
    "PreferenceConfig",
    "PreferenceTrainer",
    "UnpairedPreferenceConfig",
    "UnpairedPreferenceTrainer",
    "unpaired_view",
]
