#!/usr/bin/env bash
# A venv with pharox and its PostgreSQL extra, for the compatibility tests
# (tests/it/support/pg.rs builds it on demand under target/tmp and reuses it).
# Usage: scripts/pharox-venv.sh DIR
# Needs python3 with the venv module (Debian: python3-venv) and access to PyPI.
# Concurrent callers are serialised with flock; a finished venv is reused.
set -euo pipefail
dir=${1:?usage: pharox-venv.sh DIR}
version=${PHAROX_VERSION:-0.11.0}
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
if [ -e "$dir/.ready" ]; then
    exit 0
fi
rm -rf "$dir"
python3 -m venv "$dir"
# greenlet: pharox.storage.postgres imports its async adapter unconditionally,
# and SQLAlchemy's asyncio module needs greenlet, which the `postgres` extra
# does not pull in (pharox 0.11.0).
"$dir/bin/pip" install --quiet "pharox[postgres]==${version}" greenlet
"$dir/bin/python" -c 'import pharox.storage.postgres, psycopg'
touch "$dir/.ready"
