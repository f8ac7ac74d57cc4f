#!/usr/bin/env bash
# Debian packages the test suite needs beyond Python: Chromium renders the HTML report
# (tests/test_report_html.py), chromedriver lets selenium drive it through the desk's screen
# (tests/test_desk.py), and docker-compose validates docker-compose.yml without an engine.
set -euo pipefail
packages=(chromium chromium-driver docker-compose)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]}; install them as root: apt-get install ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
