"""``autotrack task ...``: commands that read and write a CVAT task through its REST API.

The server and login options are spelled as ``cvat-cli`` spells them (``--server-host``,
``--server-port``, ``--auth USER[:PASS]``, ``--org``, ``--insecure``; a personal access token
in ``$CVAT_ACCESS_TOKEN``), so a line that works with one works with the other. Every command
that writes backs the task up first and reads back what it wrote.
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from autotrack.errors import InputError

DEFAULT_BACKUP_DIR = "autotrack-backups"


def add_server_arguments(parser: argparse.ArgumentParser, *, backup: bool = True) -> None:
    """The options every task command shares: where the server is and who logs in; and
    ``--backup-dir`` for the commands that write (``backup``)."""
    server = parser.add_argument_group("server (as cvat-cli spells them)")
    server.add_argument("--server-host", metavar="URL",
                        help="CVAT URL, e.g. https://app.cvat.ai or http://localhost:8080")
    server.add_argument("--server-port", type=int, metavar="PORT",
                        help="port, when --server-host gives none")
    server.add_argument("--auth", metavar="USER[:PASS]",
                        help="user and password; a user alone takes $PASS (or "
                             "$CVAT_PASSWORD) or asks. Without --auth: a personal access "
                             "token in $CVAT_ACCESS_TOKEN, or $CVAT_USER")
    server.add_argument("--organization", "--org", dest="org", metavar="SLUG",
                        help="organization context for requests")
    server.add_argument("--insecure", action="store_true",
                        help="do not verify the server's TLS certificate")
    if backup:
        server.add_argument("--backup-dir", default=DEFAULT_BACKUP_DIR, metavar="DIR",
                            help="where backups and the list of created tracks go "
                                 f"(default ./{DEFAULT_BACKUP_DIR})")


def add_task_parser(commands: Any) -> argparse.ArgumentParser:
    """``autotrack task`` and its subcommands, on the top-level subparsers ``commands``."""
    from autotrack.cvat.task.annotate import add_annotate_arguments

    task = commands.add_parser(
        "task", help="annotate a task on a CVAT server (and undo it)",
        description="Work on a task of a CVAT server through its REST API: upload tracks, "
                    "undo an upload. Works with CVAT Community, Online and Enterprise, on "
                    "video tasks and image-sequence tasks.")
    sub = task.add_subparsers(dest="task_command", required=True, metavar="COMMAND")
    annotate = sub.add_parser(
        "annotate", help="detect and track objects in a task; upload them as tracks",
        description="Detect and track objects in a CVAT video task (every job, or one) and "
                    "upload them as tracks with few keyframes, job by job. The annotations "
                    "are backed up before any write; 'autotrack task restore BACKUP' undoes.")
    add_annotate_arguments(annotate)
    add_server_arguments(annotate)
    restore = sub.add_parser(
        "restore", help="put a backup of a task's annotations back",
        description="Put back a backup that 'autotrack task annotate' (or a restore) saved, "
                    "exactly, job by job; what is there now is backed up first.")
    restore.add_argument("backup", metavar="BACKUP", help="the backup file (.json)")
    add_server_arguments(restore)
    merge = sub.add_parser(
        "merge", help="find tracks that continue one another; merge the ones you choose",
        description="Propose merges of tracks a tracker broke one object into (printed, best "
                    "first, and saved), merge the chosen ones (--apply, --join) job by job, "
                    "or undo a merge (--undo LOG). Every write is backed up first and read "
                    "back.")
    from autotrack.cvat.task.merge import add_merge_arguments

    add_merge_arguments(merge)
    add_server_arguments(merge)
    export = sub.add_parser(
        "export", help="the reviewed jobs of tasks as an Ultralytics dataset",
        description="Write an Ultralytics dataset (data.yaml, images/, labels/, manifest.json) "
                    "from the jobs people finished: boxes as CVAT interpolates them, every "
                    "keyframe plus a stride of frames, near-duplicates dropped, a train/val "
                    "split by blocks of time, from tasks or whole projects. Only the chosen "
                    "frames are downloaded; nothing is written to the server.")
    from autotrack.cvat.task.export import add_export_arguments

    add_export_arguments(export)
    add_server_arguments(export, backup=False)  # export never writes to the server
    return task


def server_url(args: argparse.Namespace, default: str | None = None) -> str:
    """``--server-host`` with ``--server-port`` folded in, normalized (or ``default``)."""
    from autotrack.cvat.task.connection import normalize_url

    host = args.server_host or default
    if not host:
        raise InputError("--server-host URL is required")
    url = normalize_url(host)
    if args.server_port is not None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.port is not None and parts.port != args.server_port:
            raise InputError(f"--server-port {args.server_port} disagrees with the port in "
                             f"{host}")
        if not 0 < args.server_port < 65536:
            raise InputError(f"--server-port must be 1-65535, got {args.server_port}")
        url = normalize_url(f"{parts.scheme}://{parts.hostname}:{args.server_port}{parts.path}")
    return url


def open_server(args: argparse.Namespace, default_url: str | None = None) -> tuple[Any, Any]:
    """Log in as the options say; returns the :class:`Server` and the credentials used."""
    from autotrack.cvat.task.connection import connect, credentials_from

    url = server_url(args, default_url)
    credentials = credentials_from(args.auth, None)
    server = connect(url, credentials, organization=args.org, verify_ssl=not args.insecure)
    return server, credentials


def run_restore(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Put a backup back job by job; the manifest follows the objects' new ids."""
    from autotrack.cvat.task.backup import Manifest, load_backup, restore, restore_command
    from autotrack.cvat.task.connection import normalize_url
    from autotrack.cvat.task.frames import load_labels, load_target

    backup = load_backup(args.backup)
    url = server_url(args, backup.server)
    if url != normalize_url(backup.server):
        raise InputError(f"{backup.path} was saved from {backup.server}, not {url}; restore it "
                         "there (leave out --server-host)")
    server, credentials = open_server(args, backup.server)
    try:
        labels = load_labels(server, load_target(server, task_id=backup.task_id))
        defaults = {spec: value for label in labels
                    for spec, value in label.attribute_defaults.items()}
        manifest = Manifest.load(args.backup_dir, url, backup.task_id)
        result = restore(server, backup, args.backup_dir, manifest, defaults)
    finally:
        server.close()
    print(f"saved the annotations being replaced to {result.safety_backup} (undo with: "
          f"{restore_command(url, result.safety_backup, credentials.user)})", file=out)
    where = f"{backup.kind} {backup.id}"
    if result.same_content:
        print(f"restored {where} from {backup.path} ({backup.saved_at}): {result.summary}; "
              "every job reads back as the backup holds it (CVAT gives restored objects new "
              "ids)", file=out)
        return 0
    print(f"error: restored {where}, but job {', '.join(map(str, result.differing_jobs))} "
          f"reads back different from {backup.path} ({result.summary})", file=err)
    return 1


def run_task(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run the ``autotrack task`` subcommand that ``args`` names."""
    if args.task_command == "annotate":
        from autotrack.cvat.task.annotate import run_annotate

        return run_annotate(args, out, err)
    if args.task_command == "merge":
        from autotrack.cvat.task.merge import run_merge

        return run_merge(args, out, err)
    if args.task_command == "export":
        from autotrack.cvat.task.export import run_export

        return run_export(args, out, err)
    return run_restore(args, out, err)
