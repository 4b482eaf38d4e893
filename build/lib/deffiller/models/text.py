"""Text side: CLIP text encoder (last hidden state, padded prompts) and a byte-level tokenizer that needs no download."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer


def offline_tokenizer(max_length: int) -> CLIPTokenizer:
    """A CLIP tokenizer over printable ASCII characters (no merges): every prompt splits into characters."""
    chars = [chr(c) for c in range(33, 127)]
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as folder:
        vocab, merges = Path(folder) / "vocab.json", Path(folder) / "merges.txt"
        vocab.write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
        merges.write_text("#version: 0.2\n")
        return CLIPTokenizer(str(vocab), str(merges), model_max_length=max_length)


def random_text_encoder(tokenizer: CLIPTokenizer, hidden: int, layers: int, heads: int, intermediate: int,
                        max_length: int) -> CLIPTextModel:
    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate,
                            num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=max_length,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id)
    return CLIPTextModel(config)


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, prompts: list[str], device) -> torch.Tensor:
    """(B, max_length, hidden): prompts padded/truncated to the tokenizer's length, CLIP's last hidden state."""
    ids = tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return text_encoder(ids.to(device))[0]


class PromptCache:
    """Text states of the prompts already seen, for a frozen text encoder: DefFiller only ever encodes the class
    names and the empty prompt, so after the first batch no step runs the text encoder again."""

    def __init__(self, tokenizer, text_encoder):
        self.tokenizer, self.text_encoder, self.states = tokenizer, text_encoder, {}

    def __call__(self, prompts: list[str], device) -> torch.Tensor:
        new = sorted(set(prompts) - set(self.states))
        if new:
            self.states.update(zip(new, encode_prompts(self.tokenizer, self.text_encoder, new, device)))
        return torch.stack([self.states[p] for p in prompts]).to(device)
