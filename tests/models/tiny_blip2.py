"""A tiny random BLIP-2 checkpoint (``Blip2ForImageTextRetrieval`` layout) written with ``save_pretrained``: the
offline stand-in for blip2-itm-vit-g in the bridge tests and the real-data end-to-end test.

Pitfalls of transformers 5 (FACTS, §E): ``post_init`` zero-initialises ``query_tokens`` (all query outputs would be
equal and "max over queries" trivial), so they are randomised; ``BertTokenizer(vocab_file=…)`` is silently ignored,
so the tokenizer is built with ``vocab=``; ``use_qformer_text_input=True`` builds the Q-Former's text path.
"""

from __future__ import annotations

from pathlib import Path

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "the", "of", "to", "x", "person", "dog", "car", "horse",
         "bird", "walk", "run", "sit", "ride", "left", "right", "front", "behind", "next", "toward", "away", "above",
         "beneath", "taller", "larger", "faster", "fly", "stand", "play", "chase", "watch", "lie", "jump", "swim",
         "creep", "touch", "past", "bicycle", "cat", "ball", "sports", "##s", "##ing"]  # fmt: skip


def write_tiny_blip2(
    folder: str | Path,
    visual_dim: int = 24,
    num_queries: int = 4,
    embed_dim: int = 16,
    hidden: int = 32,
    layers: int = 2,
    seed: int = 0,
    words: list[str] | None = None,
) -> Path:
    """Writes the checkpoint (config.json, model.safetensors, tokenizer files) into ``folder``; returns it."""
    import torch
    from transformers import (
        BertTokenizer,
        Blip2Config,
        Blip2ForImageTextRetrieval,
        Blip2QFormerConfig,
        Blip2VisionConfig,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = list(dict.fromkeys([*WORDS, *(words or [])]))
    vocab_file = folder / "vocab.txt"  # a vocab file: the one constructor argument transformers 4.45 and 5 share
    vocab_file.write_text("".join(w + "\n" for w in vocab), encoding="utf-8")
    tok = BertTokenizer(str(vocab_file))
    torch.manual_seed(seed)
    cfg = Blip2Config(  # sub-configs as dicts: transformers 4.45 takes only those
        vision_config=Blip2VisionConfig(hidden_size=visual_dim, intermediate_size=2 * visual_dim, num_hidden_layers=1,
                                        num_attention_heads=4, image_size=28, patch_size=14).to_dict(),
        qformer_config=Blip2QFormerConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                                          num_attention_heads=4, intermediate_size=2 * hidden,
                                          max_position_embeddings=64, cross_attention_frequency=1,
                                          use_qformer_text_input=True).to_dict(),
        num_query_tokens=num_queries,
        image_text_hidden_size=embed_dim,
    )  # fmt: skip
    model = Blip2ForImageTextRetrieval(cfg).eval()
    with torch.no_grad():
        model.query_tokens.normal_(std=0.5)
        for p in model.qformer.parameters():  # post_init leaves biases at 0 and LayerNorms at 1: make them count
            p.add_(torch.randn_like(p) * 0.02)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
