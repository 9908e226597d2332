"""``python -m tools.gpu_chunk stage|run|apply|promote|size`` (from the repository root)."""

from .commands import main

main()
