"""Tiny random Qwen checkpoints: a Qwen2.5-VL chat model with its processor, and a Qwen-Image-Edit pipeline.

Everything is built from configs (random weights) and a byte-level tokenizer made of the 256
byte symbols plus Qwen's special tokens (no merges, so any UTF-8 text round-trips); nothing is
downloaded. The directories load back with ``from_pretrained`` exactly like the real checkpoints
(``Qwen/Qwen2.5-VL-7B-Instruct``, ``Qwen/Qwen-Image-Edit``).
"""

from __future__ import annotations

from pathlib import Path

#: Qwen2.5-VL's special tokens, in the order of the real vocabulary.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

#: A compact chat template with the same prompt layout as Qwen2.5-VL's own.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: Vision patching shared by the model config and the processors (Qwen2.5-VL's real values).
PATCH_SIZE, MERGE_SIZE, TEMPORAL_PATCH_SIZE = 14, 2, 2
#: Tiny pixel budget: every image / frame is resized to between 1 and 4 merged patches.
_MIN_PIXELS, _MAX_PIXELS = (28 * 28), (28 * 28 * 4)


def build_tokenizer():
    """A Qwen2 tokenizer over the 256 byte-level symbols plus Qwen's special tokens."""
    from tokenizers import pre_tokenizers
    from transformers import Qwen2Tokenizer

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: index for index, symbol in enumerate(symbols + list(SPECIAL_TOKENS))}
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        extra_special_tokens=list(SPECIAL_TOKENS[1:]),
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _tiny_vl_config(tokenizer, hidden_size: int = 32):
    from transformers import Qwen2_5_VLConfig

    ids = tokenizer.convert_tokens_to_ids
    half_head = hidden_size // 2 // 2  # rotary half of one of the 2 heads, split over (t, h, w)
    spatial = 3 * half_head // 8
    return Qwen2_5_VLConfig(
        text_config={
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rope_scaling": {"type": "mrope", "mrope_section": [half_head - 2 * spatial, spatial, spatial]},
            "rope_theta": 1_000_000.0,
            "vocab_size": len(tokenizer),
            "tie_word_embeddings": True,
            "bos_token_id": ids("<|endoftext|>"),
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": ids("<|endoftext|>"),
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 32,
            "num_heads": 2,
            "out_hidden_size": hidden_size,
            "patch_size": PATCH_SIZE,
            "spatial_merge_size": MERGE_SIZE,
            "temporal_patch_size": TEMPORAL_PATCH_SIZE,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        },
        vocab_size=len(tokenizer),
        bos_token_id=ids("<|endoftext|>"),
        eos_token_id=ids("<|im_end|>"),
        pad_token_id=ids("<|endoftext|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        tie_word_embeddings=True,
    )


def build_tiny_qwen_vl(seed: int = 0, hidden_size: int = 32):
    """(model, tokenizer) — a random Qwen2.5-VL with a 2-layer text model and 2-block vision tower."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(_tiny_vl_config(tokenizer, hidden_size)).eval()
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.convert_tokens_to_ids(token) for token in ("<|im_end|>", "<|endoftext|>")],
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    return model, tokenizer


def build_processor(tokenizer, processor_cls=None):
    """A Qwen2.5-VL processor (or ``processor_cls``) with a tiny pixel budget for images and videos."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    size = {"shortest_edge": _MIN_PIXELS, "longest_edge": _MAX_PIXELS}
    patching = {"patch_size": PATCH_SIZE, "merge_size": MERGE_SIZE, "temporal_patch_size": TEMPORAL_PATCH_SIZE}
    processor_cls = processor_cls or Qwen2_5_VLProcessor
    return processor_cls(
        image_processor=Qwen2VLImageProcessor(size=size, **patching),
        video_processor=Qwen2VLVideoProcessor(size=size, do_sample_frames=False, **patching),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )


def save_tiny_qwen_vl(directory: Path) -> Path:
    """Save a tiny Qwen2.5-VL chat model + processor to ``directory`` (safetensors) and return it."""
    directory = Path(directory)
    model, tokenizer = build_tiny_qwen_vl()
    model.save_pretrained(directory, safe_serialization=True)
    build_processor(tokenizer).save_pretrained(directory)
    return directory


def save_tiny_qwen_image_edit(directory: Path) -> Path:
    """Save a tiny ``QwenImageEditPipeline`` (random transformer / VAE, tiny Qwen2.5-VL text encoder)."""
    import torch
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageEditPipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2VLProcessor

    directory = Path(directory)
    text_encoder, tokenizer = build_tiny_qwen_vl(hidden_size=16)
    torch.manual_seed(0)
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=3,
        joint_attention_dim=16,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )
    z_dim = 4
    vae = AutoencoderKLQwenImage(
        base_dim=z_dim * 6,
        z_dim=z_dim,
        dim_mult=[1, 2, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.0] * z_dim,
        latents_std=[1.0] * z_dim,
    )
    pipeline = QwenImageEditPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        processor=build_processor(tokenizer, Qwen2VLProcessor),
        transformer=transformer,
    )
    pipeline.save_pretrained(directory, safe_serialization=True)
    return directory
