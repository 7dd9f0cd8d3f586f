#!/usr/bin/env bash
# The CUDA image's build steps, in one place: docker/Dockerfile runs them, and so does a GPU host
# (scripts/device/run.sh step `image`), so a GPU run proves what the image ships. From the repository
# root:
#
#   bash docker/build-native.sh addon [NODE_MODULES]  compile build/native/Release/qwen3_embed.node
#                                                     against the Python torch's libtorch (CUDA, NCCL)
#   bash docker/build-native.sh stage DEST [APP_DIR]  lay out DEST/app as the image's /app: package.json,
#                                                     dist/, node_modules/ (from APP_DIR, default .),
#                                                     build/native/Release/qwen3_embed.node
#   bash docker/build-native.sh check DEST            ldd every .node under DEST/app: each library must
#                                                     resolve, and be one the runtime stage holds
#                                                     (docker/cuda-runtime-libs.txt)
#
# NODE_MODULES holds node-api-headers and node-addon-api (default ./node_modules). Knobs:
# TORCH_CUDA_ARCH_LIST (default 9.0), CMAKE_EXTRA_ARGS, JOBS (default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ADDON=build/native/Release/qwen3_embed.node
LIBS_LIST=$ROOT/docker/cuda-runtime-libs.txt
log() { printf '[build-native] %s\n' "$*" >&2; }

# site-packages of the Python that holds torch, and torch's own directory.
python_paths() {
  python3 -c 'import os, torch; d = os.path.dirname(torch.__file__); print(os.path.dirname(d)); print(d)'
}

# The lib directories of the NVIDIA wheels PyTorch loads (cuda runtime, cublas, nccl, ...): the
# runtime stage has no CUDA toolkit, so the addon finds libcudart and NCCL there, as torch does.
nvidia_lib_dirs() {
  local site=$1
  find "$site/nvidia" -mindepth 2 -maxdepth 3 -type d -name lib 2>/dev/null | sort | paste -sd';' -
}

cmd_addon() {
  local node_modules=${1:-$ROOT/node_modules} site torch_dir prefix generator=() rpath
  node_modules=$(readlink -f "$node_modules")
  for pkg in node-api-headers node-addon-api; do
    [ -d "$node_modules/$pkg" ] || { echo "no $node_modules/$pkg (npm ci first)" >&2; return 1; }
  done
  { read -r site; read -r torch_dir; } < <(python_paths)
  prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
  rpath=$(nvidia_lib_dirs "$site")
  command -v ninja > /dev/null && generator=(-G Ninja)
  # A GPU host without nlohmann-json3-dev uses the copy scripts/device/pack.sh put in the bundle.
  local json_args=()
  [ -f "$ROOT/.device/include/nlohmann/json.hpp" ] \
    && json_args=(-DQWEN3_NLOHMANN_JSON_INCLUDE_DIR="$ROOT/.device/include")
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
  log "libtorch $(python3 -c 'import torch; print(torch.__version__, torch.version.cuda)') at $torch_dir; arch $TORCH_CUDA_ARCH_LIST"
  # The definitions cmake-js passes (cmake-js print-configure); cmake-js itself is a dev dependency
  # the GPU hosts do not have.
  # shellcheck disable=SC2086
  cmake -S . -B build/native "${generator[@]}" --no-warn-unused-cli \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_JS_VERSION=7.3.1 \
    -DCMAKE_JS_INC="$node_modules/node-api-headers/include;$node_modules/node-addon-api" \
    -DCMAKE_JS_SRC= -DCMAKE_JS_LIB= \
    -DNODE_RUNTIME=node -DNODE_RUNTIMEVERSION="$(node -p process.versions.node)" -DNODE_ARCH=x64 \
    -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$ROOT/build/native/Release" \
    -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_BUILD_RPATH="$rpath" \
    "${json_args[@]}" \
    ${CMAKE_EXTRA_ARGS:-}
  cmake --build build/native -j "${JOBS:-$(nproc)}"
  [ -f "$ADDON" ] || { echo "$ADDON was not produced" >&2; return 1; }
  log "built $ADDON ($(du -h "$ADDON" | cut -f1))"
}

cmd_stage() {
  local dest=${1:?stage DEST [APP_DIR]} app=${2:-$ROOT}
  [ -f "$ADDON" ] || { echo "no $ADDON: run the addon step" >&2; return 1; }
  [ -f "$app/dist/apps/api/src/main.js" ] || { echo "no $app/dist: npm run build" >&2; return 1; }
  rm -rf "$dest/app"
  mkdir -p "$dest/app/build/native/Release"
  cp package.json "$dest/app/package.json"
  cp -a "$app/dist" "$dest/app/dist"
  cp -a "$app/node_modules" "$dest/app/node_modules"
  rm -rf "$dest/app/dist/"*.tsbuildinfo
  strip --strip-unneeded -o "$dest/app/$ADDON" "$ADDON"
  log "staged $dest/app ($(du -sh "$dest/app" | cut -f1))"
}

# The runtime stage's libraries: the patterns of docker/cuda-runtime-libs.txt expanded here.
runtime_library_names() {
  local site torch_dir kind pattern
  { read -r site; read -r torch_dir; } < <(python_paths)
  while read -r kind pattern; do
    case $kind in
      ''|'#'*) continue ;;
      system) echo "$pattern" ;;
      path)
        pattern=${pattern//\{site\}/$site}
        pattern=${pattern//\{torch\}/$torch_dir}
        # shellcheck disable=SC2086
        for file in $pattern; do [ -e "$file" ] && basename "$file"; done
        ;;
    esac
  done < "$LIBS_LIST" | sort -u
}

cmd_check() {
  local dest=${1:?check DEST} status=0 allowed modules
  allowed=$(runtime_library_names)
  mapfile -t modules < <(find "$dest/app" -name '*.node' -type f | sort)
  [ ${#modules[@]} -gt 0 ] || { echo "no .node file under $dest/app" >&2; return 1; }
  for module in "${modules[@]}"; do
    local out missing outside=()
    out=$(ldd "$module" 2>&1) || { echo "ldd $module failed: $out" >&2; status=1; continue; }
    # The full resolution goes to the log (stderr); stdout keeps one verdict line per module.
    # shellcheck disable=SC2001  # sed indents every line; a ${//} substitution would not
    { echo "ldd ${module#"$dest"/}:"; sed 's/^/  /' <<< "$out"; } >&2
    missing=$(grep 'not found' <<< "$out" || true)
    if [ -n "$missing" ]; then echo "MISSING for ${module#"$dest"/}:"; echo "$missing"; status=1; fi
    while read -r name _ path _; do
      [ "$path" = "not" ] && continue
      case $name in linux-vdso.so.*|/*) continue ;; esac
      grep -qxF "$name" <<< "$allowed" || outside+=("$name ($path)")
    done < <(grep '=>' <<< "$out")
    if [ ${#outside[@]} -gt 0 ]; then
      echo "NOT IN THE RUNTIME STAGE for ${module#"$dest"/}: ${outside[*]}"
      status=1
    fi
    echo "${module#"$dest"/}: $(grep -c '=>' <<< "$out") libraries, ${#outside[@]} outside the list"
  done
  return $status
}

case ${1:-} in
  addon) shift; cmd_addon "$@" ;;
  stage) shift; cmd_stage "$@" ;;
  check) shift; cmd_check "$@" ;;
  *) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
