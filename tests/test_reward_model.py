"""RewardModel: every head behind one interface, and a save/load round trip that changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trl_plus import UnknownNameError
from trl_plus.reward_model import RewardModel
from trl_plus.synthetic import get_task

HEADS = {"bt": {}, "pl": {}, "gpm": {"embedding_dim": 4}, "ensemble": {"num_heads": 3}}


@pytest.fixture(scope="module")
def rows() -> dict[str, list[str]]:
    pairs = get_task("transitive", seed=0).preference_dataset(6, seed=0)
    return {"prompts": pairs["prompt"], "a": pairs["chosen"], "b": pairs["rejected"]}


@pytest.mark.parametrize("head", sorted(HEADS))
def test_save_and_load_give_identical_outputs(
    head: str, tiny_checkpoints: dict[str, Path], rows: dict[str, list[str]], tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model = RewardModel.from_backbone(tiny_checkpoints["llama"], head=head, head_kwargs=HEADS[head]).eval()
    model.save_pretrained(tmp_path)
    loaded = RewardModel.from_pretrained(tmp_path).eval()
    assert loaded.head_name == head and loaded.head_kwargs == HEADS[head]
    assert torch.equal(model.score(rows["prompts"], rows["a"]), loaded.score(rows["prompts"], rows["a"]))
    prefer = (rows["prompts"], rows["a"], rows["b"])
    assert torch.equal(model.prefer(*prefer), loaded.prefer(*prefer))


@pytest.mark.parametrize("head", sorted(HEADS))
def test_prefer_is_a_probability_and_antisymmetric(
    head: str, tiny_checkpoints: dict[str, Path], rows: dict[str, list[str]]
) -> None:
    model = RewardModel.from_backbone(tiny_checkpoints["llama"], head=head, head_kwargs=HEADS[head]).eval()
    p_ab = model.prefer(rows["prompts"], rows["a"], rows["b"])
    p_ba = model.prefer(rows["prompts"], rows["b"], rows["a"])
    assert p_ab.shape == (6,) and bool(((p_ab > 0) & (p_ab < 1)).all())
    assert torch.allclose(p_ab + p_ba, torch.ones(6), atol=1e-6)
    scores = model.score(rows["prompts"], rows["a"])
    assert scores.shape == ((6, 4) if head == "gpm" else (6,))


def test_loading_with_another_head_is_refused(tiny_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    RewardModel.from_backbone(tiny_checkpoints["llama"], head="gpm").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="saved with the 'gpm' head, not 'bt'"):
        RewardModel.from_pretrained(tmp_path, head="bt")
    with pytest.raises(FileNotFoundError, match="not a RewardModel checkpoint"):
        RewardModel.from_pretrained(tiny_checkpoints["llama"])


def test_unknown_heads_and_hyperparameters_are_refused(tiny_checkpoints: dict[str, Path]) -> None:
    with pytest.raises(UnknownNameError, match=r"Unknown reward head 'gmp'\. Did you mean 'gpm'"):
        RewardModel.from_backbone(tiny_checkpoints["llama"], head="gmp")
    with pytest.raises(TypeError, match="takes no hyperparameter 'embedding_size'"):
        RewardModel.from_backbone(tiny_checkpoints["llama"], head="gpm", head_kwargs={"embedding_size": 4})
    with pytest.raises(ValueError, match="even embedding_dim"):
        RewardModel.from_backbone(tiny_checkpoints["llama"], head="gpm", head_kwargs={"embedding_dim": 5})


def test_score_and_prefer_carry_no_graph(tiny_checkpoints: dict[str, Path], rows: dict[str, list[str]]) -> None:
    model = RewardModel.from_backbone(tiny_checkpoints["llama"], head="gpm")
    assert not model.prefer(rows["prompts"], rows["a"], rows["b"]).requires_grad
    assert not model.score(rows["prompts"], rows["a"]).requires_grad


def test_mean_pooling_averages_the_completion_tokens_and_survives_a_round_trip(
    tiny_checkpoints: dict[str, Path], rows: dict[str, list[str]], tmp_path: Path
) -> None:
    model = RewardModel.from_backbone(tiny_checkpoints["llama"], head="bt", pooling="mean").eval()
    batch = model._tokenize(rows["prompts"][:1], rows["a"][:1])
    hidden = model.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    start = int(batch["prompt_lengths"][0])
    expected = model.head(hidden[0, start:].mean(0, keepdim=True))
    assert torch.allclose(model.score(rows["prompts"][:1], rows["a"][:1]), expected, atol=1e-6)
    model.save_pretrained(tmp_path)
    assert RewardModel.from_pretrained(tmp_path).pooling == "mean"
    with pytest.raises(ValueError, match="pooling must be one of"):
        RewardModel.from_backbone(tiny_checkpoints["llama"], pooling="max")


def test_one_string_instead_of_a_list_is_refused(tiny_checkpoints: dict[str, Path]) -> None:
    """A string is a sequence of characters: without the check, prefer("a prompt", ...) scored one row per letter."""
    model = RewardModel.from_backbone(tiny_checkpoints["llama"], head="bt").eval()
    with pytest.raises(TypeError, match=r"`prompts` is one string \('Name 2 items:'\); pass a list"):
        model.prefer("Name 2 items:", ["kite map"], ["tent hat"])
    with pytest.raises(TypeError, match="`completions` is one string"):
        model.score(["Name 2 items:"], "kite map")


def test_trust_remote_code_reaches_the_config_and_the_tokenizer(
    tiny_checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only the backbone: transformers asks interactively ([y/N]) for every loader that lacks the flag."""
    from transformers import AutoConfig, AutoTokenizer

    seen: dict[str, list[object]] = {"AutoConfig": [], "AutoTokenizer": []}
    for cls in (AutoConfig, AutoTokenizer):
        original = cls.from_pretrained

        def record(*args: object, _name: str = cls.__name__, _original: object = original, **kwargs: object) -> object:
            seen[_name].append(kwargs.get("trust_remote_code"))
            return _original(*args, **kwargs)  # type: ignore[operator]

        monkeypatch.setattr(cls, "from_pretrained", record)
    RewardModel.from_backbone(tiny_checkpoints["llama"], head="bt", trust_remote_code=True)
    assert seen["AutoConfig"] and seen["AutoTokenizer"]  # each loader was called, and every call had the flag
    assert all(flag is True for calls in seen.values() for flag in calls), seen


