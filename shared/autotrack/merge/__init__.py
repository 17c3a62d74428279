"""Fragmented tracks joined again: merge proposals and CVAT tracks joined the way CVAT
stores them (:mod:`autotrack.merge.cvat_tracks`)."""
