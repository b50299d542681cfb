# rollout-controller's image: `rollout controller` as a non-root user on a slim Python 3.11.
# Not built in this project's CI (its machines have no Docker engine): build it with
#   docker build -t rollout-controller:0.1.0 .
# The Helm chart (charts/rollout-controller) runs it with a read-only root filesystem, a
# writable /tmp (emptyDir) and `--bind-address 0.0.0.0`.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY rollout ./rollout
COPY analysis ./analysis
COPY crds ./crds
# Only the runtime dependencies: no extras (the sandbox and dev tools stay out).
RUN python -m venv /opt/rollout && /opt/rollout/bin/pip install .

FROM python:3.11-slim
ENV PATH=/opt/rollout/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /opt/rollout /opt/rollout
RUN groupadd --gid 10001 rollout && useradd --uid 10001 --gid 10001 --no-create-home \
    --shell /usr/sbin/nologin rollout
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["rollout", "controller"]
