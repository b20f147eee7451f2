# Shared by scripts/serve and scripts/test: idempotent installs on Debian.
# shellcheck shell=bash

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
APT_UPDATED=""

# apt_install PKG...: installs the packages that are missing (apt-get update once, first time).
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null; then
    echo "missing packages: ${missing[*]} (no apt-get here; install them yourself)" >&2
    return 1
  fi
  if [ -z "$APT_UPDATED" ]; then
    $SUDO apt-get update -qq
    APT_UPDATED=1
  fi
  echo "installing: ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
}

# ensure_rust: a Rust toolchain new enough for edition 2024 (1.85+).
ensure_rust() {
  if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
  if command -v cargo >/dev/null; then return 0; fi
  apt_install ca-certificates
  # Debian 13+ ships rustup; older releases' rustc is too old for this workspace.
  if apt-cache show rustup >/dev/null 2>&1; then
    apt_install rustup
    rustup default stable
  else
    apt_install cargo rustc
  fi
  command -v cargo >/dev/null || { echo "no Rust toolchain could be installed" >&2; return 1; }
}

# Node.js and npm: the web crate's build fetches hls.js with `npm ci` (web/package-lock.json)
# and the browser tests drive Chromium with playwright-core. A Node.js from elsewhere (e.g.
# NodeSource, which bundles npm) is kept.
ensure_node() {
  if command -v node >/dev/null && command -v npm >/dev/null; then return 0; fi
  apt_install nodejs npm
}

# Build dependencies of the workspace (C parts of openh264 and aws-lc; libopus, libdav1d and
# libvpx that the HLS transcoder links; nasm for rav1e's x86 assembly).
ensure_build_deps() {
  ensure_node
  apt_install build-essential pkg-config nasm libopus-dev libdav1d-dev libvpx-dev
}
