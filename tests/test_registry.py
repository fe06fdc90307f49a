from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import trl_plus
from trl_plus import (
    DuplicateNameError,
    LossOutput,
    PairedLogps,
    RankedLogps,
    UnknownNameError,
    get_loss,
    get_reward_head,
    list_losses,
    list_reward_heads,
    register_loss,
    register_reward_head,
)
from trl_plus.registry import LOSSES, REQUIRED, REWARD_HEADS


@pytest.fixture
def scratch() -> Iterator[list[str]]:
    """Names registered by a test are removed afterwards, so tests do not leak into each other."""
    names: list[str] = []
    yield names
    for name in names:
        for registry in (LOSSES, REWARD_HEADS):
            if name in registry:
                registry.remove(name)


def _batch(with_reference: bool = True) -> PairedLogps:
    ref = torch.tensor([-1.0, -1.0]) if with_reference else None
    return PairedLogps(
        chosen_logps=torch.tensor([-1.0, -2.0]),
        rejected_logps=torch.tensor([-3.0, -1.0]),
        chosen_lengths=torch.tensor([2, 2]),
        rejected_lengths=torch.tensor([2, 2]),
        ref_chosen_logps=ref,
        ref_rejected_logps=ref,
    )


def test_register_and_look_up_with_metadata(scratch: list[str]) -> None:
    @register_loss("margin_test", aliases=("mt_alias",), requires_reference=False, paper="arXiv:0000.00000")
    def margin_test(lp: PairedLogps, *, beta: float = 2.0, margin: float = 0.5) -> LossOutput:
        return LossOutput(torch.relu(margin - beta * (lp.chosen_logps - lp.rejected_logps)))

    scratch.append("margin_test")
    spec = get_loss("margin_test")
    assert get_loss("mt_alias") is spec and get_loss("MARGIN_TEST") is spec
    assert spec.input_kind == "paired" and not spec.requires_reference and spec.paper == "arXiv:0000.00000"
    assert [(hp.name, hp.default, hp.annotation) for hp in spec.hyperparameters] == [
        ("beta", 2.0, "float"),
        ("margin", 0.5, "float"),
    ]
    assert spec.defaults() == {"beta": 2.0, "margin": 0.5}
    assert spec in list_losses() and spec in list_losses("paired") and spec not in list_losses("ranked")
    # The decorator hands back the plain function, still callable directly.
    assert torch.equal(margin_test(_batch(False)).losses, torch.tensor([0.0, 2.5]))
    # Through the spec, hyperparameters are checked and forwarded.
    assert torch.equal(spec(_batch(False), margin=1.0).losses, torch.tensor([0.0, 3.0]))


def test_builtin_alias_follows_trl_names() -> None:
    assert get_loss("sigmoid") is get_loss("dpo")


def test_listing_is_sorted_and_complete() -> None:
    names = [spec.name for spec in list_losses()]
    assert names == sorted(names) and "dpo" in names


def test_duplicate_names_and_aliases_raise(scratch: list[str]) -> None:
    def loss(lp: PairedLogps) -> LossOutput:
        return LossOutput(lp.chosen_logps)

    with pytest.raises(DuplicateNameError, match=r"'dpo' is already the name registered from trl_plus.losses.dpo"):
        register_loss("dpo")(loss)
    with pytest.raises(DuplicateNameError, match=r"'sigmoid' is already the alias of 'dpo'"):
        register_loss("fresh_name", aliases=("sigmoid",))(loss)
    assert "fresh_name" not in LOSSES  # a failed registration leaves nothing behind
    register_loss("fresh_name")(loss)
    scratch.append("fresh_name")
    with pytest.raises(DuplicateNameError):
        register_loss("other_name", aliases=("fresh_name",))(loss)


def test_unknown_name_lists_everything_and_suggests_the_closest() -> None:
    with pytest.raises(UnknownNameError) as info:
        get_loss("dpoo")
    message = str(info.value)
    assert "Unknown loss 'dpoo'" in message and "Did you mean 'dpo'" in message
    assert "Registered losses: " + ", ".join(spec.name for spec in list_losses()) + "." in message
    with pytest.raises(UnknownNameError, match="Registered losses:") as info:
        get_loss("zzzzzz")
    assert "Did you mean" not in str(info.value)


def test_hyperparameter_checks_name_the_loss_and_what_it_takes() -> None:
    spec = get_loss("dpo")
    with pytest.raises(
        TypeError,
        match=r"The loss 'dpo' takes no hyperparameter 'bta'; it takes: beta=0.1, "
        r"label_smoothing=0.0\. Did you mean 'beta'\?",
    ):
        spec(_batch(), bta=0.5)


