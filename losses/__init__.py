"""Built-in preference losses, one module per loss family; importing this package registers them."""

from trl_plus.losses import (
    aot,
    apo,
    bco,
    cpo,
    discopop,
    dpo,
    exo,
    hinge,
    ipo,
    kto,
    nca,
    orpo,
    plackett_luce,
    sft,
    simpo,
    sppo,
)

__all__ = [
    "aot",
    "apo",
    "bco",
    "cpo",
    "discopop",
    "dpo",
    "exo",
    "hinge",
    "ipo",
    "kto",
    "nca",
    "orpo",
    "plackett_luce",
    "sft",
    "simpo",
    "sppo",
]
