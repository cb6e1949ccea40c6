"""Sub-commands of ``astrovision``: each module defines ``register(subparsers)``."""
