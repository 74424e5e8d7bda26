"""MCU targets: TFLite Micro firmware bundles (`hil build`), build/flash (`hil deploy`), QEMU device.

- ``bundle``: analyse + measure + check + write a bundle (``build_bundle``).
- ``codegen``: the generated files (C array, op resolver, settings, protocol config, README).
- ``arena``: tensor-arena size with the TFLM interpreter of the ``tflite-micro`` package.
- ``fit``: flash/RAM estimates against the profile's limits.
- ``deploy``: the profile's ``mcu.build_cmd`` / ``mcu.flash_cmd`` with placeholders and logs.
- ``footprint``: measured flash / static RAM of the firmware ELF a build wrote (pyelftools).
- ``qemu``: the firmware's protocol layer on QEMU mps2-an386 with a stand-in model (stdlib only).
- ``templates/``: hand-written firmware sources copied into every bundle.
"""
