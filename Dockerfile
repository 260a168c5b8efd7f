# Two images from one file:
#   web    (default): the study server; no torch (the web process never imports it)
#   worker:           the stimulus worker; torch from TORCH_INDEX (CPU by default, a CUDA index for GPU hosts)
FROM python:3.11-slim AS base
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 lpstudy
WORKDIR /srv/lpstudy
COPY pyproject.toml README.md ./
COPY app app
COPY workers workers
COPY migrations migrations
COPY templates templates
COPY static static
ENV LPSTUDY_ENV=production LPSTUDY_STATE_DIR=/srv/lpstudy/var PYTHONUNBUFFERED=1
RUN mkdir -p var && chown lpstudy var

FROM base AS worker
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir -e '.[worker]' --extra-index-url "$TORCH_INDEX"
USER lpstudy
CMD ["lpstudy", "worker", "--device", "auto"]

FROM base AS web
RUN pip install --no-cache-dir -e .
USER lpstudy
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
CMD ["lpstudy", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--forwarded-allow-ips", "*"]
