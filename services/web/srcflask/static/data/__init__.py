"""Data the app keeps about its documents. Python code: never served (see create_app)."""
