"""Servers and processes on one machine, for the demo, the tests and the benchmarks: private
NATS and PostgreSQL, the simulator and services as child processes, and the least-privilege
set-up of users and roles.
"""