@pytest.mark.parametrize("head", ["bt", "pl", "ensemble"])
@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
def test_scalar_heads_save_a_checkpoint_sequence_classification_loads(
    head: str, arch: str, tiny_checkpoints: dict[str, Path], rows: dict[str, list[str]], tmp_path: Path
) -> None:
    """TRL's online trainers, serving stacks and the Hub load reward models as AutoModelForSequenceClassification:
    the checkpoint must give RewardModel.score's rewards there, with no random `score` layer."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = RewardModel.from_backbone(tiny_checkpoints[arch], head=head, head_kwargs=HEADS[head]).eval()
    model.save_pretrained(tmp_path)
    classifier = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert classifier.config.num_labels == 1 and classifier.config.trl_plus_reward_head == head
    batch = model._tokenize(rows["prompts"], rows["a"])  # right-padded rows of different lengths
    assert batch["attention_mask"].sum(-1).unique().numel() > 1
    with torch.no_grad():
        logits = classifier(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(logits.squeeze(-1), model.score(rows["prompts"], rows["a"]), atol=1e-5, rtol=0)
    loaded = RewardModel.from_pretrained(tmp_path).eval()  # trl-plus still reads its head and metadata
    assert loaded.head_name == head
    assert torch.equal(loaded.score(rows["prompts"], rows["a"]), model.score(rows["prompts"], rows["a"]))


def test_a_tokenizer_that_pads_with_eos_is_warned_about(
    tiny_checkpoints: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The tiny gpt2 pads with eos, as GPT-2 and Llama 3 do: a sequence classifier then skips the final eos that
    RewardModel.score reads, and saving says so."""
    model = RewardModel.from_backbone(tiny_checkpoints["gpt2"], head="bt")
    assert model.tokenizer.pad_token_id == model.tokenizer.eos_token_id
    with caplog.at_level("WARNING", logger="trl_plus.reward_model"):
        model.save_pretrained(tmp_path)
    assert "scores the token before a final eos" in caplog.text


