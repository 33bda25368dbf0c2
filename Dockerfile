# Signpost images: the gateway, the action server and Rasa (our code on top of the official
# images' Python). Build:   docker build --target gateway -t signpost-gateway .
#                           docker build --target actions -t signpost-actions .
#                           docker build --target rasa -t signpost-rasa .
# (docker compose build does all three.)
FROM rasa/rasa-sdk:3.6.2 AS actions
USER root
COPY requirements.txt constraints.txt /app/
RUN pip install --no-cache-dir "SQLAlchemy>=1.4.54,<1.5" langdetect==1.0.9 -c /app/constraints.txt
COPY bot /app/bot
COPY actions /app/actions
COPY data /app/data
COPY domain /app/domain
ENV PYTHONPATH=/app SANIC_HOST=0.0.0.0
USER 1001
CMD ["start", "--actions", "actions", "--port", "5055"]

FROM python:3.10-slim AS gateway
WORKDIR /app
COPY requirements.txt constraints.txt /app/
RUN pip install --no-cache-dir "python-telegram-bot[rate-limiter]==22.5" starlette==1.7.0 \
    uvicorn==0.54.0 httpx==0.28.1 "SQLAlchemy>=1.4.54,<1.5" psycopg2-binary langdetect==1.0.9 \
    ruamel.yaml -c /app/constraints.txt
COPY bot /app/bot
COPY data /app/data
COPY domain /app/domain
ENV PYTHONPATH=/app GATEWAY_HOST=0.0.0.0
USER 1001
EXPOSE 8000
CMD ["python", "-m", "bot.gateway"]

# Rasa with our NLU components (bot/nlu imports bot.language and bot.safety), the lock store
# (bot/lock_store.py), the pre-flight check (bot/preflight.py) and the model, trained here so
# every replica serves the same model:  docker build --target rasa -t signpost-rasa .
FROM rasa/rasa:3.6.21-full AS rasa
USER root
RUN pip install --no-cache-dir langdetect==1.0.9
WORKDIR /app
COPY bot /app/bot
COPY data /app/data
COPY domain /app/domain
COPY config.yml credentials.yml /app/
COPY deploy/endpoints.compose.yml /app/deploy/endpoints.compose.yml
ENV PYTHONPATH=/app RASA_TELEMETRY_ENABLED=false
RUN rasa train --domain domain --config config.yml --data data/nlu data/rules data/stories \
        --out /app/models --fixed-model-name signpost \
    && rm -rf /app/.rasa && chown -R 1001:0 /app
USER 1001
