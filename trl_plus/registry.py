"""Registries of preference losses and reward-model heads, open to third-party packages.

Built-in entries register on first lookup. Third-party packages add theirs through the entry-point groups
`trl_plus.losses` and `trl_plus.reward_heads`, also loaded on first lookup; an entry point may name a module
(whose import registers with the decorators) or a function/class (registered under the entry point's name if it
is not decorated). A plugin that fails to load is reported with its distribution's name and skipped. Setting
`TRL_PLUS_DISABLE_PLUGIN_AUTOLOAD=1` turns entry-point loading off. A `"package.module:function"` string works
as a loss name, for quick experiments.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import typing
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any, Generic, TypeVar, get_args

from trl_plus.types import (
    InputKind,
    LogpsInput,
    LossOutput,
    LossState,
    OnlineLogps,
    PairedLogps,
    RankedLogps,
    UnpairedLogps,
)

DISABLE_AUTOLOAD_ENV = "TRL_PLUS_DISABLE_PLUGIN_AUTOLOAD"
LOSS_GROUP = "trl_plus.losses"
REWARD_HEAD_GROUP = "trl_plus.reward_heads"
INPUT_TYPES: dict[InputKind, type] = {
    "paired": PairedLogps,
    "unpaired": UnpairedLogps,
    "ranked": RankedLogps,
    "online": OnlineLogps,
}
_SPEC_ATTR = "__trl_plus_spec__"


class UnknownNameError(ValueError):
    """A name that is neither registered nor an alias."""


class DuplicateNameError(ValueError):
    """A name or alias registered twice."""


class PluginLoadWarning(UserWarning):
    """An entry-point plugin failed to load and was skipped."""


class _Required:
    def __repr__(self) -> str:
        return "<required>"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Hyperparameter:
    """A keyword-only argument of a registered function: its name, default and type annotation."""

    name: str
    default: Any
    annotation: str

    def __str__(self) -> str:
        return self.name if self.default is REQUIRED else f"{self.name}={self.default!r}"


@dataclass(frozen=True)
class PluginError:
    """An entry point that raised while loading."""

    distribution: str
    entry_point: str
    error: BaseException

    def __str__(self) -> str:
        return f"{self.entry_point} from distribution {self.distribution!r}: {type(self.error).__name__}: {self.error}"


@dataclass(frozen=True)
class _Spec:
    name: str
    target: Callable[..., Any]
    input_kind: InputKind
    aliases: tuple[str, ...] = ()
    paper: str | None = None
    hyperparameters: tuple[Hyperparameter, ...] = ()
    origin: str = ""

    @property
    def what(self) -> str:
        raise NotImplementedError

    def check_kwargs(self, kwargs: dict[str, Any]) -> None:
        """Raise if `kwargs` names a hyperparameter this entry does not take, or leaves out a required one."""
        known = {hp.name for hp in self.hyperparameters}
        for key in kwargs:
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                takes = ", ".join(str(hp) for hp in self.hyperparameters) or "no hyperparameters"
                raise TypeError(
                    f"The {self.what} {self.name!r} takes no hyperparameter {key!r}; it takes: {takes}.{hint}"
                )
        missing = [hp.name for hp in self.hyperparameters if hp.default is REQUIRED and hp.name not in kwargs]
        if missing:
            raise TypeError(f"The {self.what} {self.name!r} needs a value for {missing}.")

    def defaults(self) -> dict[str, Any]:
        return {hp.name: hp.default for hp in self.hyperparameters if hp.default is not REQUIRED}


@dataclass(frozen=True)
class LossSpec(_Spec):
    """A registered loss: `spec(inputs, **hyperparameters) -> LossOutput`, with its input checked first."""

    requires_reference: bool = True
    state: Callable[[], LossState] | None = None

    @property
    def what(self) -> str:
        return "loss"

    @property
    def state_provides(self) -> tuple[str, ...]:
        """Hyperparameters the trainer fills from the loss's state, not from the user."""
        return () if self.state is None else tuple(self.state().provides)

    def __call__(self, inputs: LogpsInput, **kwargs: Any) -> LossOutput:
        expected = INPUT_TYPES[self.input_kind]
        if not isinstance(inputs, expected):
            raise TypeError(
                f"The loss {self.name!r} takes {self.input_kind} input ({expected.__name__}), "
                f"got {type(inputs).__name__}."
            )
        if self.requires_reference and not inputs.has_reference:
            raise ValueError(
                f"The loss {self.name!r} needs reference log-probs, but the {expected.__name__} has none. "
                "Compute them with the reference model, or pick a reference-free loss."
            )
        self.check_kwargs(kwargs)
        output = self.target(inputs, **kwargs)
        if not isinstance(output, LossOutput):
            raise TypeError(f"The loss {self.name!r} returned {type(output).__name__}, expected LossOutput.")
        if output.losses.shape[0] != inputs.batch_size:
            raise ValueError(
                f"The loss {self.name!r} returned {output.losses.shape[0]} losses for a batch of {inputs.batch_size}."
            )
        return output


