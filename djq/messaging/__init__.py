"""Messages on the wire: the protocol, publishing, and the embedded database transport."""
