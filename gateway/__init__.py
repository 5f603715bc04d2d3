"""CSE Gateway: a secure messaging gateway for interstate and international child support
case exchange. ``gateway`` gives bytes meaning (schemas, sealing, routing, spool, audit,
daemon, CLI); it uses ``transports`` to move them, never the reverse."""

__version__ = "0.1.0"
