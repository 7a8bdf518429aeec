# syntax=docker/dockerfile:1.7
# One image for every shop service; SHOP_SERVICE picks which one runs (and which one the
# health check asks):
#   docker build -t shop:dev .
#   docker run -e SHOP_SERVICE=orders -e KAFKA_BOOTSTRAP_SERVERS=... shop:dev
# Never built here (no container engine on this project's machines): `make deploy-check`
# validates what uses it, see README "Containers and Kubernetes".

# Keep UV_VERSION equal to deploy/versions.env (a test checks).
ARG UV_VERSION=0.13.8
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

# ---- build: generate the protobuf code, then a venv of the services from uv.lock ----------
FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /bin/uv
ENV UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy
WORKDIR /src
COPY . .
# The generated code is not in git (README: "Generated code"): make it as `make proto` does,
# with the locked grpcio-tools of the dev group, in a throwaway venv.
RUN --mount=type=cache,target=/root/.cache/uv \
    UV_PROJECT_ENVIRONMENT=/tmp/tools uv sync --locked --only-group dev --no-install-workspace \
 && rm -rf libs/protos/src/shop && mkdir -p libs/protos/src \
 && /tmp/tools/bin/python -m grpc_tools.protoc -Iproto \
      -I"$(/tmp/tools/bin/python -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')" \
      --python_out=libs/protos/src --grpc_python_out=libs/protos/src $(find proto -name '*.proto') \
 && find libs/protos/src/shop -type d -exec touch {}/__init__.py \;
# Runtime dependencies only (no dev group), the workspace packages installed as wheels, not
# links to /src, so the venv alone is the application.
RUN --mount=type=cache,target=/root/.cache/uv \
    for service in services/*/; do packages="$packages --package shop-$(basename "$service")"; done \
 && UV_PROJECT_ENVIRONMENT=/app/.venv uv sync --locked --no-dev --no-editable $packages \
 && /app/.venv/bin/python -OO -m compileall -q -j 0 /app/.venv/lib

# ---- runtime: the venv and nothing else, as a non-root user --------------------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 shop \
 && useradd --system --uid 10001 --gid shop --no-create-home --shell /usr/sbin/nologin shop \
 && install -d -o shop -g shop /var/lib/shop
COPY --from=build /app/.venv /app/.venv
# The services run as `python -OO` (PYTHONOPTIMIZE=2, below): no docstrings or asserts in
# memory, ≈ 6 MiB less each (README, "Numbers"). Their bytecode is compiled for that here and
# in the build stage, as the container writes none (PYTHONDONTWRITEBYTECODE).
RUN python -OO -m compileall -q -j 0 "$(python -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')"
# SHOP_BIND_HOST: a container is reached from outside its loopback. SHOP_VAR_DIR: SQLite files
# and Faust's local state (mount a volume; on Kubernetes an emptyDir, the data is PostgreSQL).
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONOPTIMIZE=2 \
    SHOP_BIND_HOST=0.0.0.0 \
    SHOP_VAR_DIR=/var/lib/shop \
    LOG_FORMAT=json
USER 10001:10001
WORKDIR /var/lib/shop
# The gRPC health protocol, asked from inside the container (shop_chassis.container.probe).
# Kubernetes ignores this and uses its native gRPC probes (deploy/helm/shop).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["shop-probe"]
ENTRYPOINT ["shop-service"]
