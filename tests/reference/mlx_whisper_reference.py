"""mlx-whisper's transcription of a clip, the reference for the engine's Whisper parity tests.

    mlx_whisper_reference.py MODEL_DIR CLIP.wav OUT_DIR [--task transcribe|translate] [--language xx]

MODEL_DIR is an mlx-whisper folder (config.json, weights.safetensors); CLIP is 16 kHz mono
16-bit WAV (what mlx-whisper's ffmpeg loader would produce), read here with `wave` so that both
sides get the same float samples. The model runs in float32: `load_model` keeps float16 files in
float16 whatever dtype it is given, so the parameters are cast here and the model pinned in
`ModelHolder`, where `transcribe` finds it (the engine upcasts float16 to float32 on the CPU too).
Decoding is greedy (`temperature=0.0`: no sampling fallback, whose draws cannot match).

Writes to OUT_DIR:
  samples.f32  the clip's samples (raw little-endian float32), which the Rust test transcribes
  mel.f32      log_mel_spectrogram(samples, n_mels, padding=N_SAMPLES), [frames, n_mels]
  filters.f32  the mel filter bank mlx-whisper ships (assets/mel_filters.npz), [n_mels, 201]
  result.json  text, language and every segment (seek, start, end, text, tokens, ...)

Exits with status 3 when mlx-whisper is not installed (the tests then skip).

mlx-whisper imports numba and scipy.signal for word timestamps only; when they are not
installed, stand-ins are put in their place (word timestamps are never asked for here).
"""

import argparse
import json
import pathlib
import sys
import types
import wave

import numpy as np


def stand_in_word_timestamp_dependencies():
    """numba.jit as a no-op decorator and an empty scipy.signal, when they are missing."""
    try:
        import numba  # noqa: F401
    except ImportError:
        numba = types.ModuleType("numba")
        numba.jit = lambda *args, **kwargs: (lambda f: f)
        sys.modules["numba"] = numba
    try:
        import scipy.signal  # noqa: F401
    except ImportError:
        scipy = types.ModuleType("scipy")
        scipy.signal = types.ModuleType("scipy.signal")
        sys.modules["scipy"] = scipy
        sys.modules["scipy.signal"] = scipy.signal


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("clip")
    parser.add_argument("out")
    parser.add_argument("--task", default="transcribe", choices=["transcribe", "translate"])
    parser.add_argument("--language", default=None)
    args = parser.parse_args()

    stand_in_word_timestamp_dependencies()
    try:
        import mlx_whisper  # noqa: F401
    except ImportError as e:
        print(f"mlx-whisper is not installed ({e}): run ./scripts/setup.sh", file=sys.stderr)
        sys.exit(3)
    import mlx.core as mx
    from mlx.utils import tree_map
    import mlx_whisper
    from mlx_whisper.audio import N_SAMPLES, log_mel_spectrogram, mel_filters
    from mlx_whisper.load_models import load_model
    from mlx_whisper.transcribe import ModelHolder

    with wave.open(args.clip) as w:
        shape = (w.getframerate(), w.getnchannels(), w.getsampwidth())
        assert shape == (16000, 1, 2), f"{args.clip}: {shape}, not 16 kHz mono 16-bit"
        pcm = w.readframes(w.getnframes())
    audio = np.frombuffer(pcm, np.int16).astype(np.float32) / 32768.0

    model = load_model(args.model, dtype=mx.float32)
    model.update(
        tree_map(lambda p: p.astype(mx.float32) if p.dtype == mx.float16 else p, model.parameters())
    )
    ModelHolder.model, ModelHolder.model_path = model, args.model
    result = mlx_whisper.transcribe(
        audio,
        path_or_hf_repo=args.model,
        fp16=False,
        verbose=None,
        temperature=0.0,
        language=args.language,
        task=args.task,
    )

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    audio.astype("<f4").tofile(out / "samples.f32")
    n_mels = model.dims.n_mels
    mel = log_mel_spectrogram(audio, n_mels, N_SAMPLES)
    np.asarray(mel, dtype="<f4").tofile(out / "mel.f32")
    np.asarray(mel_filters(n_mels), dtype="<f4").tofile(out / "filters.f32")
    keys = ("seek", "start", "end", "text", "tokens", "temperature", "avg_logprob",
            "no_speech_prob", "compression_ratio")
    summary = {
        "text": result["text"],
        "language": result["language"],
        "n_mels": n_mels,
        "mel_frames": int(mel.shape[0]),
        "segments": [{k: s[k] for k in keys} for s in result["segments"]],
    }
    (out / "result.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
