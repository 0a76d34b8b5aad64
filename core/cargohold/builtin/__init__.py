"""Built-in default plugins, registered through the same plugin manager as
installed ones (see :data:`cargohold.plugins.DEFAULT_PLUGINS`)."""
