# Shell helpers the set-up scripts share (sourced, not run).

# Runs a command, hiding only a warning that some machines' pip config causes (find-links folders that
# do not exist); the command's exit status is kept (the scripts set pipefail).
quiet() { { "$@" 2>&1; } | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }

# Installs Debian or Ubuntu packages: as root with apt-get (its package lists updated once per script),
# else says what to install.
APT_UPDATED=""
apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "please install $* (on Debian or Ubuntu: sudo apt-get install $*), then run this again" >&2
    return 1
  fi
  if [ -z "$APT_UPDATED" ]; then
    apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Debian and Ubuntu ship venv's pip bootstrap (ensurepip) apart from Python, in pythonX.Y-venv.
ensure_venv_support() {
  "$1" -c 'import ensurepip, venv' 2>/dev/null && return 0
  local package
  package=$("$1" -c 'import sys; print("python%d.%d-venv" % sys.version_info[:2])')
  echo "== installing $package, which $1 needs to make virtual environments"
  apt_install "$package"
}
