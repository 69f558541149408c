#!/usr/bin/env bash
# Install the pinned ts-mls interop driver dependencies into tests/interop/node/node_modules
# (git-ignored) from the committed package-lock.json.  Idempotent: does nothing when the
# installed tree already matches the lock file.  Needs node >= 20 and npm on PATH.
set -euo pipefail
cd "$(dirname "$0")/node"

for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "setup.sh: '$tool' is not on PATH; the ts-mls interop tests need Node.js >= 20 and npm" >&2
    exit 1
  }
done

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "setup.sh: Node.js >= 20 is required by ts-mls, found $(node --version)" >&2
  exit 1
fi

# `npm ls` exits non-zero when something in the lock file is missing or differs.
if [ -d node_modules ] && npm ls --all >/dev/null 2>&1; then
  exit 0
fi

npm ci --no-audit --no-fund --loglevel=error
