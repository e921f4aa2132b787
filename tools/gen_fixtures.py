"""Parity fixtures for the worker's candle models that candle itself lacks.

Run by hand in a throwaway venv (never in CI):

    python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install torch transformers safetensors tokenizers pillow
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


def fixture_images(out):
    """Two small PNGs (lossless, so decoders agree to the bit): a landscape one larger than the
    tiny models' 32 px input (downscaling, antialiased) and a portrait one smaller (upscaling)."""
    from PIL import Image

    rng = np.random.default_rng(5)
    images = {}
    for name, (w, h) in {"landscape": (61, 45), "portrait": (21, 29)}.items():
        y, x = np.mgrid[0:h, 0:w]
        rgb = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], -1)
        rgb = np.clip(rgb + rng.normal(0, 20, rgb.shape), 0, 255).astype(np.uint8)
        path = os.path.join(out, f"image-{name}.png")
        Image.fromarray(rgb, "RGB").save(path)
        images[name] = Image.open(path)
    return images


def clip_tokenizer(path, corpus):
    """A tiny BPE tokenizer in CLIP's form (lower-cased, `</w>` word ends, byte-level, wrapped in
    <|startoftext|> … <|endoftext|>), with the two specials as the last ids as in OpenAI's vocab."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors, trainers, decoders

    tok = Tokenizer(models.BPE(end_of_word_suffix="</w>", unk_token=None))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, end_of_word_suffix="</w>", initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(corpus, trainer)
    tok.add_special_tokens(["<|startoftext|>", "<|endoftext|>"])
    bos, eos = tok.token_to_id("<|startoftext|>"), tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.RobertaProcessing(("<|endoftext|>", eos), ("<|startoftext|>", bos), trim_offsets=False, add_prefix_space=False)
    tok.save(path)
    return tok, bos, eos


def clip(out, images):
    from transformers import CLIPConfig, CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    name = "clip"
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    corpus = ["a photo of a cat", "a photo of a dog", "a red square", "a blue gradient", "noise on a screen"] * 4
    tok, bos, eos = clip_tokenizer(os.path.join(d, "tokenizer.json"), corpus)
    vocab = tok.get_vocab_size()
    assert eos == vocab - 1, "candle pools the text at argmax(ids): EOS must be the largest id"
    config = CLIPConfig(
        text_config=dict(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=16, bos_token_id=bos, eos_token_id=eos,
                         pad_token_id=eos),
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                           image_size=32, patch_size=8),
        projection_dim=16,
        architectures=["CLIPModel"],
    )
    torch.manual_seed(21)
    model = noisy(CLIPModel(config), 23).eval()
    model.save_pretrained(d, safe_serialization=True)
    processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor.save_pretrained(d)

    pixels = processor([images["landscape"], images["portrait"]], return_tensors="pt").pixel_values
    texts = ["a photo of a cat", "a blue gradient on a screen", "dog"]
    enc = tok.encode_batch(texts)
    longest = max(len(e.ids) for e in enc)
    ids = torch.tensor([e.ids + [eos] * (longest - len(e.ids)) for e in enc])
    with torch.no_grad():
        output = model(input_ids=ids, pixel_values=pixels)
    tensors = {
        "pixel_values": pixels,
        "input_ids": ids,
        "logits_per_image": output.logits_per_image,
        "logits_per_text": output.logits_per_text,
        "text_embeds": output.text_embeds,
        "image_embeds": output.image_embeds,
    }
    save_file({k: v.clone().contiguous() for k, v in tensors.items()}, os.path.join(out, f"{name}.safetensors"))
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump({"texts": texts, "images": ["image-landscape.png", "image-portrait.png"]}, f)
    print(name, "->", d, {k: os.path.getsize(os.path.join(d, k)) for k in os.listdir(d)})


def vit(out, images):
    from transformers import ViTConfig, ViTForImageClassification
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    name = "vit"
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    labels = ["tabby cat", "golden retriever", "red square", "gradient", "static noise"]
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                       image_size=32, patch_size=8, num_labels=len(labels),
                       id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)},
                       architectures=["ViTForImageClassification"])
    torch.manual_seed(31)
    model = noisy(ViTForImageClassification(config), 37).eval()
    model.save_pretrained(d, safe_serialization=True)
    processor = ViTImageProcessorPil(size={"height": 32, "width": 32})
    processor.save_pretrained(d)
    pixels = processor([images["landscape"], images["portrait"]], return_tensors="pt").pixel_values
    with torch.no_grad():
        logits = model(pixel_values=pixels).logits
    tensors = {"pixel_values": pixels, "logits": logits}
    save_file({k: v.clone().contiguous() for k, v in tensors.items()}, os.path.join(out, f"{name}.safetensors"))
    print(name, "->", d, {k: os.path.getsize(os.path.join(d, k)) for k in os.listdir(d)})


def llava(out, images):
    """LLaVA 1.5 (llava-hf layout): CLIP vision tower, 2-layer GELU projector, Llama with GQA.

    transformers 5 saves the vision tower as `vision_tower.embeddings/encoder…`, while hub
    checkpoints use `vision_tower.vision_model.…`: the fixture keeps what v5 writes, and the Rust
    test also loads it renamed to the hub form."""
    from safetensors.torch import load_file
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers, processors
    from transformers import LlavaConfig, LlavaForConditionalGeneration
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    name = "llava"
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    # Byte-level BPE with Llama's specials first (<unk> 0, <s> 1, </s> 2) and <image> last.
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["USER: what is in the picture? ASSISTANT: a gradient of red and green",
              "describe the image", "a photo of noise", "the colours are bright"] * 4
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<unk>", "<s>", "</s>"])
    tok.train_from_iterator(corpus, trainer)
    tok.add_special_tokens(["<image>"])
    image_token = tok.token_to_id("<image>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok.save(os.path.join(d, "tokenizer.json"))
    vocab = tok.get_vocab_size()

    config = LlavaConfig(
        vision_config=dict(model_type="clip_vision_model", hidden_size=32, num_hidden_layers=3,
                           num_attention_heads=2, intermediate_size=37, image_size=32, patch_size=8,
                           projection_dim=16),
        text_config=dict(model_type="llama", vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, intermediate_size=48,
                         max_position_embeddings=128, rms_norm_eps=1e-6, bos_token_id=1,
                         eos_token_id=2, pad_token_id=0, tie_word_embeddings=False),
        image_token_index=image_token, projector_hidden_act="gelu", vision_feature_layer=-2,
        vision_feature_select_strategy="default", image_seq_length=16,
        architectures=["LlavaForConditionalGeneration"],
    )
    torch.manual_seed(41)
    model = noisy(LlavaForConditionalGeneration(config), 43).eval()
    model.save_pretrained(d, safe_serialization=True)
    weights = load_file(os.path.join(d, "model.safetensors"))
    print(name, "v5 keys:", sorted({".".join(k.split(".")[:3]) for k in weights}))
    processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor.save_pretrained(d)

    pixels = processor([images["landscape"]], return_tensors="pt").pixel_values
    prompt = "USER: <image>\ndescribe the image ASSISTANT:"
    ids = tok.encode(prompt).ids
    # HF's processor repeats the image token image_seq_length times.
    expanded = []
    for i in ids:
        expanded += [i] * 16 if i == image_token else [i]
    input_ids = torch.tensor([expanded])
    with torch.no_grad():
        output = model(input_ids=input_ids, pixel_values=pixels)
        generated = model.generate(input_ids=input_ids, pixel_values=pixels, max_new_tokens=8,
                                   do_sample=False, eos_token_id=2, pad_token_id=0)
    new_tokens = generated[0, input_ids.shape[1]:].tolist()
    tensors = {
        "pixel_values": pixels,
        "input_ids": input_ids,
        "logits": output.logits[0],
    }
    save_file({k: v.clone().contiguous() for k, v in tensors.items()}, os.path.join(out, f"{name}.safetensors"))
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump({"prompt": prompt, "prompt_ids": ids, "generated_ids": new_tokens,
                   "generated_text": tok.decode(new_tokens, skip_special_tokens=True),
                   "image": "image-landscape.png"}, f)
    print(name, "->", d, {k: os.path.getsize(os.path.join(d, k)) for k in os.listdir(d)})


def xclip(out, images):
    """X-CLIP: CLIP vision per frame with cross-frame message tokens, the multi-frame
    integration transformer, the video-specific prompt generator, CLIP's text tower. The video is
    a 4-frame GIF (committed); frames are decoded by PIL and preprocessed per frame by
    VideoMAE's PIL image processor, as the model card does."""
    from PIL import Image
    from transformers import XCLIPConfig, XCLIPModel
    from transformers.models.videomae.image_processing_pil_videomae import VideoMAEImageProcessorPil

    name = "xclip"
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    corpus = ["a video of a cat", "a person dancing", "noise on a screen", "a red square moving"] * 4
    tok, bos, eos = clip_tokenizer(os.path.join(d, "tokenizer.json"), corpus)
    vocab = tok.get_vocab_size()
    config = XCLIPConfig(
        text_config=dict(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=16, bos_token_id=bos,
                         eos_token_id=eos, pad_token_id=eos),
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                           image_size=32, patch_size=8, num_frames=4, mit_hidden_size=16,
                           mit_intermediate_size=24, mit_num_hidden_layers=1, mit_num_attention_heads=2),
        projection_dim=16, prompt_layers=2, prompt_num_attention_heads=2, prompt_alpha=0.1,
        architectures=["XCLIPModel"],
    )
    torch.manual_seed(51)
    model = noisy(XCLIPModel(config), 53).eval()
    model.save_pretrained(d, safe_serialization=True)
    processor = VideoMAEImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor.save_pretrained(d)

    rng = np.random.default_rng(9)
    frames = []
    for i in range(4):
        y, x = np.mgrid[0:40, 0:48]
        rgb = np.stack([(x + 10 * i) * 5 % 256, y * 6, np.full_like(x, 60 * i)], -1).astype(float)
        rgb = np.clip(rgb + rng.normal(0, 25, rgb.shape), 0, 255).astype(np.uint8)
        frames.append(Image.fromarray(rgb, "RGB"))
    gif = os.path.join(out, "video.gif")
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0, optimize=False)
    decoded = []
    with Image.open(gif) as video:
        for i in range(video.n_frames):
            video.seek(i)
            decoded.append(video.convert("RGB"))
    assert len(decoded) == 4
    pixels = torch.stack([processor(f, return_tensors="pt").pixel_values.reshape(-1, 3, 32, 32)[0] for f in decoded]).unsqueeze(0)
    texts = ["a video of a cat", "a person dancing", "noise"]
    enc = tok.encode_batch(texts)
    longest = max(len(e.ids) for e in enc)
    ids = torch.tensor([e.ids + [eos] * (longest - len(e.ids)) for e in enc])
    mask = torch.tensor([[1] * len(e.ids) + [0] * (longest - len(e.ids)) for e in enc])
    with torch.no_grad():
        output = model(input_ids=ids, attention_mask=mask, pixel_values=pixels)
    tensors = {
        "pixel_values": pixels,
        "input_ids": ids,
        "logits_per_video": output.logits_per_video,
        "text_embeds": output.text_embeds,
        "video_embeds": output.video_embeds,
    }
    save_file({k: v.clone().contiguous() for k, v in tensors.items()}, os.path.join(out, f"{name}.safetensors"))
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump({"texts": texts, "video": "video.gif"}, f)
    print(name, "->", d, {k: os.path.getsize(os.path.join(d, k)) for k in os.listdir(d)}, os.path.getsize(gif))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    only = set(sys.argv[2:])
    if not only or "wav2vec2" in only:
        wav2vec2(out, stable=False)
        wav2vec2(out, stable=True)
    if not only or "clap" in only:
        clap(out)
    if not only or only & {"clip", "vit", "llava", "xclip"}:
        images = fixture_images(out)
        if not only or "clip" in only:
            clip(out, images)
        if not only or "vit" in only:
            vit(out, images)
        if not only or "llava" in only:
            llava(out, images)
        if not only or "xclip" in only:
            xclip(out, images)


if __name__ == "__main__":
    main()