def test_required_hyperparameters(scratch: list[str]) -> None:
    @register_loss("needs_tau")
    def needs_tau(lp: PairedLogps, *, tau: float) -> LossOutput:
        return LossOutput(lp.chosen_logps * tau)

    scratch.append("needs_tau")
    spec = get_loss("needs_tau")
    assert spec.hyperparameters[0].default is REQUIRED and str(spec.hyperparameters[0]) == "tau"
    with pytest.raises(TypeError, match=r"needs a value for \['tau'\]"):
        spec(_batch())
    assert torch.equal(spec(_batch(), tau=2.0).losses, torch.tensor([-2.0, -4.0]))


def test_reference_and_input_kind_are_enforced() -> None:
    spec = get_loss("dpo")
    with pytest.raises(ValueError, match="The loss 'dpo' needs reference log-probs"):
        spec(_batch(with_reference=False))
    ranked = RankedLogps(torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"takes paired input \(PairedLogps\), got RankedLogps"):
        spec(ranked)  # type: ignore[arg-type]


def test_output_is_checked(scratch: list[str]) -> None:
    @register_loss("bad_output")
    def bad_output(lp: PairedLogps) -> LossOutput:
        return LossOutput(lp.chosen_logps[:1])

    scratch.append("bad_output")
    with pytest.raises(ValueError, match="returned 1 losses for a batch of 2"):
        get_loss("bad_output")(_batch())


def test_input_kind_is_inferred_or_must_be_given(scratch: list[str]) -> None:
    def unannotated(lp, *, beta=1.0):  # type: ignore[no-untyped-def]
        return LossOutput(lp.chosen_logps)

    with pytest.raises(TypeError, match="Cannot tell the input kind"):
        register_loss("unannotated")(unannotated)
    register_loss("unannotated", input_kind="paired")(unannotated)
    scratch.append("unannotated")
    assert get_loss("unannotated").input_kind == "paired"

    def ranked_loss(lp: RankedLogps) -> LossOutput:
        return LossOutput(lp.logps[:, 0])

    with pytest.raises(TypeError, match="annotated for ranked input but registered as paired"):
        register_loss("ranked_loss", input_kind="paired")(ranked_loss)


@pytest.mark.parametrize(
    "signature_error",
    [
        lambda lp, beta: None,  # two positional arguments
        lambda lp, *, beta=1.0, **kwargs: None,  # **kwargs hides the hyperparameters
    ],
)
def test_signatures_that_cannot_be_described_are_refused(signature_error: object) -> None:
    with pytest.raises(TypeError, match="must take one positional argument"):
        register_loss("refused", input_kind="paired")(signature_error)  # type: ignore[type-var]


@pytest.mark.parametrize("name", ["", "has space", "pkg.mod:fn"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="registry name"):
        register_loss(name, input_kind="paired")(lambda lp: None)  # type: ignore[arg-type,return-value]


def test_dotted_path_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tests_support_losses.py").write_text(
        "from trl_plus import LossOutput, PairedLogps\n"
        "def mean_margin(lp: PairedLogps, *, scale: float = 1.0) -> LossOutput:\n"
        "    return LossOutput(scale * (lp.rejected_logps - lp.chosen_logps))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = get_loss("trl_plus.losses.dpo:dpo")
    assert spec is get_loss("dpo")  # a registered function resolves to its registration
    unregistered = get_loss("tests_support_losses:mean_margin")
    assert unregistered.name == "tests_support_losses.mean_margin" and unregistered.requires_reference
    assert unregistered.hyperparameters[0].name == "scale"
    assert "tests_support_losses.mean_margin" not in LOSSES  # experiments are not added to the registry
    assert torch.allclose(unregistered(_batch(), scale=2.0).losses, torch.tensor([-4.0, 2.0]))
    with pytest.raises(UnknownNameError, match="Cannot import 'no_such_module_xyz'"):
        get_loss("no_such_module_xyz:fn")
    with pytest.raises(UnknownNameError, match="has no attribute 'nope'"):
        get_loss("trl_plus.losses.dpo:nope")


def test_reward_head_registry(scratch: list[str]) -> None:
    @register_reward_head("toy_head", aliases=("toy",), paper="arXiv:1111.11111")
    class ToyHead(torch.nn.Module):
        def __init__(self, hidden_size: int, *, scale: float = 1.0) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(hidden_size, 1)
            self.scale = scale

    scratch.append("toy_head")
    spec = get_reward_head("toy")
    assert spec.name == "toy_head" and spec in list_reward_heads() and spec.input_kind == "paired"
    assert [hp.name for hp in spec.hyperparameters] == ["scale"]
    head = spec.build(8, scale=3.0)
    assert isinstance(head, ToyHead) and head.scale == 3.0 and head.linear.in_features == 8
    with pytest.raises(TypeError, match="The reward head 'toy_head' takes no hyperparameter 'scal'"):
        spec.build(8, scal=3.0)
    with pytest.raises(UnknownNameError, match=r"Unknown reward head 'toy_hed'\. Did you mean 'toy_head'"):
        get_reward_head("toy_hed")


def test_public_api_is_importable_from_the_top() -> None:
    for name in trl_plus.__all__:
        assert hasattr(trl_plus, name), name
