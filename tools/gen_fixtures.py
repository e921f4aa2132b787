"""Parity fixtures for the worker's candle models that candle itself lacks.

Run by hand in a throwaway venv (never in CI):

    python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install torch transformers safetensors tokenizers
    /tmp/refvenv/bin/python tools/gen_fixtures.py crates/worker/tests/fixtures [family…]

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


def clap(out):
    """CLAP (HTSAT audio + RoBERTa text) with fusion: features, embeddings and logits.

    HF's fusion crops of a long clip are random (`np.random.choice` over the front, middle
    and back thirds). The Rust extractor takes the middle of each range instead, so the
    generator pins `np.random.choice` to that rule while computing the committed features.
    A lone short clip gets `is_longer=True` from HF (it marks one random clip of an
    all-short batch); the batch below mixes a short and a long clip so both model paths run.
    """
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, RobertaTokenizerFast

    name = "clap"
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)

    # A byte-level BPE tokenizer in RoBERTa's form (<s> … </s>, <pad> = 1), trained here.
    corpus = ["the sound of a dog barking", "rain falling on a window", "a bell ringing",
              "birds singing in the morning", "a car engine", "people talking", "music playing"] * 4
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=300, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0))
    bpe.save(os.path.join(d, "tokenizer.json"))
    tokenizer = RobertaTokenizerFast(tokenizer_file=os.path.join(d, "tokenizer.json"))
    vocab = bpe.get_vocab_size()

    config = ClapConfig(
        text_config=dict(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=40, pad_token_id=1),
        audio_config=dict(num_mel_bins=64, spec_size=128, patch_size=4, patch_stride=[4, 4], window_size=8,
                          depths=[2, 2], num_attention_heads=[2, 2], patch_embeds_hidden_size=16,
                          hidden_size=32, enable_fusion=True, fusion_type="aff_2d"),
        projection_dim=16,
        architectures=["ClapModel"],
    )
    torch.manual_seed(13)
    model = ClapModel(config)
    noisy(model, 17)
    # BatchNorm statistics too (they are buffers, so `noisy` leaves them at 0/1).
    g = torch.Generator().manual_seed(19)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.add_(torch.randn(module.running_mean.shape, generator=g) * 0.1)
                module.running_var.mul_(1 + torch.rand(module.running_var.shape, generator=g))
    model.eval()
    model.save_pretrained(d, safe_serialization=True)

    extractor = ClapFeatureExtractor(feature_size=64, sampling_rate=48000, hop_length=480, max_length_s=1,
                                     fft_window_size=1024, truncation="fusion", padding="repeatpad")
    extractor.save_pretrained(d)

    rng = np.random.default_rng(2)
    def tone(seconds, f0, f1):
        t = np.arange(int(48000 * seconds)) / 48000
        phase = 2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds))
        return (0.4 * np.sin(phase) + 0.02 * rng.standard_normal(t.shape)).astype(np.float32)
    short = tone(0.4, 300, 900)
    long = tone(1.6, 2000, 400)

    real_choice = np.random.choice
    np.random.choice = lambda options: options[len(options) // 2]
    try:
        f_short = extractor(short, sampling_rate=48000, return_tensors="pt")
        f_long = extractor(long, sampling_rate=48000, return_tensors="pt")
    finally:
        np.random.choice = real_choice
    assert bool(f_short.is_longer[0, 0]) and bool(f_long.is_longer[0, 0])

    texts = ["a dog barking", "rain on a window"]
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    features = torch.cat([f_short.input_features, f_long.input_features]).float()
    is_longer = torch.tensor([[False], [True]])
    with torch.no_grad():
        output = model(input_ids=encoded.input_ids, attention_mask=encoded.attention_mask,
                       input_features=features, is_longer=is_longer)
        # The lone short clip as HF classifies it (is_longer=True).
        alone = model.get_audio_features(input_features=f_short.input_features.float(),
                                         is_longer=f_short.is_longer).pooler_output
    tensors = {
        "raw_short": torch.from_numpy(short),
        "raw_long": torch.from_numpy(long),
        "features_short": f_short.input_features[0].float(),
        "features_long": f_long.input_features[0].float(),
        "input_ids": encoded.input_ids,
        "attention_mask": encoded.attention_mask,
        "logits_per_audio": output.logits_per_audio,
        "logits_per_text": output.logits_per_text,
        "text_embeds": output.text_embeds,
        "audio_embeds": output.audio_embeds,
        "audio_embeds_alone": alone,
    }
    save_file({k: v.clone().contiguous() for k, v in tensors.items()}, os.path.join(out, f"{name}.safetensors"))
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump({"texts": texts}, f)
    print(name, "->", d, {k: os.path.getsize(os.path.join(d, k)) for k in os.listdir(d)},
          os.path.getsize(os.path.join(out, f"{name}.safetensors")))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    only = set(sys.argv[2:])
    if not only or "wav2vec2" in only:
        wav2vec2(out, stable=False)
        wav2vec2(out, stable=True)
    if not only or "clap" in only:
        clap(out)


if __name__ == "__main__":
    main()
