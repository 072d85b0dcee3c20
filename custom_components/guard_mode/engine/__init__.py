"""Guard Mode's detection engine: audio in, detections out. No Home Assistant imports here."""
