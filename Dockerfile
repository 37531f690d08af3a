# syntax=docker/dockerfile:1
# OpenLFR: one image for every service; the command picks the service:
#   docker run --rm openlfr/openlfr:0.1.0 run detect        (ENTRYPOINT is `lfr`)
# Non-root (uid 10001), face models converted at build time into a read-only cache, no data set
# inside (.dockerignore keeps images, models, var/ and the venv out of the build context).
# Build and run: docs/deploy.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: a virtual environment with the package and its dependencies ------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies first, against a stub package, so code changes do not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir services && touch services/__init__.py \
    && pip install --upgrade pip \
    && pip install . \
    && pip uninstall --yes openlfr \
    && rm -rf services build *.egg-info

# The package itself. schemas/ is read at run time through LFR_SCHEMAS_DIR (the installed
# package does not carry it).
COPY services/ services/
COPY schemas/ /opt/openlfr/schemas/
RUN pip install --no-deps . \
    && rm -rf build *.egg-info \
    && python -m compileall -q /opt/venv/lib

# Convert the face models once (verified against their pinned SHA-256) into the image's cache,
# so no pod ever writes one: the root filesystem is read-only at run time. Run outside /src so
# the installed package is what gets imported.
ENV LFR_MODEL_CACHE_DIR=/opt/openlfr/models
RUN cd / && python -c "from services.engine.face import FaceDetector, FaceEmbedder; FaceDetector(); FaceEmbedder()" \
    && ls -l /opt/openlfr/models \
    && test "$(ls /opt/openlfr/models/*.onnx | wc -l)" -eq 2 \
    && chmod -R a+rX,go-w /opt/openlfr

# -- runtime -------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="OpenLFR" \
      org.opencontainers.image.description="OpenLFR live facial recognition pipeline services" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

RUN groupadd --system --gid 10001 lfr \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/lfr --create-home --shell /usr/sbin/nologin lfr

COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/openlfr /opt/openlfr

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LFR_MODEL_CACHE_DIR=/opt/openlfr/models \
    LFR_SCHEMAS_DIR=/opt/openlfr/schemas \
    XDG_CACHE_HOME=/tmp/.cache \
    HOME=/home/lfr

USER 10001:10001
WORKDIR /home/lfr
# Metrics (LFR_METRICS_PORT); the services have no other listening port.
EXPOSE 9100
ENTRYPOINT ["lfr"]
CMD ["--help"]
