"""Drop-in wrappers of ESPnet's binaries that register the encoder first."""
