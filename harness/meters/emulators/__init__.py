"""Meters that cannot exist on a CI machine, played byte for byte on pseudo-terminals.

A PPK2 or an LPM01A is a USB serial device; its emulator opens a pty, answers the host's commands
exactly as the instrument's firmware does and streams samples of a known current waveform, so the
energy the host must compute is known exactly. The board's timestamp GPIO reaches the emulator
through a `wire` (a UNIX datagram socket) that the MCU simulator in energy mode pulls low.
"""
