"""A tiny random CLIP (``CLIPModel`` + ``CLIPProcessor``) shaped like ``openai/clip-vit-large-patch14``.

The vision tower keeps the real checkpoint's geometry (224 px crops in 14 px patches, a CLS token,
pre/post layer norms, a projection head), the text tower its 77-token context, and the processor
the real preprocessing (shortest edge 224, bicubic, centre crop 224x224, OpenAI mean/std); only the
widths and depths are tiny and the weights random. The tokenizer is a real ``CLIPTokenizer`` (the
real normaliser, pre-tokeniser and ``</w>`` word ends) over a byte-level vocabulary without merges,
so any text tokenises offline; ``<|startoftext|>`` / ``<|endoftext|>`` come last, as in the real
vocabulary, so the text tower pools at the end-of-text token either way it looks for it.
"""

from __future__ import annotations

from pathlib import Path

#: OpenAI CLIP's image normalisation (the real preprocessor config).
OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
START, END = "<|startoftext|>", "<|endoftext|>"


def build_clip_tokenizer():
    """A ``CLIPTokenizer`` over the 256 byte-level symbols, each also as a word end (``x</w>``)."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    pieces = symbols + [f"{symbol}</w>" for symbol in symbols] + [START, END]
    return CLIPTokenizer(vocab={piece: index for index, piece in enumerate(pieces)}, merges=[])


def build_clip_processor(tokenizer):
    """``CLIPProcessor`` with the real checkpoint's image preprocessing."""
    from transformers import CLIPImageProcessor, CLIPProcessor

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 224},
        crop_size={"height": 224, "width": 224},
        resample=3,  # bicubic
        do_center_crop=True,
        image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD,
    )
    return CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def build_tiny_clip(seed: int = 0, hidden_size: int = 32, projection_dim: int = 16):
    """(model, processor) — a random 2-layer CLIP with ViT-L/14's patching and the processor above."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    tokenizer = build_clip_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    layers = {
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "hidden_act": "quick_gelu",
    }
    config = CLIPConfig(
        text_config={
            **layers,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 77,
            "bos_token_id": ids(START),
            "eos_token_id": ids(END),
            "pad_token_id": ids(END),
        },
        vision_config={**layers, "image_size": 224, "patch_size": 14},
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    return CLIPModel(config).eval(), build_clip_processor(tokenizer)


def save_tiny_clip(directory: Path, *, seed: int = 0) -> Path:
    """Save a tiny CLIP model + processor to ``directory`` (safetensors) and return it."""
    directory = Path(directory)
    model, processor = build_tiny_clip(seed)
    model.save_pretrained(directory, safe_serialization=True)
    processor.save_pretrained(directory)
    return directory
