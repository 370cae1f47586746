#!/usr/bin/env bash
# Runs CMD... inside a private D-Bus session with an unlocked gnome-keyring (Secret Service),
# in a temporary HOME/XDG_DATA_HOME, so keyring tests use a real store and never your own.
#   scripts/with-keyring.sh cargo test -p mlxk-cli --test hub_login
set -euo pipefail
if (($# == 0)); then
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 2
fi
for tool in dbus-run-session gnome-keyring-daemon; do
  command -v "$tool" >/dev/null || { echo "$0: $tool is missing (apt-get install dbus gnome-keyring)" >&2; exit 1; }
done

if [[ "${MLXK_IN_KEYRING_SESSION:-}" != 1 ]]; then
  scratch="$(mktemp -d "${TMPDIR:-/tmp}/mlxk-keyring.XXXXXX")"
  trap 'rm -rf "$scratch"' EXIT
  # Keep the toolchain where it is: only the keyring's HOME changes.
  export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"
  export HOME="$scratch/home" XDG_DATA_HOME="$scratch/data" XDG_RUNTIME_DIR="$scratch/run"
  export XDG_CONFIG_HOME="$scratch/config" XDG_CACHE_HOME="$scratch/cache"
  mkdir -p "$HOME" "$XDG_DATA_HOME" "$XDG_RUNTIME_DIR" "$XDG_CONFIG_HOME" "$XDG_CACHE_HOME"
  chmod 700 "$XDG_RUNTIME_DIR"
  # Not exec: the trap must remove the scratch folder afterwards.
  MLXK_IN_KEYRING_SESSION=1 dbus-run-session -- "$0" "$@"
  exit $?
fi

# Inside the session: start the keyring daemon (it prints the variables clients need) and
# unlock the login keyring with a throwaway password; it becomes the default collection.
eval "$(printf 'mlxk-test' | gnome-keyring-daemon --unlock --components=secrets)"
export GNOME_KEYRING_CONTROL
"$@"
