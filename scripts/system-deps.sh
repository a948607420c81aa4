#!/usr/bin/env bash
# Installs the Debian packages the test suite uses for real: Syncthing, Chromium,
# exiftool (benchmark baseline), systemd (systemd-analyze verify), sqlite3.
# Idempotent: does nothing when every command is present.
set -euo pipefail

need=()
command -v syncthing >/dev/null 2>&1 || need+=(syncthing)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v exiftool >/dev/null 2>&1 || need+=(libimage-exiftool-perl)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "installing system packages: ${need[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