@dataclass(frozen=True)
class RewardHeadSpec(_Spec):
    """A registered reward head: `spec.build(*structural_args, **hyperparameters)` makes the module."""

    @property
    def what(self) -> str:
        return "reward head"

    def build(self, *args: Any, **kwargs: Any) -> Any:
        self.check_kwargs(kwargs)
        return self.target(*args, **kwargs)


SpecT = TypeVar("SpecT", bound=_Spec)


def _normalise(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"A registry name must be a non-empty string, got {name!r}.")
    if ":" in name or any(ch.isspace() for ch in name):
        raise ValueError(f"A registry name may not contain ':' or whitespace, got {name!r}.")
    return name.lower()


def _keyword_hyperparameters(signature: inspect.Signature, hints: dict[str, Any]) -> tuple[Hyperparameter, ...]:
    hyperparameters = []
    for param in signature.parameters.values():
        if param.kind is inspect.Parameter.KEYWORD_ONLY:
            annotation = hints.get(param.name, param.annotation)
            text = "" if annotation is inspect.Parameter.empty else getattr(annotation, "__name__", str(annotation))
            default = REQUIRED if param.default is inspect.Parameter.empty else param.default
            hyperparameters.append(Hyperparameter(param.name, default, text))
    return tuple(hyperparameters)


