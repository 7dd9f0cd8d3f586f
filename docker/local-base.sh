#!/usr/bin/env bash
# Builds, without a container registry, a local base image equivalent to the public
# node:20-bookworm-slim that docker/Dockerfile.cpu starts from: a debootstrap of Debian 12 (minbase)
# with this machine's Node 20 binary and npm in /usr/local, and the image's `node` user (uid 1000).
# Prints the image name; pass it to the build as --build-arg NODE_IMAGE=<name>.
#
#   bash docker/local-base.sh            # cached: instant when nothing changed
#   BASE_REFRESH=1 bash docker/local-base.sh   # new debootstrap (security updates)
#
# Caches (docs: README "Deploy"): the debootstrap root filesystem as a tarball in
# $BASE_CACHE (default ~/.cache/qwen3-embed), and the image itself in podman's storage, labelled with
# a key of the inputs (Debian suite, Node binary's sha256, npm version, this script's sha256).
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${BASE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qwen3-embed}
DEBIAN_IMAGE=${DEBIAN_IMAGE:-localhost/qwen3-embed-base/debian:bookworm-slim}
NODE_IMAGE=${NODE_IMAGE:-localhost/qwen3-embed-base/node:20-bookworm-slim}
PODMAN=${PODMAN:-podman --runtime runc}
log() { printf '[local-base] %s\n' "$*" >&2; }

node_bin=$(readlink -f "${NODE_BIN:-$(command -v node)}")
node_version=$("$node_bin" --version)
case $node_version in v20.*) ;; *) echo "need a Node 20 binary (NODE_BIN), found $node_version at $node_bin" >&2; exit 1 ;; esac
npm_dir=$(readlink -f "$(dirname "$(readlink -f "$(command -v npm)")")/..")
[ -f "$npm_dir/package.json" ] || { echo "npm not found beside $node_bin" >&2; exit 1; }
npm_version=$(node -p "require('$npm_dir/package.json').version")
key="$SUITE $(sha256sum < "$node_bin" | cut -c1-16) npm-$npm_version $(sha256sum < "$0" | cut -c1-16)"

current=$($PODMAN image inspect --format '{{index .Config.Labels "qwen3.base.key"}}' "$NODE_IMAGE" 2>/dev/null || true)
if [ "$current" = "$key" ] && [ "${BASE_REFRESH:-0}" != 1 ]; then
  log "$NODE_IMAGE is current ($node_version, npm $npm_version)"
  echo "$NODE_IMAGE"
  exit 0
fi

mkdir -p "$CACHE"
# The file name changes with the recipe above, so a changed recipe is not served from an old cache.
rootfs_tar=$CACHE/debian-$SUITE-minbase-slim.tar
if [ ! -f "$rootfs_tar" ] || [ "${BASE_REFRESH:-0}" = 1 ]; then
  command -v debootstrap > /dev/null || { echo "debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
  work=$(mktemp -d /tmp/qwen3-debootstrap.XXXXXX)
  trap 'rm -rf "$work" "${ctx:-}"' EXIT
  log "debootstrap --variant=minbase $SUITE from $MIRROR (a few minutes, once)"
  debootstrap --variant=minbase "$SUITE" "$work/root" "$MIRROR" > "$work/debootstrap.log" 2>&1 \
    || { tail -30 "$work/debootstrap.log" >&2; exit 1; }
  # What the official debian:bookworm-slim carries: the three suites in deb822 form, no apt caches.
  rm -f "$work/root/etc/apt/sources.list"
  cat > "$work/root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: http://deb.debian.org/debian
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  # And its dpkg filter: no manuals, docs (but copyrights) or translations, now or in later layers.
  cat > "$work/root/etc/dpkg/dpkg.cfg.d/docker" <<DPKG
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
DPKG
  find "$work/root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
  rm -rf "$work/root/usr/share/man/"* "$work/root/usr/share/info/"* "$work/root/usr/share/locale/"* \
    "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"* "$work/root/var/log/"*.log
  tar -C "$work/root" --numeric-owner -cf "$rootfs_tar.tmp" .
  mv "$rootfs_tar.tmp" "$rootfs_tar"
fi

log "importing $DEBIAN_IMAGE"
$PODMAN import --quiet --change 'CMD ["bash"]' "$rootfs_tar" "$DEBIAN_IMAGE" > /dev/null

# The node layer, as the official image lays it out: node and npm under /usr/local, user node (1000).
ctx=$(mktemp -d /tmp/qwen3-node-base.XXXXXX)
trap 'rm -rf "${work:-}" "$ctx"' EXIT
cp "$node_bin" "$ctx/node"
cp -a "$npm_dir" "$ctx/npm"
cat > "$ctx/Containerfile" <<CONTAINERFILE
FROM $DEBIAN_IMAGE
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
RUN groupadd --gid 1000 node \\
 && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \\
 && ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
 && node --version && npm --version
CMD ["node"]
CONTAINERFILE
log "building $NODE_IMAGE (node $node_version, npm $npm_version)"
$PODMAN build --quiet --network host --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 \
  --label "qwen3.base.key=$key" -t "$NODE_IMAGE" "$ctx" > /dev/null
echo "$NODE_IMAGE"
