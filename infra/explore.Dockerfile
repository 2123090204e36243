# syntax=docker/dockerfile:1
# An explore worker: one process per GPU, HuMo-1.7B at 480p (`python -m workers --pool explore`).
# Give it exactly one GPU (compose: a device reservation; Kubernetes: nvidia.com/gpu: 1) and the
# weights folder at FARM_WEIGHTS_DIR.
#
#   docker build -f infra/explore.Dockerfile -t humo-farm/explore .   (from the repository root)
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

FROM ${CUDA_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/farm
ENV PATH=/opt/farm/bin:$PATH
# PyTorch built for the base image's CUDA (its wheels carry cuDNN and NCCL)
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"
WORKDIR /app
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt
# FlashAttention-4, the DiT's self-attention on Hopper and Blackwell (pyproject's hopper extra;
# on other GPUs the worker runs cuDNN SDPA)
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['hopper']))" \
      > /tmp/hopper.txt \
 && pip install -r /tmp/hopper.txt
COPY farm ./farm
COPY workers ./workers
COPY models ./models
COPY migrations ./migrations
RUN pip install --no-deps -e .

FROM ${CUDA_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --create-home --shell /usr/sbin/nologin farm \
 && mkdir -p /var/lib/farm /weights && chown farm:farm /var/lib/farm
COPY --from=build /opt/farm /opt/farm
COPY --from=build /app /app
ENV PATH=/opt/farm/bin:$PATH PYTHONUNBUFFERED=1 FARM_DATA_DIR=/var/lib/farm FARM_DEVICE=cuda \
    FARM_WEIGHTS_DIR=/weights FARM_EXPLORE_CHECKPOINT=humo-1.7b
WORKDIR /app
USER 10001
# SIGTERM: Celery's warm shutdown finishes the take in flight; give it the time (compose
# stop_grace_period, Kubernetes terminationGracePeriodSeconds)
STOPSIGNAL SIGTERM
CMD ["python", "-m", "workers", "--pool", "explore"]
