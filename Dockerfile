# The one image every poisonlab component runs in on Vertex AI Pipelines.
# Everything is installed at build time: a task starts, imports and runs; it installs nothing.
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/poisonlab:0.1.0 .
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    MPLCONFIGDIR=/tmp/matplotlib \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv "$VIRTUAL_ENV" \
    && groupadd --gid 10001 poisonlab \
    && useradd --uid 10001 --gid poisonlab --create-home --shell /usr/sbin/nologin poisonlab

# Dependencies first (those pyproject.toml lists, pinned by constraints.txt, as in
# development and CI), so that a code change does not reinstall them.
COPY constraints.txt pyproject.toml /src/
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" > /src/requirements.txt \
    && pip install --constraint /src/constraints.txt --requirement /src/requirements.txt

COPY README.md /src/
COPY poisonlab /src/poisonlab
RUN pip install --no-deps /src \
    && rm -rf /src \
    && python -c "import kfp, poisonlab.steps, poisonlab.mirror"

# Your own models and gates (README, "Your own model and gate"): the tasks import them
# from the image. USER_REQUIREMENTS: a pinned requirements file; USER_PACKAGE: a directory
# holding your package (pyproject.toml or setup.py). Both paths are in the build context;
# the defaults add nothing.
#   docker build --build-arg USER_REQUIREMENTS=team/requirements.txt \
#                --build-arg USER_PACKAGE=team/models -t IMAGE .
ARG USER_REQUIREMENTS=docker/user/requirements.txt
ARG USER_PACKAGE=docker/user
COPY constraints.txt /user/constraints.txt
COPY ${USER_REQUIREMENTS} /user/requirements.txt
COPY ${USER_PACKAGE} /user/package
RUN pip install --constraint /user/constraints.txt --requirement /user/requirements.txt \
    && if [ -f /user/package/pyproject.toml ] || [ -f /user/package/setup.py ]; then \
           pip install --constraint /user/constraints.txt /user/package; \
       fi \
    && rm -rf /user

# KFP runs each component as `python3 -m kfp.dsl.executor_main ...`, as this user.
USER poisonlab
WORKDIR /home/poisonlab
