"""backupctl-example-tar: an example third-party dumper for backupctl."""

__version__ = "0.1.0"
