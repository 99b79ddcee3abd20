#!/usr/bin/env bash
# Set up this checkout on a fresh machine (Debian, Python 3.11): what the README's first command runs.
#  - Debian's Chromium and chromium-driver, for the tests that open the HTML pages and drive the
#    review desk in a real headless browser;
#  - Debian's espeak-ng, the synthetic speech in the open-set check set (bench/open_set.py);
#  - a virtualenv in .venv with the project and its dev tools, at the tested versions
#    (constraints.txt; torch 2.13.0 is the CPU build from the machine's local wheel folder).
set -euo pipefail
cd "$(dirname "$0")"
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
python3.11 -m venv .venv
.venv/bin/pip install -c constraints.txt -e '.[dev]'
