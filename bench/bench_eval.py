"""Cost and reproducibility of ``ditto-hf eval``'s CLIP scoring, with a CLIP of ``openai/clip-vit-large-patch14``'s
exact architecture (random weights: nothing is downloaded) on the bundled clips.

Measures, per scored frame: decoding, preprocessing, the vision tower, the text tower and the score
reductions. Then compares the two ways of calling the vision tower on a step of several videos:

- baseline: one call on all the step's frames (the shape depends on which videos share the step);
- ``ClipScorer.embed``: fixed calls of ``FRAMES_PER_CALL`` frames (the last one padded) and the
  projection one frame at a time;

reporting the speed ratio and whether a video's embeddings are bit-identical when it is scored
alone or together with the others.

    python bench/bench_eval.py [--frames 12] [--threads 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from ditto_hf.evaluate.clip_scores import FRAMES_PER_CALL, ClipScorer, frame_scores
from ditto_hf.samples import sample_clips
from ditto_hf.tiny.clip import build_clip_processor, build_clip_tokenizer

#: openai/clip-vit-large-patch14's config.json (towers, widths, depths, projection).
VIT_L_14 = {
    "text_config": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12},
    "vision_config": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16},
    "projection_dim": 768,
}


def vit_l_scorer(num_frames: int) -> ClipScorer:
    from transformers import CLIPConfig, CLIPModel

    processor = build_clip_processor(build_clip_tokenizer())
    ids = processor.tokenizer.convert_tokens_to_ids
    text = {**VIT_L_14["text_config"], "vocab_size": len(processor.tokenizer), "max_position_embeddings": 77}
    text.update(bos_token_id=ids("<|startoftext|>"), eos_token_id=ids("<|endoftext|>"), pad_token_id=ids("<|endoftext|>"))
    vision = {**VIT_L_14["vision_config"], "image_size": 224, "patch_size": 14}
    config = CLIPConfig(text_config={**text, "hidden_act": "quick_gelu"}, vision_config={**vision, "hidden_act": "quick_gelu"})
    config.projection_dim = VIT_L_14["projection_dim"]
    torch.manual_seed(0)
    return ClipScorer(CLIPModel(config).eval(), processor, num_frames=num_frames, name="random ViT-L/14")


def timed(function, *args, repeats: int = 1):
    """(result, best seconds over ``repeats`` calls)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args)
        best = min(best, time.perf_counter() - start)
    return result, best


@torch.inference_mode()
def baseline_embed(scorer: ClipScorer, videos) -> None:
    """Every frame of the step in one ``get_image_features`` call."""
    pixels = torch.cat([video.pixel_values for video in videos])
    embeddings = scorer.model.get_image_features(pixel_values=pixels).pooler_output.float()
    for video, part in zip(videos, torch.split(embeddings, [len(video.pixel_values) for video in videos]), strict=True):
        video.embeddings = part


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=12, help="frames scored per clip (spread evenly)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=2, help="vision timings: best of this many")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scorer = vit_l_scorer(args.frames)
    clips = sample_clips()[:3]
    frames, decode_s = timed(lambda: [scorer.read(clip) for clip in clips])
    total = sum(len(clip) for clip in frames)
    prepared, prepare_s = timed(lambda: [scorer.prepare(clip) for clip in frames])
    instructions = [f"Turn clip {index} into a watercolour painting." for index in range(len(clips))]
    baseline_embed(scorer, prepared[:1])  # warm-up
    scorer.text_embedding("warm-up")
    _, text_s = timed(lambda: [scorer.text_embedding(text) for text in instructions])

    rows = {}
    for name, embed in (("baseline: one call per step", baseline_embed), (f"fixed {FRAMES_PER_CALL}-frame calls", ClipScorer.embed)):
        _, together_s = timed(embed, scorer, prepared, repeats=args.repeats)
        together = [video.embeddings.clone() for video in prepared]
        embed(scorer, prepared[:1])  # the first clip alone
        rows[name] = (together_s, torch.equal(prepared[0].embeddings, together[0]))
        for video, embeddings in zip(prepared, together, strict=True):
            video.embeddings = embeddings
    text = scorer.text_embedding(instructions[0])[0]
    _, reduce_s = timed(lambda: [frame_scores(video, text) for video in prepared])

    distinct = sum(len(video.pixel_values) for video in prepared)
    print(f"random CLIP ViT-L/14, {len(clips)} clips, {total} frames scored ({distinct} distinct), {args.threads} threads")
    print(f"{'part':<36} {'seconds per frame':>18}")
    for part, seconds in (("decode", decode_s), ("preprocess (distinct frames once)", prepare_s)):
        print(f"{part:<36} {seconds / total:18.4f}")
    for name, (seconds, same) in rows.items():
        print(f"{'vision: ' + name:<36} {seconds / total:18.4f}   a clip alone == in the step: {same}")
    print(f"{'score reductions':<36} {reduce_s / total:18.6f}")
    print(f"text tower: {text_s / len(instructions):.4f} s per instruction")
    baseline, fixed = rows.values()
    print(f"fixed calls / baseline, vision time: {fixed[0] / baseline[0]:.2f}")


if __name__ == "__main__":
    main()
