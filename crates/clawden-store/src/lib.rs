//! clawden-store
