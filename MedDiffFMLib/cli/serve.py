"""``meddifffm serve``: run the tasks for remote clients (``--server URL``) on this machine's GPU(s).

Binds to 127.0.0.1 unless ``--host`` says otherwise; every request needs the bearer token, which is
generated at first start into a 0600 file and printed once. TLS: ``--ssl-certfile`` /
``--ssl-keyfile`` (uvicorn's certificate options).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ..errors import InputError

HELP = "serve the tasks to remote clients (Slicer, `--server URL`): one job at a time per GPU, token auth"
DESCRIPTION = (
    "Run a server for `meddifffm TASK ... --server URL` and the Slicer module's 'Run on: a server'. Each model is "
    "loaded once per device and reused; one job runs at a time per device and the rest queue. Every request needs "
    "the bearer token (generated at first start into --token-file, mode 0600, and printed once; clients read it "
    "from $MEDDIFFFM_SERVER_TOKEN or a file). Models are the ones installed on this machine (`meddifffm info`). "
    "Needs the optional extra: pip install \"meddifffm[server]\"."
)


def register(subparsers) -> None:
    from ..server.settings import (DEFAULT_DEVICES, DEFAULT_HOST, DEFAULT_MAX_QUEUE, DEFAULT_MAX_UPLOAD_MB,
                                   DEFAULT_MAX_VOXELS, DEFAULT_PORT, DEFAULT_RESULT_TTL_S)

    parser = subparsers.add_parser("serve", help=HELP, description=DESCRIPTION)
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}: this machine only; 0.0.0.0: every "
                        "interface, needs the token)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--devices", nargs="+", default=list(DEFAULT_DEVICES),
                        help="devices, one job at a time on each, e.g. cuda:0 cuda:1 "
                        f"(default: {' '.join(DEFAULT_DEVICES)})")
    parser.add_argument("--token-file", type=Path, default=None,
                        help="the token file (default ~/.config/meddifffm/server-token; created at first start)")
    parser.add_argument("--no-token", action="store_true",
                        help="no token (only with a loopback --host: a single-user workstation)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where uploads and results are kept while a job exists (default: a new temporary folder)")
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                        help=f"largest upload in MiB (default {DEFAULT_MAX_UPLOAD_MB:g})")
    parser.add_argument("--max-queue", type=int, default=DEFAULT_MAX_QUEUE,
                        help=f"most jobs waiting for a busy device (default {DEFAULT_MAX_QUEUE}); more get 503")
    parser.add_argument("--max-voxels", type=int, default=DEFAULT_MAX_VOXELS,
                        help=f"largest input in voxels (default {DEFAULT_MAX_VOXELS})")
    parser.add_argument("--result-ttl", type=float, default=DEFAULT_RESULT_TTL_S,
                        help="seconds a finished job's results are kept if not downloaded "
                        f"(default {DEFAULT_RESULT_TTL_S:g})")
    parser.add_argument("--ssl-certfile", type=Path, default=None, help="TLS certificate (PEM), with --ssl-keyfile")
    parser.add_argument("--ssl-keyfile", type=Path, default=None, help="TLS private key (PEM)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from ..server import require_server_packages
    from ..server.auth import default_token_file, load_or_create_token
    from ..server.settings import ServerSettings, check_bind

    if args.no_token:
        check_bind(args.host, None)  # refused beyond loopback, before anything else
    require_server_packages("meddifffm serve")
    for value, flag, low in ((args.port, "--port", 0), (args.max_queue, "--max-queue", 0),
                             (args.max_voxels, "--max-voxels", 1), (args.max_upload_mb, "--max-upload-mb", 0.001),
                             (args.result_ttl, "--result-ttl", 1)):
        if value < low or (flag == "--port" and value > 65535):
            raise InputError(f"{flag} is out of range: {value}.")
    if (args.ssl_certfile is None) != (args.ssl_keyfile is None):
        raise InputError("--ssl-certfile and --ssl-keyfile go together: pass both for TLS, or neither.")
    for path in (args.ssl_certfile, args.ssl_keyfile):
        if path is not None and not path.is_file():
            raise InputError(f"The TLS file '{path}' does not exist.")
    token = None
    if not args.no_token:
        token_file = (args.token_file or default_token_file()).expanduser()
        token, created = load_or_create_token(token_file)
        if created:
            print(f"meddifffm serve: new token (written to {token_file}, mode 0600; shown only this once):\n  {token}",
                  file=sys.stderr, flush=True)
        else:
            print(f"meddifffm serve: token in {token_file}", file=sys.stderr, flush=True)
    check_bind(args.host, token)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="meddifffm-serve-"))
    if args.work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not os.access(work_dir, os.W_OK):
            raise InputError(f"The work folder '{work_dir}' is not writable.")
    settings = ServerSettings(token=token, work_dir=work_dir, devices=list(args.devices),
                              max_upload_bytes=int(args.max_upload_mb * 2**20), max_queue=args.max_queue,
                              max_voxels=args.max_voxels, result_ttl_s=args.result_ttl)
    import uvicorn

    from ..server.app import create_app

    scheme = "https" if args.ssl_certfile else "http"
    print(f"meddifffm serve: listening on {scheme}://{args.host}:{args.port} (devices {' '.join(args.devices)}; "
          "Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning",
                    ssl_certfile=str(args.ssl_certfile) if args.ssl_certfile else None,
                    ssl_keyfile=str(args.ssl_keyfile) if args.ssl_keyfile else None)
    finally:
        if args.work_dir is None:  # our own temporary folder: nothing of the jobs stays behind
            shutil.rmtree(work_dir, ignore_errors=True)
