"""Provider emulators: small HTTP servers on 127.0.0.1 that the official clients talk to."""
