"""Energy meters: on the device (hwmon, RAPL), on the controller (PPK2, LPM01A, Joulescope), and
emulated on pseudo-terminals for tests and demos (docs/ENERGY.md)."""
