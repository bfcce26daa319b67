"""The domain: project settings, pipeline, stages, retry policy, events.

Pure Python plus attrs. It imports no infrastructure (no database driver, no
HTTP client, no lock library, no CLI framework, no plugin manager); a test and
an import-linter contract keep it that way.
"""