def _type_hints(target: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    except Exception:  # unresolvable forward references: fall back to the raw annotations
        return {}


def _infer_input_kind(first: inspect.Parameter, hints: dict[str, Any]) -> InputKind | None:
    annotation = hints.get(first.name, first.annotation)
    candidates = get_args(annotation) or (annotation,)
    for kind, cls in INPUT_TYPES.items():
        if any(candidate is cls or candidate == cls.__name__ for candidate in candidates):
            return kind
    return None


class Registry(Generic[SpecT]):
    """Names → specs, with aliases, lazy built-ins, entry-point plugins and helpful lookup errors."""

    def __init__(self, what: str, plural: str, group: str, builtin_modules: tuple[str, ...] = ()) -> None:
        self.what = what
        self.plural = plural
        self.group = group
        self.builtin_modules = builtin_modules
        self._entries: dict[str, SpecT] = {}
        self._aliases: dict[str, str] = {}
        self._builtins_loaded = False
        self._plugins_loaded = False
        self.plugin_errors: list[PluginError] = []

    # -- registration ---------------------------------------------------------------------------------------
    def add(self, spec: SpecT) -> SpecT:
        self._load_builtins()  # so a user's entry can never shadow a built-in registered later
        for key in (spec.name, *spec.aliases):
            owner = self._entries.get(key) or self._entries.get(self._aliases.get(key, ""))
            if owner is not None:
                role = "name" if key == owner.name else f"alias of {owner.name!r}"
                raise DuplicateNameError(
                    f"Cannot register the {self.what} {spec.name!r} from {spec.origin}: {key!r} is already the {role} "
                    f"registered from {owner.origin}. Pick another name."
                )
        if len(set(spec.aliases) | {spec.name}) != len(spec.aliases) + 1:
            raise DuplicateNameError(f"The {self.what} {spec.name!r} lists a name twice in {spec.aliases}.")
        self._entries[spec.name] = spec
        for alias in spec.aliases:
            self._aliases[alias] = spec.name
        return spec

    def remove(self, name: str) -> None:
        """Forget an entry and its aliases (for tests and interactive sessions)."""
        spec = self._entries.pop(self._canonical(name))
        for alias in spec.aliases:
            self._aliases.pop(alias, None)

    # -- lookup -----------------------------------------------------------------------------------------------
    def get(self, name: str) -> SpecT:
        self.load()
        key = self._canonical(name)
        if key in self._entries:
            return self._entries[key]
        raise UnknownNameError(self._unknown_message(name))

    def __contains__(self, name: object) -> bool:
        self.load()
        return isinstance(name, str) and self._canonical(name) in self._entries

    def __iter__(self) -> Iterator[SpecT]:
        return iter(self.list())

    def list(self) -> list[SpecT]:
        self.load()
        return [self._entries[name] for name in sorted(self._entries)]

    def _canonical(self, name: str) -> str:
        if not isinstance(name, str):
            raise TypeError(f"A {self.what} name must be a string, got {type(name).__name__}: {name!r}.")
        key = name.lower()
        return self._aliases.get(key, key)

    def _unknown_message(self, name: str) -> str:
        known = sorted(self._entries)
        close = difflib.get_close_matches(name.lower(), sorted(set(known) | set(self._aliases)), n=3, cutoff=0.6)
        lines = [f"Unknown {self.what} {name!r}."]
        if close:
            lines.append("Did you mean " + " or ".join(repr(c) for c in close) + "?")
        lines.append(f"Registered {self.plural}: " + (", ".join(known) or "none") + ".")
        if self.plugin_errors:
            lines.append("Plugins that failed to load: " + "; ".join(str(e) for e in self.plugin_errors) + ".")
        return " ".join(lines)

    # -- loading ----------------------------------------------------------------------------------------------
    def load(self) -> None:
        self._load_builtins()
        self._load_plugins()

    def _load_builtins(self) -> None:
        if self._builtins_loaded:
            return
        self._builtins_loaded = True
        for module in self.builtin_modules:
            importlib.import_module(module)

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        if os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
            return
        for entry_point in entry_points(group=self.group):
            distribution = entry_point.dist.name if entry_point.dist is not None else "<unknown distribution>"
            try:
                self._adopt(entry_point.load(), entry_point.name, f"{distribution} (entry point {entry_point.name!r})")
            except Exception as error:  # a broken plugin must not take the others down
                failure = PluginError(distribution, f"{entry_point.name} = {entry_point.value}", error)
                self.plugin_errors.append(failure)
                warnings.warn(f"Skipped a {self.what} plugin that failed to load: {failure}", PluginLoadWarning, 2)

    def _adopt(self, obj: Any, name: str, origin: str) -> None:
        if isinstance(obj, ModuleType) or getattr(obj, _SPEC_ATTR, None) is not None:
            return  # importing it registered what it holds
        if not callable(obj):
            raise TypeError(f"the entry point names {type(obj).__name__}, expected a module, function or class")
        self.add(self._spec_for(obj, name, origin))

    def _spec_for(self, obj: Callable[..., Any], name: str, origin: str) -> SpecT:
        raise NotImplementedError


class _LossRegistry(Registry[LossSpec]):
    def _spec_for(self, obj: Callable[..., Any], name: str, origin: str) -> LossSpec:
        return make_loss_spec(obj, name, origin=origin)

    def resolve(self, name: str) -> LossSpec:
        """`get`, plus the `"package.module:function"` form for unregistered experiments."""
        if ":" in name:
            return _from_dotted_path(name, self)
        return self.get(name)


class _RewardHeadRegistry(Registry[RewardHeadSpec]):
    def _spec_for(self, obj: Callable[..., Any], name: str, origin: str) -> RewardHeadSpec:
        return make_reward_head_spec(obj, name, origin=origin)


LOSSES = _LossRegistry("loss", "losses", LOSS_GROUP, builtin_modules=("trl_plus.losses",))
REWARD_HEADS = _RewardHeadRegistry(
    "reward head", "reward heads", REWARD_HEAD_GROUP, builtin_modules=("trl_plus.heads",)
)


def _origin(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def make_loss_spec(
    fn: Callable[..., LossOutput],
    name: str,
    *,
    aliases: tuple[str, ...] | list[str] = (),
    input_kind: InputKind | None = None,
    requires_reference: bool = True,
    paper: str | None = None,
    origin: str | None = None,
    state: Callable[[], LossState] | None = None,
) -> LossSpec:
    """Describe `fn` as a loss; the input kind comes from its first parameter's annotation unless given."""
    if not callable(fn):
        raise TypeError(f"A loss must be a function, got {type(fn).__name__}.")
    signature = inspect.signature(fn)
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) != 1 or any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        raise TypeError(
            f"The loss {name!r} must take one positional argument (the log-probs) and keyword-only "
            f"hyperparameters, got the signature {signature}."
        )
    hints = _type_hints(fn)
    inferred = _infer_input_kind(positional[0], hints)
    if input_kind is None:
        if inferred is None:
            raise TypeError(
                f"Cannot tell the input kind of the loss {name!r}: annotate its first argument with PairedLogps, "
                "UnpairedLogps, RankedLogps or OnlineLogps, or pass input_kind=."
            )
        input_kind = inferred
    elif input_kind not in INPUT_TYPES:
        raise ValueError(f"input_kind must be one of {sorted(INPUT_TYPES)}, got {input_kind!r}.")
    elif inferred is not None and inferred != input_kind:
        raise TypeError(f"The loss {name!r} is annotated for {inferred} input but registered as {input_kind}.")
    hyperparameters = _keyword_hyperparameters(signature, hints)
    if state is not None:
        unknown = [p for p in state().provides if p not in {hp.name for hp in hyperparameters}]
        if unknown:
            raise TypeError(f"The state of the loss {name!r} provides {unknown}, which the loss does not take.")
    return LossSpec(
        name=_normalise(name),
        target=fn,
        input_kind=input_kind,
        aliases=tuple(_normalise(a) for a in aliases),
        paper=paper,
        hyperparameters=hyperparameters,
        origin=origin or _origin(fn),
        requires_reference=requires_reference,
        state=state,
    )


def make_reward_head_spec(
    target: Callable[..., Any],
    name: str,
    *,
    aliases: tuple[str, ...] | list[str] = (),
    input_kind: InputKind = "paired",
    paper: str | None = None,
    origin: str | None = None,
) -> RewardHeadSpec:
    """Describe a head class (or factory); its hyperparameters are the keyword-only arguments of its constructor."""
    if not callable(target):
        raise TypeError(f"A reward head must be a class or factory, got {type(target).__name__}.")
    if input_kind not in INPUT_TYPES:
        raise ValueError(f"input_kind must be one of {sorted(INPUT_TYPES)}, got {input_kind!r}.")
    return RewardHeadSpec(
        name=_normalise(name),
        target=target,
        input_kind=input_kind,
        aliases=tuple(_normalise(a) for a in aliases),
        paper=paper,
        hyperparameters=_keyword_hyperparameters(inspect.signature(target), _type_hints(target)),
        origin=origin or _origin(target),
    )


F = TypeVar("F", bound=Callable[..., Any])


def register_loss(
    name: str,
    *,
    aliases: tuple[str, ...] | list[str] = (),
    input_kind: InputKind | None = None,
    requires_reference: bool = True,
    paper: str | None = None,
    state: Callable[[], LossState] | None = None,
) -> Callable[[F], F]:
    """Register a loss function under `name` (and `aliases`); returns the function unchanged.

    The function takes one input (`PairedLogps`, `UnpairedLogps`, `RankedLogps` or `OnlineLogps`) and keyword-only
    hyperparameters with defaults, and returns a `LossOutput`. `requires_reference=False` tells trainers to skip
    the reference model entirely. `state` makes a `LossState`: the trainer keeps one per loss, fills the
    hyperparameters it provides before each call, and saves it in checkpoints. The function itself stays pure.
    """

    def decorator(fn: F) -> F:
        spec = make_loss_spec(
            fn,
            name,
            aliases=aliases,
            input_kind=input_kind,
            requires_reference=requires_reference,
            paper=paper,
            state=state,
        )
        LOSSES.add(spec)
        setattr(fn, _SPEC_ATTR, spec)
        return fn

    return decorator


def register_reward_head(
    name: str,
    *,
    aliases: tuple[str, ...] | list[str] = (),
    input_kind: InputKind = "paired",
    paper: str | None = None,
) -> Callable[[F], F]:
    """Register a reward-head class (or factory) under `name`; returns it unchanged."""

    def decorator(target: F) -> F:
        spec = make_reward_head_spec(target, name, aliases=aliases, input_kind=input_kind, paper=paper)
        REWARD_HEADS.add(spec)
        setattr(target, _SPEC_ATTR, spec)
        return target

    return decorator


def _from_dotted_path(path: str, registry: _LossRegistry) -> LossSpec:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise UnknownNameError(f"A loss path must look like 'package.module:function', got {path!r}.")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise UnknownNameError(f"Cannot import {module_name!r} for the loss {path!r}: {error}") from error
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UnknownNameError(f"The module {module_name!r} has no attribute {attr!r} (from the loss {path!r}).")
        obj = getattr(obj, part)
    spec = getattr(obj, _SPEC_ATTR, None)
    if isinstance(spec, LossSpec):
        return spec
    # Unregistered functions are assumed to need the reference: the safe choice, it is only extra compute.
    return make_loss_spec(obj, path.replace(":", "."), origin=path)


def get_loss(name: str) -> LossSpec:
    """The loss registered as `name` (or an alias, or a `"package.module:function"` path)."""
    return LOSSES.resolve(name)


def list_losses(input_kind: InputKind | None = None) -> list[LossSpec]:
    """Every registered loss, sorted by name, optionally only those of one input kind."""
    return [spec for spec in LOSSES.list() if input_kind is None or spec.input_kind == input_kind]


def get_reward_head(name: str) -> RewardHeadSpec:
    """The reward head registered as `name` (or an alias)."""
    return REWARD_HEADS.get(name)


def list_reward_heads() -> list[RewardHeadSpec]:
    """Every registered reward head, sorted by name."""
    return REWARD_HEADS.list()


def plugin_errors() -> list[PluginError]:
    """Entry-point plugins (of losses and reward heads) that failed to load in this process."""
    return [*LOSSES.plugin_errors, *REWARD_HEADS.plugin_errors]


__all__ = [
    "DISABLE_AUTOLOAD_ENV",
    "LOSSES",
    "REQUIRED",
    "REWARD_HEADS",
    "DuplicateNameError",
    "Hyperparameter",
    "LossSpec",
    "PluginError",
    "PluginLoadWarning",
    "Registry",
    "RewardHeadSpec",
    "UnknownNameError",
    "get_loss",
    "get_reward_head",
    "list_losses",
    "list_reward_heads",
    "plugin_errors",
    "register_loss",
    "register_reward_head",
]