def test_checkpoints_without_a_linear_reward_say_what_they_are(
    tiny_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    """gpm compares embeddings and mean pooling averages tokens: no `score` layer computes either, so those keep
    the backbone's format and name their head in the config instead of posing as a classifier."""
    import json

    cases = {"gpm": {"head": "gpm", "head_kwargs": {"embedding_dim": 4}}, "mean": {"pooling": "mean"}}
    for name, kwargs in cases.items():
        RewardModel.from_backbone(tiny_checkpoints["llama"], **kwargs).save_pretrained(tmp_path / name)
        config = json.loads((tmp_path / name / "config.json").read_text())
        assert config["architectures"] == ["LlamaModel"]
        assert config["trl_plus_reward_head"] == kwargs.get("head", "bt")


def test_a_loaded_sequence_classifier_keeps_its_reward(
    tiny_checkpoints: dict[str, Path], rows: dict[str, list[str]]
) -> None:
    """TRL's RewardTrainer takes a loaded `*ForSequenceClassification` and trains it as it is: the backbone and its
    `score` layer become the reward model's, so the rewards equal the classifier's logits before any training."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    classifier = AutoModelForSequenceClassification.from_pretrained(tiny_checkpoints["llama"], num_labels=1).eval()
    model = RewardModel.from_backbone(classifier, head="bt").eval()
    assert model.backbone is classifier.model
    batch = model._tokenize(rows["prompts"], rows["a"])
    with torch.no_grad():
        logits = classifier(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(model.score(rows["prompts"], rows["a"]), logits.squeeze(-1), atol=1e-5, rtol=0)


def test_a_sequence_classifier_with_two_labels_is_refused(tiny_checkpoints: dict[str, Path]) -> None:
    from transformers import AutoModelForSequenceClassification

    classifier = AutoModelForSequenceClassification.from_pretrained(tiny_checkpoints["llama"])  # 2 labels by default
    with pytest.raises(ValueError, match=r"`num_labels=2`, but reward models require `num_labels=1`"):
        RewardModel.from_backbone(classifier, head="bt")


def test_model_tags_are_the_backbones(tiny_checkpoints: dict[str, Path]) -> None:
    """The Hub card's tags: TRL's tests read `trainer.model.model_tags` after the trainer added its own."""
    model = RewardModel.from_backbone(tiny_checkpoints["llama"], head="bt")
    assert model.model_tags == []
    model.add_model_tags(["reward-trainer", "trl"])
    assert model.model_tags == model.backbone.model_tags == ["reward-trainer", "trl"]


def test_a_cloned_chat_template_resizes_the_backbone(tiny_checkpoints: dict[str, Path]) -> None:
    """`RewardConfig(chat_template_path=<model id>)`: TRL's `clone_chat_template` adds the source's special tokens,
    resizes the model's embeddings to the tokenizer and sets its eos, through the model it is given."""
    from transformers import AutoTokenizer
    from trl.chat_template_utils import clone_chat_template

    model = RewardModel.from_backbone(tiny_checkpoints["gpt2"], head="bt")
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoints["gpt2"])
    model, tokenizer, added = clone_chat_template(model, tokenizer, str(tiny_checkpoints["qwen2"]))
    assert added and model.vocab_size == len(tokenizer.vocab) == model.backbone.get_input_embeddings().num_embeddings
    assert model.config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_activation_checkpointing_reaches_the_backbone(tiny_checkpoints: dict[str, Path]) -> None:
    """transformers' Trainer calls `activation_checkpointing_enable` when a model has it (and warns when only the
    deprecated `gradient_checkpointing_enable` exists): RewardModel hands both names to its backbone."""
    model = RewardModel.from_backbone(tiny_checkpoints["llama"], head="bt")
    model.activation_checkpointing_enable()
    assert model.backbone.is_activation_checkpointing
    model.activation_checkpointing_disable()
    assert not model.backbone.is_activation_checkpointing
