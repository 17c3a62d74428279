"""The fine-tuning loop (issue 14): reviewed CVAT annotations in, a better detector out.

* :mod:`autotrack.finetune.dataset`: an Ultralytics dataset from CVAT annotations (boxes per
  frame as CVAT interpolates them, frame choice, a train/val split by time blocks, an atomic
  write of ``data.yaml``, ``images/``, ``labels/`` and ``manifest.json``);
* :mod:`autotrack.finetune.offline`: ``autotrack export`` (XML plus its video, no server),
  which reads the XML with :mod:`autotrack.cvat_xml` (the reader ``autotrack merge`` uses)
  and the frames with :meth:`autotrack.video.FrameSource.frames_at`.

The task door, ``autotrack task export``, is :mod:`autotrack.cvat.task.export`.
"""
