#!/bin/sh
# The test command: set up .venv if needed, then run the whole test suite (CPU only).
. "$(dirname "$0")/env.sh"
exec python -m pytest -q tests "$@"
