#!/usr/bin/env bash
# Set up this checkout on a fresh machine (Debian, Python 3.11): what the README's first command runs.
#  - Debian's Chromium, for the test that opens the HTML pages in a real headless browser;
#  - a virtualenv in .venv with the project and its dev tools, at the tested versions
#    (constraints.txt; torch 2.13.0 is the CPU build from the machine's local wheel folder).
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v chromium >/dev/null; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium
fi
python3.11 -m venv .venv
.venv/bin/pip install -c constraints.txt -e '.[dev]'
