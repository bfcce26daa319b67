"""Infrastructure that makes the domain run: lock, shell hooks, local files, wiring."""
