"""Tiny random checkpoints, built offline: a locally trained tokenizer plus a randomly initialised model.

Each architecture keeps its family's tokenizer conventions, so code paths that differ between real checkpoints
(BOS or not, pad = eos or not, SentencePiece-style vs byte-level pieces, chat template) are exercised:

| arch  | pieces               | BOS prepended | eos            | pad            | chat template      |
|-------|----------------------|---------------|----------------|----------------|--------------------|
| llama | metaspace (▁), <unk> | <s>           | </s>           | <pad>          | [INST] … [/INST]   |
| qwen2 | byte-level           | none          | <|im_end|>     | <|endoftext|>  | ChatML             |
| qwen3 | byte-level           | none          | <|im_end|>     | <|endoftext|>  | ChatML             |
| gpt2  | byte-level           | none          | <|endoftext|>  | = eos          | User:/Assistant:   |

The tokenizer is trained with `tokenizers` on text from the synthetic tasks plus generic sentences. The model's
vocabulary may be larger than the tokenizer's (`vocab_size=128256` gives a large-vocabulary variant for memory
benchmarks, as real checkpoints often pad their embedding). Templates mark assistant turns with
`{% generation %}` so TRL's `assistant_only_loss` works. (Newlines after block tags are written as `{{ '\\n' }}`:
transformers renders templates with `trim_blocks`, which drops a literal newline there.)
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ARCHITECTURES = ("llama", "qwen2", "qwen3", "gpt2")

_LLAMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}<<SYS>>\n{{ message['content'] }}\n<</SYS>>\n\n"
    "{% elif message['role'] == 'user' %}[INST] {{ message['content'] }} [/INST]"
    "{% elif message['role'] == 'assistant' %}{% generation %} {{ message['content'] }}{{ eos_token }}"
    "{% endgeneration %}{% endif %}{% endfor %}"
)
_CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] }}<|im_end|>{% endgeneration %}"
    "{% else %}{{ message['content'] }}<|im_end|>{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_GPT2_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}System: {{ message['content'] }}\n"
    "{% elif message['role'] == 'user' %}User: {{ message['content'] }}\n"
    "{% elif message['role'] == 'assistant' %}Assistant:{% generation %} {{ message['content'] }}{{ eos_token }}"
    "{% endgeneration %}{{ '\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


@dataclass(frozen=True)
class _Convention:
    byte_level: bool
    bos: str | None
    eos: str
    pad: str
    unk: str | None
    specials: tuple[str, ...]
    chat_template: str


_CONVENTIONS = {
    "llama": _Convention(False, "<s>", "</s>", "<pad>", "<unk>", ("<unk>", "<s>", "</s>", "<pad>"), _LLAMA_TEMPLATE),
    "qwen2": _Convention(
        True,
        None,
        "<|im_end|>",
        "<|endoftext|>",
        None,
        ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        _CHATML_TEMPLATE,
    ),
    "gpt2": _Convention(
        True, "<|endoftext|>", "<|endoftext|>", "<|endoftext|>", None, ("<|endoftext|>",), _GPT2_TEMPLATE
    ),
}
_CONVENTIONS["qwen3"] = _CONVENTIONS["qwen2"]

_SUBJECTS = ("the model", "a reviewer", "the user", "my friend", "the teacher", "a robot", "the team")
_VERBS = ("prefers", "likes", "ranks", "picks", "writes", "answers", "compares", "chooses")
_OBJECTS = ("the first answer", "a short reply", "this response", "the better option", "a clear list", "both items")
_ENDINGS = ("today.", "again.", "because it is helpful.", "without a doubt.", "for the beach trip.", "quickly.")


# The tasks whose text trains the tiny tokenizers. Frozen: any new text changes the BPE merges, hence every tiny
# checkpoint and every figure measured on one. Later tasks' words become several pieces, which models learn too.
CORPUS_TASKS = ("transitive", "cyclic")


def tokenizer_corpus() -> list[str]:
    """The training text: generic sentences, the prompts and answers of `CORPUS_TASKS`, and the chat markup."""
    from trl_plus.synthetic import get_task

    lines = [" ".join(parts) for parts in itertools.product(_SUBJECTS, _VERBS, _OBJECTS, _ENDINGS)]
    for name in CORPUS_TASKS:
        task = get_task(name, seed=0)
        for row in task.preference_dataset(400, seed=0):
            lines.append(f"{row['prompt']} {row['chosen']}")
            lines.append(f"{row['prompt']} {row['rejected']}")
    lines += ["User: Assistant: System: [INST] [/INST] <<SYS>> <</SYS>>", string.printable]
    return lines


def build_tokenizer(arch: str, *, vocab_size: int = 1024) -> Any:
    """Train a tokenizer with `arch`'s conventions (see the module docstring) and wrap it for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    convention = _convention(arch)
    if convention.byte_level:
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        tokenizer = Tokenizer(models.BPE(unk_token=convention.unk))
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        alphabet = [*string.printable.strip(), "▁"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(convention.specials), initial_alphabet=alphabet, show_progress=False
    )
    tokenizer.train_from_iterator(tokenizer_corpus(), trainer)
    if convention.byte_level:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    elif convention.bos is not None:
        bos_id = tokenizer.token_to_id(convention.bos)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{convention.bos} $A", pair=f"{convention.bos} $A $B", special_tokens=[(convention.bos, bos_id)]
        )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=convention.bos,
        eos_token=convention.eos,
        pad_token=convention.pad,
        unk_token=convention.unk,
        additional_special_tokens=[t for t in convention.specials if t not in (convention.bos, convention.eos)],
    )
    wrapped.chat_template = convention.chat_template
    return wrapped


