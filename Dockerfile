# esimsite's production image: the processes of Procfile.production (docs/deploying.md).
# Not built on the development machine (no container daemon there): tests/test_production_shape.py
# checks that its command and environment names match Procfile.production and the settings.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=esimsite.settings.production \
    PORT=8000

# gettext: the release step compiles the translations (manage.py compilemessages).
RUN apt-get update \
    && apt-get install -y --no-install-recommends gettext \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 esimsite
WORKDIR /app

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY --chown=esimsite:esimsite . .

# Translations and the hashed static files are baked into the image (the release step redoes both,
# harmlessly). The settings require their secrets even to collect static files: dummies, build only.
RUN SECRET_KEY=build-only ALLOWED_HOSTS=build SITE_URL=https://build DATABASE_URL=sqlite:///tmp/build.sqlite3 \
    SMS_BACKEND=accounts.sms.ConsoleBackend STRIPE_SECRET_KEY=sk_build STRIPE_PUBLISHABLE_KEY=pk_build \
    STRIPE_WEBHOOK_SECRET=whsec_build PARTNER_USAGE_SECRET=build NETWORK_WEBHOOK_SECRET=build \
    sh -c 'python manage.py compilemessages -v 0 && python manage.py collectstatic --noinput -v 0' \
    && chown -R esimsite:esimsite /app

USER esimsite
EXPOSE 8000
# Liveness (docs/deploying.md "Probes"): the process answers, over plain http (exempt from the https
# redirect), with a Host that ALLOWED_HOSTS accepts. The load balancer uses /healthz/ready instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request as u; host = os.environ['ALLOWED_HOSTS'].split(',')[0].strip().lstrip('.*') or 'localhost'; u.urlopen(u.Request('http://127.0.0.1:%s/healthz/live' % os.environ.get('PORT', '8000'), headers={'Host': host}), timeout=4)"
CMD ["env", "DJANGO_SETTINGS_MODULE=esimsite.settings.production", "gunicorn", "--config", "gunicorn.conf.py", "esimsite.wsgi:application"]
