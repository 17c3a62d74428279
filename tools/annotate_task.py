#!/usr/bin/env python3
"""Upload detector + ByteTrack tracks to a CVAT task through cvat-sdk; restore a backup.

    python tools/annotate_task.py --server-host URL --auth USER:PASSWORD TASK_ID [options]
    python tools/annotate_task.py --server-host URL --auth USER:PASSWORD --job JOB_ID [options]
    python tools/annotate_task.py [--server-host URL] --auth USER:PASSWORD restore BACKUP

Credentials may also come from $CVAT_USER/$CVAT_PASSWORD or a token ($CVAT_ACCESS_TOKEN,
--token). ``--help`` lists the options; the logic lives in ``autotrack.cvat.annotate_task``.
"""

from __future__ import annotations

import sys

from autotrack.cvat.annotate_task import main

if __name__ == "__main__":
    sys.exit(main())