def build_config(
    arch: str,
    tokenizer: Any,
    *,
    vocab_size: int | None = None,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    max_positions: int = 512,
) -> Any:
    """A transformers config for a tiny `arch` model whose special-token ids match `tokenizer`."""
    from transformers import GPT2Config, LlamaConfig, Qwen2Config, Qwen3Config

    vocab_size = len(tokenizer) if vocab_size is None else vocab_size
    if vocab_size < len(tokenizer):
        raise ValueError(f"vocab_size={vocab_size} is smaller than the tokenizer's {len(tokenizer)} tokens.")
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size={hidden_size} must be divisible by num_heads={num_heads}.")
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if arch == "gpt2":
        return GPT2Config(
            vocab_size=vocab_size,
            n_positions=max_positions,
            n_embd=hidden_size,
            n_layer=num_layers,
            n_head=num_heads,
            **ids,
        )
    shared = {
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "num_key_value_heads": max(1, num_heads // 2),  # grouped-query attention, as the real families use
        "max_position_embeddings": max_positions,
        **ids,
    }
    if arch == "llama":
        return LlamaConfig(**shared, tie_word_embeddings=False)
    if arch == "qwen2":
        return Qwen2Config(**shared, tie_word_embeddings=True)
    return Qwen3Config(**shared, head_dim=hidden_size // num_heads, tie_word_embeddings=True)


def make_tiny(
    arch: str,
    out_dir: str | Path,
    *,
    vocab_size: int | None = None,
    tokenizer_vocab_size: int = 1024,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    seed: int = 0,
) -> Path:
    """Build and save a tiny random `arch` checkpoint to `out_dir`; load it back with the Auto classes.

    `vocab_size` sets the model's embedding rows (default: the tokenizer's size); a larger value pads the
    embedding, as real checkpoints do, without changing the tokenizer.
    """
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ValueError(f"The output path {str(out_dir)!r} is a file; give a folder (it is created if missing).")
    tokenizer = build_tokenizer(arch, vocab_size=tokenizer_vocab_size)
    config = build_config(
        arch, tokenizer, vocab_size=vocab_size, hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _convention(arch: str) -> _Convention:
    if arch not in _CONVENTIONS:
        raise ValueError(f"Unknown architecture {arch!r}; choose one of {list(ARCHITECTURES)}.")
    return _CONVENTIONS[arch]


# ---- one-step parity harness: the loss and gradients of a trainer's first batch ---------------------------------


def perturbed_copy(path: str | Path, scale: float = 0.05, seed: int = 1) -> Any:
    """The checkpoint with every weight nudged by seeded noise: a reference that differs from the policy at step 1."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(scale * torch.randn(param.shape, generator=generator))
    return model


@dataclass
class FirstStep:
    """The first batch's loss, the gradient of every trainable parameter, and the trainer that produced them."""

    loss: float
    grads: dict[str, Any]
    trainer: Any


def first_step(make_trainer: Callable[[], Any]) -> FirstStep:
    """Loss and gradients of the first batch, exactly as the training loop computes them (autocast included)."""
    trainer = make_trainer()
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    model = trainer.model
    model.train()
    with trainer.compute_loss_context_manager():
        loss = trainer.compute_loss(model, batch)
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
    return FirstStep(loss.item(), grads, trainer)


def max_relative_difference(a: dict[str, Any], b: dict[str, Any]) -> float:
    """max over tensors of max|a − b| / max|a|: 0 for identical gradients."""
    assert a.keys() == b.keys(), f"different trainable parameters: {sorted(a.keys() ^ b.keys())}"
    return max(((a[n] - b[n]).abs().max() / a[n].abs().max().clamp(min=1e-12)).item() for n in a)


def qlora_kwargs() -> dict[str, Any]:
    """Trainer keyword arguments for QLoRA on the tiny models: an nf4 4-bit base (bitsandbytes runs it on CPU) with
    fp32 compute, and rank-8 LoRA adapters on the attention's q and v projections."""
    import torch
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig

    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
        ),
        "peft_config": LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    }


def train_adapters_only(trainer: Any, *, layers: Any = None, also_trained: tuple[str, ...] = ()) -> set[str]:
    """Train a QLoRA trainer (see `qlora_kwargs`) and check that the first layer's q projection is 4-bit, that
    only LoRA parameters (the B matrices among them) and those named `also_trained*` moved, and that the 4-bit
    weights kept every byte; returns the names of the parameters that changed. `layers`: the decoder layers
    (default: those of a PEFT-wrapped causal LM)."""
    import torch

    layers = trainer.model.base_model.model.model.layers if layers is None else layers
    base_layer = layers[0].self_attn.q_proj.base_layer
    assert type(base_layer).__name__ == "Linear4bit", type(base_layer).__name__
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    frozen_bytes = base_layer.weight.data.clone()
    trainer.train()
    changed = {name for name, p in trainer.model.named_parameters() if not torch.equal(before[name], p.detach())}
    assert changed, "no parameter changed"
    assert all("lora_" in name or name.startswith(also_trained) for name in changed), sorted(changed)
    assert any("lora_B" in name for name in changed), sorted(changed)
    assert torch.equal(base_layer.weight.data, frozen_bytes), "the 4-bit base weights changed"
    return changed


__all__ = [
    "ARCHITECTURES",
    "FirstStep",
    "build_config",
    "build_tokenizer",
    "first_step",
    "make_tiny",
    "max_relative_difference",
    "perturbed_copy",
    "qlora_kwargs",
    "tokenizer_corpus",
    "train_adapters_only",
]
