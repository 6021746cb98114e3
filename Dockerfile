# imagebot: one process serving Slack, Discord and the web playground.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATABASE_URL=sqlite:////data/imagebot.sqlite3 \
    IMAGEBOT_HOST=0.0.0.0 \
    IMAGEBOT_PORT=8765

RUN useradd --create-home --uid 10001 imagebot \
    && mkdir -p /data && chown imagebot:imagebot /data

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY bot ./bot
COPY adapters ./adapters
COPY offline_gemini ./offline_gemini
COPY config ./config
RUN pip install -c constraints.txt '.[slack,discord,postgres]'

USER imagebot
VOLUME ["/data"]
EXPOSE 8765
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8765/healthz', timeout=4).status == 200 else 1)"
CMD ["imagebot", "serve", "--host", "0.0.0.0"]
