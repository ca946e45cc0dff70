"""Transparency-log primitives shared by the log, its witnesses and every verifier: RFC 9162 Merkle math, C2SP notes."""
