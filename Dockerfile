FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY shared shared
COPY services services
COPY migrations migrations
RUN pip install --no-cache-dir -c constraints.txt .
# 8000: the API; 9100: a background process's /metrics (TAKEDOWN_METRICS_PORT)
EXPOSE 8000 9100
CMD ["takedown", "api", "--host", "0.0.0.0"]
