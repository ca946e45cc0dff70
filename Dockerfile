# The one image of every `takedown` process (docker-compose.yml): installed from the hash-locked requirements, run
# as an unprivileged user, healthy while its database answers at the newest migration.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
# The locked runtime packages first (a layer that changes only with the lock), every file checked by its hash.
COPY requirements-runtime.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements-runtime.lock
COPY pyproject.toml README.md ./
COPY shared shared
COPY services services
COPY migrations migrations
RUN pip install --no-cache-dir --no-deps . \
    && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent takedown
# Key files and secrets come from /run/secrets (compose `secrets:`); nothing in /app is writable by the service.
USER 10001:10001
# 8000: the API; 9100: a background process's /metrics (TAKEDOWN_METRICS_PORT)
EXPOSE 8000 9100
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 CMD ["takedown", "healthcheck"]
CMD ["takedown", "api", "--host", "0.0.0.0", "--port", "8000"]
