"""Deploying the Nuclio functions: ``nuctl`` commands (:mod:`.nuclio`) and models baked into
an image at build time (:mod:`.bake`)."""
