"""Plugins that ship inside backupctl-core.

Each module here is registered by ``get_plugin_manager()`` exactly like a
third-party plugin found through an entry point (see ``BUILTIN_PLUGINS``).
"""
