"""CVAT integration, one subpackage per door a user comes through.

* :mod:`autotrack.cvat.nuclio`: Nuclio handlers that CVAT's AI tools call (detector,
  interactor, tracker, Re-ID); CVAT Community, Online and Enterprise.
* :mod:`autotrack.cvat.sdk`: cvat-sdk auto-annotation functions for ``cvat-cli``.
* :mod:`autotrack.cvat.task`: the REST client that reads a task's frames and writes tracks,
  backups and undo (``autotrack task ...``).
* :mod:`autotrack.cvat.deploy`: Nuclio deploy commands and model baking.

A door never imports another door (``tests/test_layout.py`` checks it); what two doors share
lives below them: :mod:`autotrack.cvat.label_spec` here, the rest outside ``autotrack.cvat``.
"""

DOORS = ("nuclio", "sdk", "task", "deploy")
