"""The Media Pipeline process: CLI, configuration, wiring, watcher, scheduler, logging."""
