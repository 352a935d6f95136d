# syntax=docker/dockerfile:1
# nasflow images, one target each, each with only its own dependencies:
#   docker build --target trial     -t nasflow-trial .      one Keras candidate per Katib trial
#   docker build --target trial-gpu -t nasflow-trial-gpu .  the same on NVIDIA GPUs
#   docker build --target pipeline  -t nasflow-pipeline .   `nasflow pipeline` for the CronJob
#   docker build --target suggestion -t nasflow-suggestion . nasflow's algorithms served to Katib
#   docker build --target mlflow    -t nasflow-mlflow .     the reference MLflow server

# The source and an empty venv; each build stage installs one extra into it.
FROM python:3.11-slim AS source
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY trial_image ./trial_image
COPY pipeline ./pipeline
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

FROM source AS build
# Byte for byte the Makefile's TRIAL_INSTALL, which `make test` runs (tests check they match).
RUN pip install --no-cache-dir -c constraints.txt ".[trial]"

# The GPU build swaps TensorFlow's CPU wheel for the CUDA one of the same version.
FROM build AS build-gpu
RUN version="$(pip show tensorflow-cpu | sed -n 's/^Version: //p')" \
    && pip uninstall --yes tensorflow-cpu \
    && pip install --no-cache-dir -c constraints.txt "tensorflow[and-cuda]==${version}"

FROM source AS build-pipeline
RUN pip install --no-cache-dir -c constraints.txt ".[cluster]"
# The Kubeflow Pipelines executor a step of `nasflow kfp compile`'s pipeline starts (kfp would
# download it at each step's start otherwise); without its dependencies, as kfp installs it, since
# it pins protobuf<7 (the executor imports none of them: checked with protobuf 7)
RUN pip install --no-cache-dir --no-deps "kfp==2.17.3"

FROM source AS build-suggestion
RUN pip install --no-cache-dir -c constraints.txt ".[suggestion]"

FROM python:3.11-slim AS build-mlflow
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY constraints.txt ./
# [auth]: the basic-auth app (Flask-WTF) the reference deployment runs
RUN pip install --no-cache-dir -c constraints.txt "mlflow[auth]" "psycopg2-binary>=2.9"

# Shared runtime: an unprivileged user, everything written under /tmp (a read-only root
# filesystem plus an emptyDir on /tmp in the manifests is enough).
FROM python:3.11-slim AS runtime
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin nasflow
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    KERAS_HOME=/tmp/.keras \
    MPLCONFIGDIR=/tmp/matplotlib \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MLFLOW_DISABLE_TELEMETRY=true \
    MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT=true
# HOME=/tmp: where MLflow looks for ~/.mlflow/credentials if a user mounts one (the manifests pass
# MLFLOW_TRACKING_USERNAME/PASSWORD from a Secret instead): a pod must not override HOME.
WORKDIR /tmp

FROM runtime AS trial
LABEL org.opencontainers.image.title="nasflow-trial" \
      org.opencontainers.image.description="Trains one Keras NAS candidate from Katib parameters"
COPY --from=build /opt/venv /opt/venv
# Without a tracking server the run goes to /tmp/mlruns (MLflow 3 keeps its file store only on
# request).
ENV MLFLOW_TRACKING_URI=file:///tmp/mlruns \
    MLFLOW_ALLOW_FILE_STORE=true
USER 10001
# A trial is a batch process that Katib's collector follows; it serves nothing to probe.
HEALTHCHECK NONE
ENTRYPOINT ["python", "-m", "trial_image"]

FROM runtime AS trial-gpu
LABEL org.opencontainers.image.title="nasflow-trial-gpu"
COPY --from=build-gpu /opt/venv /opt/venv
ENV MLFLOW_TRACKING_URI=file:///tmp/mlruns \
    MLFLOW_ALLOW_FILE_STORE=true
USER 10001
HEALTHCHECK NONE
ENTRYPOINT ["python", "-m", "trial_image"]

FROM runtime AS pipeline
LABEL org.opencontainers.image.title="nasflow-pipeline" \
      org.opencontainers.image.description="Submits, follows and promotes Katib experiments"
COPY --from=build-pipeline /opt/venv /opt/venv
COPY manifests /app/manifests
USER 10001
# A CronJob's batch process; it serves nothing to probe.
HEALTHCHECK NONE
ENTRYPOINT ["nasflow"]

FROM runtime AS suggestion
LABEL org.opencontainers.image.title="nasflow-suggestion" \
      org.opencontainers.image.description="Katib Suggestion service for nasflow's algorithms"
COPY --from=build-suggestion /opt/venv /opt/venv
USER 10001
EXPOSE 6789
# Katib's controller gives the suggestion pod gRPC readiness and liveness probes on the
# standard health service the server runs.
HEALTHCHECK NONE
ENTRYPOINT ["python", "-m", "pipeline.service"]

# The same service process serving Katib's EarlyStopping API (asha) on Katib's port 6788: Katib
# starts an early-stopping image with its own entrypoint, beside the suggestion container.
FROM suggestion AS earlystopping
LABEL org.opencontainers.image.title="nasflow-earlystopping" \
      org.opencontainers.image.description="Katib EarlyStopping service for nasflow's algorithms"
EXPOSE 6788
ENTRYPOINT ["python", "-m", "pipeline.service", "--serve", "early-stopping"]

FROM runtime AS mlflow
LABEL org.opencontainers.image.title="nasflow-mlflow"
COPY --from=build-mlflow /opt/venv /opt/venv
# MLflow 3's job executor (a runner and seven huey consumers) serves nothing nasflow uses.
ENV MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
USER 10001
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]
ENTRYPOINT ["mlflow"]
CMD ["server", "--host", "0.0.0.0", "--port", "5000"]
