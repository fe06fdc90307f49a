"""Built-in preference losses, one module per loss family; importing this package registers them."""

from trl_plus.losses import dpo

__all__ = ["dpo"]
