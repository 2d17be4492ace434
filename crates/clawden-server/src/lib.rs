//! clawden-server
