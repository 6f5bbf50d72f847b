"""Command groups of the `bench` CLI, one module each (register(app))."""
