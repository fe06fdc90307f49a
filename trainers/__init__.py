"""Drop-in subclasses of TRL's trainers that take their loss from the registry.

`PreferenceTrainer` (over `DPOTrainer`) and `UnpairedPreferenceTrainer` (over `KTOTrainer`) land here; every
import of TRL internals they need stays in `trl_plus.trainers._compat`.
"""
