FROM python:3.11-slim
WORKDIR /srv/lpstudy
COPY pyproject.toml README.md ./
COPY app app
COPY workers workers
COPY migrations migrations
COPY templates templates
COPY static static
RUN pip install --no-cache-dir -e '.[worker]' --extra-index-url https://download.pytorch.org/whl/cpu
ENV LPSTUDY_ENV=production
EXPOSE 8000
CMD ["lpstudy", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
