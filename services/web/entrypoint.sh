#!/bin/sh
# Container entrypoint: wait for the database, apply migrations, then become the server.
# Migrations run here (never inside create_app) and never drop anything: data survives
# restarts and upgrades.
set -eu
python - <<'PY'
import os, sys, time
from sqlalchemy import create_engine, text
url = os.environ["DATABASE_URL"]
deadline = time.monotonic() + float(os.environ.get("DB_WAIT_SECONDS", "60"))
while True:
    try:
        with create_engine(url).connect() as conn:
            conn.execute(text("SELECT 1"))
        break
    except Exception as error:  # any connection error: the database is still starting
        if time.monotonic() > deadline:
            sys.exit(f"The database at DATABASE_URL did not answer in time: {error}")
        time.sleep(1)
PY
flask db upgrade
exec "$@"
