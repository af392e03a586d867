# The image of web, worker, beat, flower and migrate in docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --create-home --home-dir /home/devpulse devpulse \
    && mkdir -p /var/lib/devpulse && chown devpulse:devpulse /var/lib/devpulse

WORKDIR /app
COPY . /app
RUN pip install . && rm -rf build *.egg-info

USER devpulse
EXPOSE 8000 5555
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "2", "--worker-class", "app.web_worker.BoundedThreadWorker", "--threads", "96", "app:create_app()"]
