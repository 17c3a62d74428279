"""Merging the pieces a tracker broke one object into: ranked proposals for a person to
confirm (:func:`propose_merges`) and joining the confirmed ones (:func:`apply_proposals`)."""

from autotrack.merge.proposals import (
    DEFAULT_MIN_CONFIDENCE,
    Proposal,
    ProposalConfig,
    apply_proposals,
    confidence,
    propose_merges,
)

__all__ = ["DEFAULT_MIN_CONFIDENCE", "Proposal", "ProposalConfig", "apply_proposals",
           "confidence", "propose_merges"]
