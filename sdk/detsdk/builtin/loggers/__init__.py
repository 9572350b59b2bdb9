"""Built-in loggers: implementations of the engine's event hooks."""
