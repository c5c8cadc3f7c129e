"""Runs studies: Optuna asks and tells, Ray Tune places and runs trials, the storage records.

Internal package; the public entry point is :func:`tuner.run`.
"""
