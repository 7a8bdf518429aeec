#!/usr/bin/env bash
# Installs the tools the project runs with, idempotently, into a per-user cache keyed by
# version (so a fresh clone on the same machine reuses them) and links them into the
# git-ignored .tools/ folder of this checkout.
#
#   deploy/bootstrap.sh [component ...]     components: python kafka jaeger jaeger-ui
#                                           prometheus grpcurl ghz buf postgres
#                                           benchtools chromium helm kubeconform
#                                           k8s-schemas compose-config (default: all)
#
# Sourced (`source deploy/bootstrap.sh`), it only defines its functions: the tests call them.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=deploy/versions.env
source "$root/deploy/versions.env"
cache=${SHOP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shop}
tools=$root/.tools
mkdir -p "$cache" "$tools/bin"

say() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*" >&2; }
die() { printf '[bootstrap] error: %s\n' "$*" >&2; exit 1; }
need() {  # need <command> <how to get it>
  command -v "$1" >/dev/null 2>&1 || die "'$1' is not on PATH. $2"
}
link() { ln -sfn "$1" "$2"; }

install_uv() {  # the venv uv lives in; its pip also fetches wheels for other components
  need python3 "Install Python 3.11+ (Debian: apt-get install python3 python3-venv)."
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "python3 is $(python3 -V 2>&1); 3.11 or newer is needed."
  uvdir=$cache/uv-$UV_VERSION
  if [ ! -f "$uvdir/.complete" ]; then
    say "installing uv $UV_VERSION from PyPI into $uvdir"
    rm -rf "$uvdir"
    python3 -m venv "$uvdir"
    "$uvdir/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION"
    touch "$uvdir/.complete"
  fi
  link "$uvdir/bin/uv" "$tools/bin/uv"
}

install_python() {
  install_uv
  say "syncing the Python workspace (.venv) from uv.lock"
  (cd "$root" && UV_PYTHON_DOWNLOADS=never "$tools/bin/uv" sync --locked --all-packages \
      --python python3 --quiet)
}

install_kafka() {
  need java "Install a JDK 17+ (Debian: apt-get install openjdk-17-jdk-headless)."
  need mvn "Install Maven (Debian: apt-get install maven)."
  local dir=$cache/kafka-$KAFKA_VERSION
  if [ ! -f "$dir/.complete" ]; then
    say "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $dir"
    rm -rf "$dir" && mkdir -p "$dir"
    mvn -B -ntp -f "$root/deploy/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dir/libs" \
      | grep -E 'Copying|BUILD|ERROR' | sed 's/^/  /' >&2
    touch "$dir/.complete"
  fi
  link "$dir/libs" "$tools/kafka-libs"
}

go_install() {  # go_install <name> <package> <version>
  need go "Install Go 1.25+ (https://go.dev/doc/install or Debian's golang-go)."
  local name=$1 pkg=$2 version=$3 dir=$cache/$1-$3
  if [ ! -x "$dir/$name" ]; then
    say "building $name $version with the Go toolchain (first time only; a few minutes)"
    GOBIN="$dir" go install "$pkg@$version"
  fi
  link "$dir/$name" "$tools/bin/$name"
}

install_jaeger() {
  need go "Install Go 1.25+ (https://go.dev/doc/install or Debian's golang-go)."
  # `go build` leaves the version empty; Jaeger's own Makefile sets it the same way. The
  # folder is keyed by the flags too, so changing them builds anew.
  local ldflags="-X github.com/jaegertracing/jaeger/internal/version.latestVersion=$JAEGER_V2_VERSION"
  local dir
  dir=$cache/jaeger-$JAEGER_VERSION-$(printf '%s' "$ldflags" | sha256sum | cut -c1-8)
  if [ ! -x "$dir/jaeger" ]; then
    say "building Jaeger $JAEGER_VERSION ($JAEGER_V2_VERSION) with the Go toolchain into $dir (first time only; 3-8 minutes)"
    grep -q "github.com/jaegertracing/jaeger $JAEGER_VERSION" "$root/deploy/jaeger/build/go.mod" \
      || die "deploy/jaeger/build/go.mod does not pin jaeger $JAEGER_VERSION; run: cd deploy/jaeger/build && go get -tool github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION"
    mkdir -p "$dir"
    (cd "$root/deploy/jaeger/build" && go build -trimpath -ldflags "$ldflags" -o "$dir/jaeger.tmp" github.com/jaegertracing/jaeger/cmd/jaeger)
    mv "$dir/jaeger.tmp" "$dir/jaeger"
  fi
  link "$dir/jaeger" "$tools/bin/jaeger"
}

