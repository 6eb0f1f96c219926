"""Job scripts written for Slurm, PBS/Torque/PBS Pro and Grid Engine: their directives read as wulf requests.

Everything here is pure: a script's text (and the few facts of where it was submitted) in, a typed
:class:`~wulf.compat.request.Request` out. ``qr`` applies what wulf can do and says what it cannot.
"""
