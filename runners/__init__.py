"""Device-side code (shipped inside the hilbench package as `harness.device`): the Linux runner
that is copied to a board, and the MCU firmware sources for QEMU."""
