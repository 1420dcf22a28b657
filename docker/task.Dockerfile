# The base of Leoflow Pro's task images: the agent (`leoflow agent`), Python 3.11 and Leoflow's
# SDK. `leoflow compile --image` writes a Dockerfile `FROM` this image that adds the project's
# dependencies and the project itself at /opt/leoflow/project. Built from the repository's root,
# after docker/Dockerfile, whose binary it copies (one Rust build for both images):
#
#     docker build -f docker/task.Dockerfile \
#         --build-arg LEOFLOW_IMAGE=leoflow/leoflow:0.1.0 -t leoflow/leoflow-task:0.1.0-python3.11 .
#
# The tag names the Python: `leoflow compile --image` builds a project on
# leoflow/leoflow-task:<version>-python<its python_version> (another with
# --build-arg PYTHON_IMAGE=python:3.12-slim-bookworm -t …-python3.12).
#
# The executor starts each try's pod as `leoflow agent …`; the agent runs the task with the
# Python and the SDK named below. Nothing secret is in the image: the attempt token reaches the
# pod through a Secret when the try starts.

ARG LEOFLOW_IMAGE=leoflow/leoflow:0.1.0
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${LEOFLOW_IMAGE} AS leoflow

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="leoflow-task" \
      org.opencontainers.image.description="The base of Leoflow Pro's task images: leoflow agent, Python 3.11, Leoflow's SDK" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=leoflow /usr/local/bin/leoflow /usr/local/bin/leoflow
# The directory holding the SDK's `leoflow` package (sdk/python/src), as LEOFLOW_SDK_PATH.
COPY sdk/python/src/leoflow /opt/leoflow/sdk/leoflow
# pendulum and jinja2: the SDK's `dates` extra (most real DAG files import pendulum at module
# level) and its `templates` extra (the runner renders template fields with Jinja, as Airflow
# does); Lite's managed venv carries both too. Pinned as the test suite's venv pins them.
RUN pip install --no-cache-dir --disable-pip-version-check pendulum==3.3.0 jinja2==3.1.6 \
    && mkdir -p /opt/leoflow/project
ENV LEOFLOW_PYTHON=/usr/local/bin/python3 \
    LEOFLOW_SDK_PATH=/opt/leoflow/sdk \
    LEOFLOW_PROJECT_DIR=/opt/leoflow/project \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
WORKDIR /opt/leoflow/project
# A non-root user by number (runAsNonRoot can check it). A project image that installs more
# packages switches to `USER root` for its `RUN pip install` and back to `USER 65532:65532`.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/leoflow"]
CMD ["agent", "--help"]
