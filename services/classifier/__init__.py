"""Classification: each response placed on both of its pair's spectra (positions 0..6)."""
