"""Translation helper: ``_()`` marks every user-visible string of the module.

Inside Slicer this is ``slicer.i18n.tr``; outside (unit tests on ``slicer-core``, which has no
``slicer.i18n``) the text is returned unchanged.
"""

try:
    from slicer.i18n import tr as _  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment

    def _(text):
        return text


__all__ = ["_"]
