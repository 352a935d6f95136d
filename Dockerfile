# syntax=docker/dockerfile:1
# nasflow trial image: trains ONE Keras candidate per Katib trial and logs it to MLflow.
#   docker build --target trial -t nasflow-trial .
# Only the trial's dependencies are installed (no Kubernetes client, no MLflow server).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY trial_image ./trial_image
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Byte for byte the Makefile's TRIAL_INSTALL, which `make test` runs (tests check they match).
RUN pip install --no-cache-dir -c constraints.txt ".[trial]"

FROM python:3.11-slim AS trial
LABEL org.opencontainers.image.title="nasflow-trial" \
      org.opencontainers.image.description="Trains one Keras NAS candidate from Katib parameters"
COPY --from=build /opt/venv /opt/venv
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin nasflow
# Everything the trial writes goes to /tmp, so a read-only root filesystem plus a writable /tmp
# (an emptyDir in the manifests) is enough. Without a tracking server the run goes to /tmp/mlruns.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    KERAS_HOME=/tmp/.keras \
    MPLCONFIGDIR=/tmp/matplotlib \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MLFLOW_TRACKING_URI=file:///tmp/mlruns
WORKDIR /tmp
USER 10001
HEALTHCHECK NONE
ENTRYPOINT ["python", "-m", "trial_image"]
