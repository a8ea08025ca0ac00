"""`python -m services.feedback`: serve feedback with uvicorn."""

from services.feedback.settings import FeedbackSettings
from shared.serve import serve

if __name__ == "__main__":
    serve("services.feedback.app:create_app", FeedbackSettings())
