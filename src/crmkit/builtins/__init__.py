"""The core's own features, registered as plugins on the same hooks third parties use."""
