"""The bundled example model (shipped as `harness.examples`), used by `hil demo`."""