fetch_jaeger_ui() {  # fetch_jaeger_ui <dest> <mirror file name> <release url>; 1 if none
  local dest=$1 mirrored=${SHOP_MIRROR:-}/$2 url=$3
  if [ -n "${SHOP_MIRROR:-}" ] && [ -f "$mirrored" ]; then
    say "Jaeger UI $JAEGER_UI_VERSION: from the mirror, $mirrored"
    printf '%s  %s\n' "$JAEGER_UI_MIRROR_SHA256" "$mirrored" | sha256sum --check --quiet \
      || die "$mirrored does not match JAEGER_UI_MIRROR_SHA256 in deploy/versions.env"
    cp "$mirrored" "$dest"
    return 0
  fi
  command -v curl >/dev/null 2>&1 || return 1
  say "Jaeger UI $JAEGER_UI_VERSION: downloading $url"
  curl -fsSL --retry 2 --connect-timeout 10 -o "$dest.part" "$url" || return 1
  mv "$dest.part" "$dest"
  say "Jaeger UI: downloaded, sha256 $(sha256sum "$dest" | cut -c1-64) (the release asset's sum is not pinned)"
}

install_jaeger_ui() {
  # The web UI Jaeger serves from .tools/jaeger-ui (a Go-built Jaeger embeds only a
  # placeholder page). First source that has it: JAEGER_UI_ASSETS (an unpacked build, used
  # as is), the per-user cache, SHOP_MIRROR's tarball (sha256 pinned), the GitHub release.
  # Without any, Jaeger serves its placeholder: say how to get the UI, never fail the run.
  local dir=$cache/jaeger-ui-$JAEGER_UI_VERSION
  local tarball=jaeger-ui-$JAEGER_UI_VERSION-assets.tar.gz
  local url=https://github.com/jaegertracing/jaeger-ui/releases/download/$JAEGER_UI_VERSION/assets.tar.gz
  rm -f "$tools/jaeger-ui"
  if [ -n "${JAEGER_UI_ASSETS:-}" ]; then
    if [ -f "$JAEGER_UI_ASSETS/index.html" ]; then
      say "Jaeger UI: using JAEGER_UI_ASSETS=$JAEGER_UI_ASSETS"
      link "$(cd "$JAEGER_UI_ASSETS" && pwd)" "$tools/jaeger-ui"
      return
    fi
    say "Jaeger UI: JAEGER_UI_ASSETS=$JAEGER_UI_ASSETS has no index.html; ignoring it"
  fi
  if [ ! -f "$dir/.complete" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    if fetch_jaeger_ui "$tmp/assets.tar.gz" "$tarball" "$url"; then
      rm -rf "$dir" && mkdir -p "$dir"
      # The archive's paths start with packages/jaeger-ui/build/.
      tar -xzf "$tmp/assets.tar.gz" --strip-components=3 -C "$dir"
      [ -f "$dir/index.html" ] || die "the Jaeger UI archive unpacked without index.html into $dir"
      touch "$dir/.complete"
    fi
  fi
  if [ -f "$dir/.complete" ]; then
    link "$dir" "$tools/jaeger-ui"
    say "Jaeger UI $JAEGER_UI_VERSION: $dir"
  else
    say "Jaeger UI $JAEGER_UI_VERSION is not available (no JAEGER_UI_ASSETS, no SHOP_MIRROR tarball, no download): Jaeger will serve its placeholder page. To get the UI, set SHOP_MIRROR to a folder holding $tarball or JAEGER_UI_ASSETS to an unpacked build, and run: deploy/bootstrap.sh jaeger-ui"
  fi
}

install_chromium() {
  # Headless Chromium renders the Jaeger UI in the browser test.
  command -v chromium >/dev/null 2>&1 || apt_install chromium "install Chromium and put 'chromium' on PATH"
  link "$(command -v chromium)" "$tools/bin/chromium"
}

install_benchtools() {
  # loadtest/gotools: the Go health anchor and ghz-html. Keyed by the pinned grpc-go version
  # and a hash of the module's sources, so an edit rebuilds and a fresh clone reuses.
  need go "Install Go 1.25+ (https://go.dev/doc/install or Debian's golang-go)."
  local src=$root/loadtest/gotools hash dir
  grep -q "google.golang.org/grpc $BENCH_GRPC_GO_VERSION" "$src/go.mod" \
    || die "loadtest/gotools/go.mod does not pin grpc-go $BENCH_GRPC_GO_VERSION (deploy/versions.env)"
  hash=$(cd "$src" && find . -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' \) \
    | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-12)
  dir=$cache/benchtools-$BENCH_GRPC_GO_VERSION-$hash
  if [ ! -f "$dir/.complete" ]; then
    say "building the bench's Go tools (health anchor, ghz-html) into $dir (first time only)"
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$src" && go build -trimpath -o "$dir/" ./cmd/...)
    touch "$dir/.complete"
  fi
  link "$dir/health-anchor" "$tools/bin/health-anchor"
  link "$dir/ghz-html" "$tools/bin/ghz-html"
}

install_compose_config() {
  # deploy/compose/config: `docker compose config` without an engine, i.e. compose-go's
  # LoadProject (the Compose Specification's reference loader, used by Docker Compose v2).
  # Keyed by the pinned compose-go version and a hash of the module's sources, like benchtools.
  need go "Install Go 1.25+ (https://go.dev/doc/install or Debian's golang-go)."
  local src=$root/deploy/compose/config hash dir
  grep -q "github.com/compose-spec/compose-go/v2 $COMPOSE_GO_VERSION" "$src/go.mod" \
    || die "deploy/compose/config/go.mod does not pin compose-go $COMPOSE_GO_VERSION (deploy/versions.env)"
  hash=$(cd "$src" && find . -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' \) \
    | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-12)
  dir=$cache/compose-config-$COMPOSE_GO_VERSION-$hash
  if [ ! -x "$dir/compose-config" ]; then
    say "building compose-config (compose-go $COMPOSE_GO_VERSION) into $dir (first time only)"
    mkdir -p "$dir"
    (cd "$src" && go build -trimpath -o "$dir/compose-config.tmp" .)
    mv "$dir/compose-config.tmp" "$dir/compose-config"
  fi
  link "$dir/compose-config" "$tools/bin/compose-config"
}

install_k8s_schemas() {
  # Kubernetes' JSON schemas for kubeconform, offline: kubeconform fetches them from GitHub
  # by default, so we take the ones the PyPI package kubernetes-validate ships (generated from
  # Kubernetes' OpenAPI), pinned by version and sha256, and keep the Kubernetes version we
  # validate against. Their references point at https://kubernetes.io/api/_definitions.json
  # (kubernetes-validate maps that to its folder); they are rewritten to the file beside them,
  # so kubeconform's file loader resolves them and nothing is fetched.
  local dir=$cache/kubernetes-json-schema-$KUBERNETES_VALIDATE_VERSION-$KUBERNETES_SCHEMA_VERSION-local-refs
  if [ ! -f "$dir/.complete" ]; then
    install_uv
    local tmp wheel
    tmp=$(mktemp -d)
    say "fetching Kubernetes $KUBERNETES_SCHEMA_VERSION JSON schemas (kubernetes-validate $KUBERNETES_VALIDATE_VERSION from PyPI) into $dir"
    "$uvdir/bin/pip" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      -d "$tmp" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
    wheel=$(ls "$tmp"/kubernetes_validate-*.whl)
    printf '%s  %s\n' "$KUBERNETES_VALIDATE_SHA256" "$wheel" | sha256sum --check --quiet \
      || die "$(basename "$wheel") does not match KUBERNETES_VALIDATE_SHA256 in deploy/versions.env"
    rm -rf "$dir" && mkdir -p "$dir"
    python3 - "$wheel" "$dir" "$KUBERNETES_SCHEMA_VERSION" <<'PY'
import json
import sys
import zipfile
from pathlib import Path

wheel, dest, version = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
prefix = "kubernetes_validate/kubernetes-json-schema/"
wanted = (f"{prefix}v{version}-local/", f"{prefix}v{version}-local-strict/")
shared = "/api/_definitions.json#"


def local_refs(node):
    if isinstance(node, dict):
        node.pop("$id", None)
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(shared):
            node["$ref"] = "_definitions.json#" + ref[len(shared):]
        for value in node.values():
            local_refs(value)
    elif isinstance(node, list):
        for value in node:
            local_refs(value)


with zipfile.ZipFile(wheel) as archive:
    names = [n for n in archive.namelist() if n.startswith(wanted) and n.endswith(".json")]
    if not names:
        sys.exit(f"kubernetes-validate has no schemas for Kubernetes {version}")
    for name in names:
        schema = json.loads(archive.read(name))
        local_refs(schema)
        target = dest / name[len(prefix):]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(schema))
PY
    rm -rf "$tmp"
    touch "$dir/.complete"
  fi
  link "$dir" "$tools/kubernetes-json-schema"
}

apt_install() {  # apt_install <package> <what to do without apt>
  command -v apt-get >/dev/null 2>&1 || die "$1 is missing and apt-get is not available: $2."
  [ "$(id -u)" = 0 ] || die "$1 is missing; install it as root: apt-get update && apt-get install -y $1"
  say "installing Debian's $1 package (apt-get)"
  # Keep the package's init script from starting a daemon: we run our own instance. While the
  # blocker is there no daemon on the host can start, so ours goes on every way out (apt-get
  # failing, Ctrl-C): the subshell's EXIT trap removes it. One there before is not ours and
  # stays. SHOP_POLICY_RC_D moves it, for the tests.
  local blocker=${SHOP_POLICY_RC_D:-/usr/sbin/policy-rc.d}
  (
    if [ ! -e "$blocker" ]; then
      trap 'rm -f "$blocker"' EXIT
      printf '#!/bin/sh\nexit 101\n' >"$blocker"
      chmod +x "$blocker"
    fi
    # && rather than set -e alone: a caller's `|| apt_install` turns set -e off in here.
    apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$1" >/dev/null
  )
}

install_prometheus() {
  if ! command -v prometheus >/dev/null 2>&1; then
    apt_install prometheus "install Prometheus $PROMETHEUS_VERSION and put it on PATH"
  fi
  local have
  have=$(prometheus --version 2>&1 | sed -n 's/^prometheus, version \([0-9.]*\).*/\1/p')
  [ "${have%.*}" = "${PROMETHEUS_VERSION%.*}" ] \
    || die "prometheus $have is installed; this project is pinned to $PROMETHEUS_VERSION (deploy/versions.env)."
  link "$(command -v prometheus)" "$tools/bin/prometheus"
  link "$(command -v promtool)" "$tools/bin/promtool"
}

install_postgres() {
  # PostgreSQL is optional at run time (SQLite is the default) but the tests run the
  # service layers against it too. Debian's server package; its cluster is not used.
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    apt_install postgresql "install PostgreSQL $POSTGRES_MAJOR"
  fi
  local bin
  bin=$(ls -d /usr/lib/postgresql/"$POSTGRES_MAJOR"/bin 2>/dev/null || true)
  [ -n "$bin" ] || die "PostgreSQL $POSTGRES_MAJOR is not installed (found: $(ls /usr/lib/postgresql)); this project is pinned to it (deploy/versions.env)."
  link "$bin" "$tools/pgbin"
}

main() {
  local components=("$@") c
  [ ${#components[@]} -gt 0 ] || components=(python kafka jaeger jaeger-ui prometheus grpcurl ghz buf postgres benchtools chromium helm kubeconform k8s-schemas compose-config)
  for c in "${components[@]}"; do
    case $c in
      python) install_python ;;
      kafka) install_kafka ;;
      jaeger) install_jaeger ;;
      jaeger-ui) install_jaeger_ui ;;
      chromium) install_chromium ;;
      prometheus) install_prometheus ;;
      grpcurl) go_install grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl "$GRPCURL_VERSION" ;;
      ghz) go_install ghz github.com/bojand/ghz/cmd/ghz "$GHZ_VERSION" ;;
      buf) go_install buf github.com/bufbuild/buf/cmd/buf "$BUF_VERSION" ;;
      postgres) install_postgres ;;
      benchtools) install_benchtools ;;
      helm) go_install helm helm.sh/helm/v4/cmd/helm "$HELM_VERSION" ;;
      kubeconform) go_install kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION" ;;
      k8s-schemas) install_k8s_schemas ;;
      compose-config) install_compose_config ;;
      *) die "unknown component '$c' (python kafka jaeger jaeger-ui prometheus grpcurl ghz buf postgres benchtools chromium helm kubeconform k8s-schemas compose-config)" ;;
    esac
  done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
