#!/usr/bin/env bash
# Runs a command with Node >= 22 first on PATH (scripts/node-env.sh installs Node 24 from the npm
# registry when the system Node is older). npm start and npm run traffic go through it.
. "$(dirname "$0")/node-env.sh" || exit 1
exec "$@"
