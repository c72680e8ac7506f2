//! The per-connection send queue. Pure data structure: no I/O.
