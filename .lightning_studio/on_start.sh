#!/usr/bin/env bash
# Lightning Studio start-up hook (Studios run ~/.lightning_studio/on_start.sh when they start).
# All set-up lives in .lightning/setup.sh; keep this file a one-line call into it.
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.lightning/setup.sh"
