"""The services of the local stack, one module each, plus process and state handling."""
