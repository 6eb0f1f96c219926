"""Pure decisions: functions of a snapshot, a clock and the config. No I/O in this package."""
