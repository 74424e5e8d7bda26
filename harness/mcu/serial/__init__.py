"""Host side of the MCU serial protocol (MLPerf Tiny / EEMBC performance mode, docs/SERIAL_PROTOCOL.md).

- ``link``: port I/O (paths, ``COMx``, ``rfc2217://``/``socket://`` URLs), lines with deadlines.
- ``protocol``: commands, answers up to ``m-ready``, timeouts, resync, reboot detection, extensions.
- ``session``: connect/identify, performance windows, accuracy over eval samples.
"""
