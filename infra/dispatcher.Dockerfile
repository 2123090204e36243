# syntax=docker/dockerfile:1
# The dispatcher: REST API, dashboard and release loop (`farm up --no-worker --no-flower`).
# The same image runs the one-shot migration (`farm db upgrade`), the nightly hero scheduler
# (`farm beat`) and Flower (`farm flower`, beside the dispatcher, which serves it at /flower).
#
#   docker build -f infra/dispatcher.Dockerfile -t humo-farm/dispatcher .   (from the repository root)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/farm
ENV PATH=/opt/farm/bin:$PATH
# the CPU build of PyTorch: the dispatcher probes uploads and never renders
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"
WORKDIR /app
# dependencies first (a layer that survives source edits), then the source, installed in place:
# farm.migrate finds migrations/ beside the farm package
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt
COPY farm ./farm
COPY workers ./workers
COPY models ./models
COPY migrations ./migrations
RUN pip install --no-deps -e .

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/farm/bin:$PATH PYTHONUNBUFFERED=1 FARM_DATA_DIR=/var/lib/farm
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin farm \
 && mkdir -p /var/lib/farm && chown farm:farm /var/lib/farm
COPY --from=build /opt/farm /opt/farm
COPY --from=build /app /app
WORKDIR /app
USER 10001
EXPOSE 8000
# no HEALTHCHECK: the image also runs the migration, beat and Flower; compose and the chart
# probe the dispatcher's /healthz
CMD ["farm", "up", "--no-worker", "--no-flower", "--host", "0.0.0.0", "--port", "8000"]
