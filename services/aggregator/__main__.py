"""`python -m services.aggregator`: serve the aggregator with uvicorn."""

from services.aggregator.settings import AggregatorSettings
from shared.serve import serve

if __name__ == "__main__":
    serve("services.aggregator.app:create_app", AggregatorSettings())
