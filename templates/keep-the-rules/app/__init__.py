"""A sample service with one planted blocking call: see the README."""
