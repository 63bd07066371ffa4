#!/bin/sh
# Container entrypoint: check the settings, wait for the database, apply the migrations,
# then become the command (gunicorn in production, `flask run` in development, or any
# `flask ...` given to `docker compose run`). Migrations run here, never inside
# create_app, and never drop anything: data survives restarts and upgrades.
set -eu
python - <<'PY'
import os
import subprocess
import sys
import time

from sqlalchemy import create_engine, text

from srcflask.config import ConfigurationError, load_settings

# Any 64-bit number, the same in every container: replicas starting together take turns
# at `flask db upgrade` instead of racing to apply the same migration.
MIGRATION_LOCK = 5_172_023_001

try:
    load_settings()
except ConfigurationError as refused:
    sys.exit(f"srcflask cannot start with these settings:\n{refused}")
url = os.environ.get("DATABASE_URL")
if not url:
    sys.exit("DATABASE_URL is not set: the entrypoint needs the database it should migrate.")

wait = float(os.environ.get("DB_WAIT_SECONDS", "60"))
deadline = time.monotonic() + wait
engine = create_engine(url)
while True:
    try:
        conn = engine.connect()
        conn.execute(text("SELECT 1"))
        break
    except Exception as error:  # any connection error: the database is still starting
        if time.monotonic() > deadline:
            sys.exit(f"The database at DATABASE_URL did not answer within {wait:.0f} s: {error}")
        time.sleep(1)

locked = engine.dialect.name == "postgresql"
if locked:
    conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
try:
    upgrade = subprocess.run(["flask", "db", "upgrade"])
finally:
    if locked:
        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
    conn.close()
    engine.dispose()
sys.exit(upgrade.returncode)
PY
exec "$@"
