"""Nuclio serverless handlers for CVAT's AI tools: request parsing and the serving base, then
one module per CVAT function kind (detector, interactor, tracker, mask tracker, Re-ID, SAM3).
``serverless/*/nuclio/main.py`` only calls these."""
