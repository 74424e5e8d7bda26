"""Sub-commands of `hil`, one module each."""
