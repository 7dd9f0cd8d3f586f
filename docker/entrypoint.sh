#!/bin/sh
# Container entrypoint. With nothing mounted at the default MODEL_PATH, writes the demo model there
# first (the tiny Qwen3-Embedding architecture, seed 0: the same bytes as `make demo-model`, ~360 MB,
# ~10 s), so that a bare `docker run` serves something. Any other MODEL_PATH must exist: a typo in a
# real model's path fails with the loader's message instead of serving random weights.
set -eu
if [ "${MODEL_PATH:-}" = "$DEMO_MODEL_PATH" ] && [ ! -f "$MODEL_PATH/config.json" ]; then
  echo "no model at $MODEL_PATH: generating the demo model there" >&2
  node dist/apps/admin/src/main.js checkpoint generate --preset tiny --seed 0 --out "$MODEL_PATH" >&2
fi
# exec: node replaces this shell as the container's main process and receives SIGTERM itself.
exec "$@"
