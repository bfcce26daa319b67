"""Root conftest. The shared fixtures (PostgreSQL, MariaDB, sshd/SFTP, workspaces)
come from ``backupctl_core.testing``, a pytest plugin loaded through its ``pytest11``
entry point, as they do in a plugin's own test suite outside this repository."""
