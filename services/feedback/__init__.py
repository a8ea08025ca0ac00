"""feedback: what humans said. End-user votes to `votes`; the annotation queue and annotator API."""
