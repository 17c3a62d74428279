"""CVAT tasks through the REST API: connection, frames, labels, annotations, backups, uploads
and the ``autotrack task`` commands built from them."""
