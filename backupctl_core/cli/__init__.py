"""The ``backupctl`` command line (click): one module per command group."""
