"""`hil mcu-sim`: a simulated MCU that speaks the MLPerf Tiny serial protocol and runs the model in the
real TFLite Micro interpreter (``engine``), with the firmware logic in ``firmware``, line/port
plumbing in ``server`` and injectable misbehaviour in ``faults``.
"""
