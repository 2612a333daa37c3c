"""Spectra: for each value pair, two seven-step scales of answering strategies, one per value."""
