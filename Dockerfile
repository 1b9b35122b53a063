# agentgw's container image. Build from the repository root:
#   docker build -t agentgw:0.1.0 .
# Two stages: `build` turns agentgw and agentgw-client (clients/python) into wheels together with
# every runtime dependency; `runtime` installs only those wheels (no compilers, no dev tools, no pip
# cache) and runs as an unprivileged user. tests/deploy/test_dockerfile.py checks this file against
# the project (settings, ports, paths, the README's commands).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY zego_emulator ./zego_emulator
COPY clients/python ./clients/python
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels ./clients/python .

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AGENTGW_GRPC_LISTEN=0.0.0.0:50051 \
    AGENTGW_HTTP_LISTEN=0.0.0.0:8080 \
    AGENTGW_DB_PATH=/var/lib/agentgw/agentgw.db \
    AGENTGW_SHUTDOWN_GRACE_SECONDS=8
RUN groupadd --system --gid 10001 agentgw \
    && useradd --system --uid 10001 --gid agentgw --home-dir /var/lib/agentgw --shell /usr/sbin/nologin agentgw \
    && mkdir -p /var/lib/agentgw \
    && chown agentgw:agentgw /var/lib/agentgw
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir --no-index --find-links=/wheels agentgw agentgw-client \
    && rm -rf /wheels
USER 10001:10001
WORKDIR /var/lib/agentgw
# The SQLite ledger: one process owns it (see README), so keep it on a volume and run one replica.
VOLUME ["/var/lib/agentgw"]
EXPOSE 50051 8080
# `docker stop` sends SIGTERM to PID 1, which is agentgw itself (exec form, no shell): health goes
# NOT_SERVING, in-flight RPCs drain for AGENTGW_SHUTDOWN_GRACE_SECONDS (8 s here, inside docker
# stop's default 10 s before SIGKILL; raise both together), then it exits.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "service.healthcheck"]
# Listening on 0.0.0.0, the gateway refuses to start without authentication (AGENTGW_AUTH_MODE
# jwt or mtls, README "Security") unless AGENTGW_ALLOW_INSECURE=true says otherwise: the image sets
# neither, so whoever runs it decides.
ENTRYPOINT ["agentgw", "serve"]
