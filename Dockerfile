# One image for every role: api, worker and beat differ only by their command
# (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    COMMENTGUARD_MODELS_DIR=/app/models \
    COMMENTGUARD_DATA_DIR=/app/var

WORKDIR /app
RUN useradd --create-home --uid 10001 commentguard

# Dependencies first, so that a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir classifier training service \
    && touch classifier/__init__.py training/__init__.py service/__init__.py \
    && pip install . && pip uninstall -y commentguard

# The code and the bundled corpora (the default model is trained from them on first start).
COPY classifier classifier
COPY training training
COPY service service
COPY data data
RUN pip install --no-deps -e . \
    && mkdir -p /app/models /app/var \
    && chown -R commentguard:commentguard /app/models /app/var

USER commentguard
EXPOSE 8000
CMD ["commentguard", "serve", "--host", "0.0.0.0", "--port", "8000"]
