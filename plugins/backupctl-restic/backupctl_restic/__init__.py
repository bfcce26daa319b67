"""restic storage for backupctl.

The hooks live in ``backupctl_restic.plugin`` (the ``backupctl`` entry point).
``restic_environment()`` gives other code (the CLI's ``restic`` passthrough,
``cache``) the same environment and base argv the hooks use.
"""

from backupctl_restic.repository import restic_environment

__version__ = "0.1.0"

__all__ = ["__version__", "restic_environment"]
