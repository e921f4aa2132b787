"""Parity fixtures for the worker's candle models that candle itself lacks.

Run by hand in a throwaway venv (never in CI):

    python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install torch transformers safetensors
    /tmp/refvenv/bin/python tools/gen_fixtures.py crates/worker/tests/fixtures

For each family it builds a tiny randomly initialised model from a config (then adds seeded
noise to every parameter, so a transposed or misnamed tensor cannot pass by symmetry), saves
its safetensors + config + vocabulary as a model directory, a fixed input, what the HF
processor computes from it, and the model's outputs. The Rust tests load the directory through
the registry and must match within 1e-4. Each fixture stays well under 1 MB.
"""

import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file


def noisy(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def wav2vec2(out, stable):
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

    name = "wav2vec2-stable" if stable else "wav2vec2"
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "A": 5, "B": 6, "C": 7, "D": 8, "E": 9, "'": 10, "F": 11}
    config = Wav2Vec2Config(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, conv_dim=(16, 16, 16), conv_stride=(5, 2, 2), conv_kernel=(10, 3, 3),
        conv_bias=stable, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        feat_extract_norm="layer" if stable else "group", do_stable_layer_norm=stable,
        hidden_act="gelu", feat_extract_activation="gelu", pad_token_id=0, layer_norm_eps=1e-5,
        architectures=["Wav2Vec2ForCTC"],
    )
    torch.manual_seed(7 if stable else 3)
    model = noisy(Wav2Vec2ForCTC(config), 11 if stable else 5).eval()
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    model.save_pretrained(d, safe_serialization=True)
    with open(os.path.join(d, "vocab.json"), "w") as f:
        json.dump(vocab, f)
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=stable)
    extractor.save_pretrained(d)

    rng = np.random.default_rng(1)
    t = np.arange(8000) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.shape)).astype(np.float32)
    features = extractor(audio, sampling_rate=16000, return_tensors="pt").input_values
    with torch.no_grad():
        output = model(features)
        # The base model's last_hidden_state (after the stable layout's final layer norm).
        last_hidden = model.wav2vec2(features).last_hidden_state[0]
    logits = output.logits[0]
    ids = logits.argmax(-1).tolist()
    # HF's CTC decoding as model cards use it (`processor.batch_decode`): repeats merged, then
    # blanks dropped, the word delimiter a space. The other special tokens are then removed
    # (with `skip_special_tokens=True` HF drops them *before* merging, which also merges
    # letters a blank separates: "l <pad> l" -> "l"; the Rust side keeps CTC's rule).
    from transformers import Wav2Vec2CTCTokenizer

    tokenizer = Wav2Vec2CTCTokenizer(os.path.join(d, "vocab.json"))
    text = tokenizer.decode(ids)
    for special in ("<s>", "</s>", "<unk>"):
        text = text.replace(special, "")
    text = " ".join(text.split())
    expected = {
        "audio": audio.tolist(),
        "input_values": features[0].tolist(),
        "logits": logits.tolist(),
        "ids": ids,
        "text": text,
        "embedding": last_hidden.mean(0).tolist(),
    }
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump(expected, f)
    print(name, "->", d, {k: os.path.getsize(os.path.join(d, k)) for k in os.listdir(d)})


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    wav2vec2(out, stable=False)
    wav2vec2(out, stable=True)


if __name__ == "__main__":
    main()
