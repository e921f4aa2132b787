"""The PyTorch side of `cargo xtask bench vision`: the same architectures (CLIP ViT-B/32 vision
tower + projection, ViT-B/16 with 1000 classes) with random weights, images/s at batch 1 and
16 on CPU, best of N after a warm-up, with torch limited to the given thread count.

    python vision_reference.py '{"threads": 2, "runs": 3}'     # prints one JSON object

Needs torch and transformers (the fixture venv of tools/gen_fixtures.py has both).
"""

import json
import sys
import time

import torch
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, ViTConfig, ViTForImageClassification


def rate(model, batch, runs):
    pixels = torch.randn(batch, 3, 224, 224)
    with torch.inference_mode():
        model(pixel_values=pixels)
        best = float("inf")
        for _ in range(runs):
            started = time.perf_counter()
            model(pixel_values=pixels)
            best = min(best, time.perf_counter() - started)
    return batch / best


def main():
    args = json.loads(sys.argv[1])
    torch.set_num_threads(args["threads"])
    clip = CLIPVisionModelWithProjection(CLIPVisionConfig(projection_dim=512)).eval()
    vit = ViTForImageClassification(ViTConfig(num_labels=1000)).eval()
    out = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    for name, model in [("clip_b32", clip), ("vit_b16", vit)]:
        for batch in (1, 16):
            out[f"{name}_batch{batch}"] = rate(model, batch, args["runs"])
            print(f"vision_reference: {name} batch {batch}: {out[f'{name}_batch{batch}']:.2f} images/s", file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
