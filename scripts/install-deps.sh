#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages gpuhook needs to build, test and run.
# Only missing packages are installed: apt-get as root, sudo otherwise.
set -euo pipefail

pkgs=(build-essential cmake pkg-config openssl curl git
      libmicrohttpd-dev libssl-dev libcjson-dev libcurl4-openssl-dev libyaml-dev libcmocka-dev
      python3 python3-pytest python3-yaml python3-jsonschema python3-kubernetes shellcheck)

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}" >&2
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
