"""BorgBackup storage for backupctl."""
