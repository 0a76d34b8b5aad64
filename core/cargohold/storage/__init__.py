"""Storage: the driver contract, the wrapper the core puts around drivers,
the registry's layout of paths, and the built-in in-memory driver."""
