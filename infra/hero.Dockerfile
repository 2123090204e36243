# syntax=docker/dockerfile:1
# A hero worker: one supervisor per host holding a DeepSpeed-Ulysses group of N ranks (one per
# GPU) that render HuMo-17B at 720p (`python -m workers --pool hero`). Give it every GPU of the
# host (or N of them), a large /dev/shm for the group, and the weights at FARM_WEIGHTS_DIR.
#
#   docker build -f infra/hero.Dockerfile -t humo-farm/hero .   (from the repository root)
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

FROM ${CUDA_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/farm
ENV PATH=/opt/farm/bin:$PATH
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"
# DeepSpeed for the sequence-parallel group; its CUDA ops are not needed (Ulysses is all-to-all
# over NCCL), so none are built: the runtime image needs no compiler
ARG DEEPSPEED_VERSION=">=0.16,<1"
RUN DS_BUILD_OPS=0 pip install "deepspeed${DEEPSPEED_VERSION}"
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
    FARM_WEIGHTS_DIR=/weights FARM_HERO_CHECKPOINT=humo-17b NCCL_DEBUG=WARN
WORKDIR /app
USER 10001
STOPSIGNAL SIGTERM
CMD ["python", "-m", "workers", "--pool", "hero"]
