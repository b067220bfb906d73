"""Faster implementations of the reference scan, each tested against it, and the
dispatcher `dispatch.lstm_scan` that picks one."""
