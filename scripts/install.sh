#!/usr/bin/env bash
# Installs runyard for this user and starts the platform with its embedded defaults (`runyard up`).
# Works with a distribution's own python3, which refuses pip installs outside a virtual environment
# (PEP 668): runyard goes into its own virtual environment, and the `runyard` command is linked into
# ~/.local/bin. Run it again to upgrade from this checkout (the embedded server restarts on the new
# version). PYTHON picks another interpreter (3.11+).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

PYTHON=${PYTHON:-python3}
VENV="${XDG_DATA_HOME:-$HOME/.local/share}/runyard/venv"
BIN="$HOME/.local/bin"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "runyard needs Python 3.11 or newer; $PYTHON is $("$PYTHON" -V 2>&1 || echo missing)" >&2
  exit 1
fi

ensure_venv_support "$PYTHON"

# Runs are sandboxed with bubblewrap where it is installed; without it they run unsandboxed, and say so.
if ! command -v bwrap >/dev/null; then
  apt_install bubblewrap 2>/dev/null || echo "   note: install bubblewrap to sandbox runs (sudo apt-get install bubblewrap)"
fi

if ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  echo "== making a virtual environment in $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
fi

echo "== installing runyard into it"
quiet "$VENV/bin/python" -m pip install -q --disable-pip-version-check .

mkdir -p "$BIN"
ln -sf "$VENV/bin/runyard" "$BIN/runyard"
echo "== the runyard command is $BIN/runyard"
case ":$PATH:" in
  *":$BIN:"*) ;;
  *) echo "   $BIN is not on your PATH: add it with  export PATH=\"$BIN:\$PATH\"" ;;
esac

# An embedded server still running the version before makes way for this one; its runs carry on.
"$BIN/runyard" down >/dev/null 2>&1 || true
"$BIN/runyard" up
