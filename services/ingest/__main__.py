"""`python -m services.ingest`: serve ingest with uvicorn."""

from services.ingest.settings import IngestSettings
from shared.serve import serve

if __name__ == "__main__":
    serve("services.ingest.app:create_app", IngestSettings())
