"""trl-plus: pluggable preference losses, reward heads and an offline testbed on top of Hugging Face TRL."""

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from trl_plus.registry import (
    DuplicateNameError,
    Hyperparameter,
    LossSpec,
    PluginLoadWarning,
    RewardHeadSpec,
    UnknownNameError,
    get_loss,
    get_reward_head,
    list_losses,
    list_reward_heads,
    plugin_errors,
    register_loss,
    register_reward_head,
)
from trl_plus.types import InputKind, LossOutput, OnlineLogps, PairedLogps, RankedLogps, UnpairedLogps

try:
    __version__ = version("trl-plus")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

# Installs map the checkout's top-level `losses/` and `trainers/` inside this package (setuptools package-dir).
# Run from the checkout's root (`python -m trl_plus.train`, `accelerate launch -m ...`), Python imports this
# folder instead of the install, so let the package find its two siblings there as well.
_CHECKOUT = Path(__file__).resolve().parent.parent
if not (Path(__file__).parent / "trainers").exists() and all(
    (_CHECKOUT / name / "__init__.py").exists() for name in ("losses", "trainers")
):
    __path__.append(str(_CHECKOUT))


def __getattr__(name: str) -> object:
    # `RewardModel` pulls in transformers and TRL; load it on first use so `import trl_plus` stays light.
    if name in ("RewardModel", "RewardFunction"):
        from trl_plus import reward_model

        return getattr(reward_model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DuplicateNameError",
    "Hyperparameter",
    "InputKind",
    "LossOutput",
    "LossSpec",
    "OnlineLogps",
    "PairedLogps",
    "PluginLoadWarning",
    "RankedLogps",
    "RewardFunction",
    "RewardHeadSpec",
    "RewardModel",
    "UnknownNameError",
    "UnpairedLogps",
    "__version__",
    "get_loss",
    "get_reward_head",
    "list_losses",
    "list_reward_heads",
    "plugin_errors",
    "register_loss",
    "register_reward_head",
]
